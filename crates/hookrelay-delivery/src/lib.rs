//! Delivery: from the event log to each hook's destination, at least once.
//!
//! # Layout
//! * `dispatcher`: [`Dispatcher`] runs one worker per enabled hook and restarts workers when hooks
//!   change; [`DeliveryHandle`] is how the API tells it so, and runs destination checks.
//! * `settings`: [`DeliverySettings`], what the dispatcher and workers read from the config.
//! * `worker`: one hook's loop: each round reads after the cursor, plans, sends, settles and
//!   records progress; `round` holds the pure plan and settle steps; `record_behind` lets a
//!   round's record finish while the next round sends.
//! * `outcome`: [`outcome::Outcome`], what one attempt of one entry came to, and the classifiers
//!   that decide it from HTTP statuses, SQS/SNS entry errors and failed AWS calls.
//! * `destinations/`: SQS, SNS and webhooks (one module each), behind the
//!   [`destinations::Destination`] enum.
//! * `aws`: SigV4-signed SQS/SNS calls on one pooled HTTP client, credentials per hook auth, and
//!   what a failed AWS call was.
//! * `http_client`: the pooled HTTP client (hyper-util, rustls) under webhooks and AWS calls, and
//!   its resolver that keeps webhooks out of `webhook.deny_cidrs`.
//! * `pace`: a hook's rate limit, its reaction to throttling (AIMD) and its circuit breaker.
//! * `batch`, `retry`: pure functions for packing batches and scheduling retries.
//! * `signing`: [`signing::Signer`], a hook's signature headers and attributes (Stream or
//!   Standard Webhooks).
//! * `stats`: live per-hook figures and every Prometheus metric name.
//! * `check`: `check_sqs` / `check_sns`.

pub mod aws;
pub mod batch;
pub mod check;
mod checkpoint;
pub mod destinations;
mod dispatcher;
pub mod http_client;
pub mod outcome;
mod pace;
mod record_behind;
pub mod retry;
mod round;
mod settings;
pub mod signing;
pub mod stats;
mod worker;

pub use dispatcher::{DeliveryHandle, Dispatcher};
pub use settings::DeliverySettings;
