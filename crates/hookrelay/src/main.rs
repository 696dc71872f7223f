//! `hookrelay`: delivers an app's events to its customers' SQS queues, SNS topics and webhooks.
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

mod cli;
mod client;
mod config;
mod keys;
mod output;
mod run;
mod store;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli.execute() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`| head -1`): not an error of ours, and nothing left to say.
        Err(e) if output::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookrelay: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
