//! Limits shared by ingest, validation and delivery, each with the source it comes from.

/// Largest SQS message or SNS notification hookrelay sends: the seeds say "Set the maximum message
/// size set to 256 KB. Messages bigger than the maximum message size will be dropped." (body plus
/// message attributes, as AWS counts it).
pub const AWS_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// `SendMessageBatch` and `PublishBatch` take at most 10 entries (AWS API reference).
pub const AWS_MAX_BATCH_ENTRIES: usize = 10;

/// Most entries a hook's `event_types` may hold.
pub const MAX_EVENT_TYPES_PER_HOOK: usize = 100;

/// Longest event type (`[a-z0-9_.-]+`).
pub const MAX_EVENT_TYPE_LEN: usize = 64;

/// Longest caller-supplied event id.
pub const MAX_EVENT_ID_LEN: usize = 128;

/// Most events in one ingest request.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;

/// Most hooks one app may have; keeps one PATCH (and one app's dispatch work) bounded.
pub const MAX_HOOKS_PER_APP: usize = 100;

/// The highest per-hook `rate_limit`, in events per second (far above what one hook can take).
pub const MAX_RATE_LIMIT: u32 = 1_000_000;
