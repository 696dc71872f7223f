//! Delivery settings, from the server config: what the dispatcher and every worker read.

use std::time::Duration;

use crate::aws::AwsSettings;
use crate::destinations::Destination;
use crate::destinations::webhook::WebhookSettings;
use crate::retry::RetryPolicy;

/// Delivery settings, from the server config.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub retry: RetryPolicy,
    /// Backoff of a whole hook whose destination fails every call.
    pub hook_backoff: RetryPolicy,
    /// SQS/SNS batch calls in flight per hook (FIFO hooks always use 1, to keep order). 32:
    /// with 16, a hook far behind the log was bound by its calls' round trips, not by CPU.
    pub batches_in_flight: usize,
    /// Events read from the log per round.
    pub read_batch: usize,
    /// Calls in a row that fail without an answer before a hook's circuit opens.
    pub breaker_failures: u32,
    pub aws: AwsSettings,
    pub webhook: WebhookSettings,
}

impl DeliverySettings {
    /// Calls in flight per hook for this destination (at least 1: the config is checked at
    /// start-up).
    pub fn in_flight_for(&self, destination: &Destination) -> usize {
        match destination {
            Destination::Webhook(_) => self.webhook.in_flight,
            _ => self.batches_in_flight,
        }
    }
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            hook_backoff: RetryPolicy {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
                window: Duration::MAX,
            },
            batches_in_flight: 32,
            read_batch: 1000,
            breaker_failures: 5,
            aws: AwsSettings::default(),
            webhook: WebhookSettings::default(),
        }
    }
}
