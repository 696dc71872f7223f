//! `hookrelay`: delivers an app's events to its customers' SQS queues, SNS topics and webhooks.
//! The binary (`main.rs`) parses the command line and calls [`cli::Cli::execute`]; the server
//! itself is [`run::run`], which tests call in-process on a socket of their own.
//!
//! # Layout
//! * `cli`: the commands and their help; the local ones (`serve`, `migrate`, `apps create`,
//!   `apps list`, `token`, `completions`) run here.
//! * `client`: the commands that talk to a running server (`hooks`, `dead-letters`, `events send`,
//!   `apps delete`, `apps rotate-secret`).
//! * `output`: stdout that survives a closed pipe, and when to colour logs.
//! * `config`: [`config::Config`], from defaults, a TOML file and `HOOKRELAY_*` variables.
//! * `run`: `serve`: opens the store, starts the dispatcher, the garbage collector and the API,
//!   and shuts them down in order.
//! * `keys`: the server key that encrypts secrets at rest, and the first app's credentials.
//! * `store`: opens the configured store (embedded SQLite or PostgreSQL).

pub mod cli;
pub mod client;
pub mod config;
pub mod keys;
pub mod output;
pub mod run;
pub mod store;
