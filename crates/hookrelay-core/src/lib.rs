//! Domain types of hookrelay: no I/O, no async (metrics go to the `metrics` facade's recorder).
//!
//! # Layout
//! * `hook`: an event hook ([`EventHook`]) and its destination ([`Target`]): SQS queue, SNS
//!   topic or webhook, with AWS names (`QueueUrl`, `TopicArn`, `Region`, `RoleArn`) that are
//!   validated once, when parsed. `hook::input` turns the Stream wire shape into a hook.
//! * `event`: what an ingested event must look like (type, id, size) and how the stored bytes are
//!   produced without re-serialising the caller's JSON.
//! * `content_filter`: a hook's `filter` on the event's content (paths, values, operators).
//! * `filter`: the `event_types` match (empty = every event, `message.*` wildcards).
//! * `secret`: [`Secret`], a string that never shows itself in `Debug` or JSON.
//! * `sign`: the signatures consumers verify (Stream's `X-Signature`, Standard Webhooks).
//! * `telemetry`: every Prometheus series emitted through the `metrics` facade, by name.
//! * `time`: [`Timestamp`], nanoseconds since the epoch, rendered as RFC 3339 or integers.
//! * `limits`: the size and count limits shared by the API and the dispatcher.

pub mod content_filter;
pub mod event;
pub mod filter;
pub mod hook;
pub mod limits;
pub mod secret;
pub mod sign;
pub mod telemetry;
pub mod time;

pub use content_filter::ContentFilter;
pub use filter::EventFilter;
pub use hook::{AwsAuth, EventHook, HookId, HookType, Target};
pub use secret::Secret;
pub use time::Timestamp;
