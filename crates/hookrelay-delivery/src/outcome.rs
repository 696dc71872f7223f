//! What one attempt to deliver one entry came to, decided once.
//!
//! Each destination reads its answer (an HTTP status, an SQS/SNS entry error, a failed AWS call) and
//! turns it into an [`Outcome`] with the classifiers below; the worker's settle step
//! (`round::settle`) is the one place that acts on outcomes. The line that matters: a
//! *refusal* (the destination answered, and said no to this entry) never counts as "the
//! destination is down", so it cannot hold back the events behind it; only failures that say
//! nothing about the entry (no connection, timeouts, 5xx/429, missing queue, bad keys) do.

use std::time::Duration;

/// A failed delivery call or entry (AWS or webhook), described for people (`last_error`, check
/// results); `outcome` classifies it for delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallError {
    /// The AWS error code (`AccessDenied`, `AWS.SimpleQueueService.NonExistentQueue`, …), or a
    /// description of the transport failure (`timeout`, `connection`, `HTTP 503`).
    pub code: String,
    pub message: String,
    pub http_status: Option<u16>,
    /// The destination asked for this pause (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl CallError {
    /// An error with a code and a message (no status, no `Retry-After`).
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            ..Self::default()
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            f.write_str(&self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

/// How many attempts a webhook entry refused with a 4xx/3xx answer gets in all: a receiver may
/// refuse while it deploys, but no more than that.
pub const REFUSED_WEBHOOK_ATTEMPTS: u32 = 3;

/// The error codes that mean "this message is invalid": no retry can cure it. When a whole SQS
/// batch call fails with one of these, one of its entries is at fault (SQS answers a batch with
/// one over-long message this way), and the worker resends the entries one by one to find it.
const INVALID_MESSAGE_CODES: &[&str] = &[
    "InvalidParameterValue",
    "InvalidParameter",
    "InvalidMessageContents",
    "AWS.SimpleQueueService.InvalidMessageContents",
    "InvalidAttributeValue",
    "InvalidAttributeName",
    "MessageTooLong",
    "AWS.SimpleQueueService.MessageTooLong",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// This entry failed in a way time may cure (a 5xx, 429 or 408 answer to it, throttling):
    /// retried on the hook's schedule until the retry window ends.
    Retry(CallError),
    /// The destination answered and refused this entry (a 4xx/3xx answer, invalid content):
    /// tried `attempts` times in all, then a `rejected` dead letter.
    Refuse {
        error: CallError,
        attempts: u32,
    },
    /// The receiver's address is in `webhook.deny_cidrs`: a `denied` dead letter at once.
    Denied(CallError),
    /// The destination could not take anything (no connection, timeout, missing queue, bad
    /// keys): when a whole round ends this way, the hook backs off as a whole.
    DestinationDown(CallError),
    /// Over the destination's size limit; decided before sending: a `too_large` dead letter.
    TooLarge {
        bytes: usize,
        limit: usize,
    },
}

impl Outcome {
    /// Whether the destination answered for this entry: a round where any entry did is not a
    /// round where the destination was down.
    pub fn destination_answered(&self) -> bool {
        matches!(
            self,
            Self::Delivered | Self::Refuse { .. } | Self::Denied(_)
        )
    }

    /// Whether the destination said "too many requests" (HTTP 429, AWS throttling codes): the
    /// hook lowers its rate (`pace`).
    pub fn is_throttle(&self) -> bool {
        self.error().is_some_and(|e| {
            e.http_status == Some(429) || e.code.contains("Throttl") || e.code == "TooManyRequests"
        })
    }

    /// The error, when there is one.
    pub fn error(&self) -> Option<&CallError> {
        match self {
            Self::Retry(e) | Self::Refuse { error: e, .. } | Self::Denied(e) => Some(e),
            Self::DestinationDown(e) => Some(e),
            Self::Delivered | Self::TooLarge { .. } => None,
        }
    }
}

/// A webhook receiver's answer: 2xx delivered; 408, 429 and 5xx retried (a receiver that
/// answers every call this way is down, which the round decides); any other status (4xx, and
/// 3xx since redirects are not followed) refuses the entry.
pub fn classify_http_status(error: CallError) -> Outcome {
    match error.http_status {
        Some(200..=299) => Outcome::Delivered,
        Some(408 | 429 | 500..=599) => Outcome::Retry(error),
        Some(_) => Outcome::Refuse {
            error,
            attempts: REFUSED_WEBHOOK_ATTEMPTS,
        },
        None => Outcome::DestinationDown(error),
    }
}

/// One failed entry of an SQS `SendMessageBatch` or SNS `PublishBatch` answer: invalid content
/// refuses it at once; anything else (throttling, internal errors, KMS trouble) is retried.
pub fn classify_entry_error(error: CallError) -> Outcome {
    if INVALID_MESSAGE_CODES.contains(&error.code.as_str()) {
        Outcome::Refuse { error, attempts: 1 }
    } else {
        Outcome::Retry(error)
    }
}

/// A whole AWS call that failed (see `aws::errors` for how failures become codes):
/// a 400 naming invalid content is a refusal (of one of the entries, found by splitting the
/// batch); everything else (timeouts, connection and dispatch failures, missing queues, access
/// denied, throttling of the whole call, 5xx) says the destination cannot take anything now.
pub fn classify_call_error(error: CallError) -> Outcome {
    if error.http_status == Some(400) && INVALID_MESSAGE_CODES.contains(&error.code.as_str()) {
        Outcome::Refuse { error, attempts: 1 }
    } else {
        Outcome::DestinationDown(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: Option<u16>) -> CallError {
        CallError {
            http_status: status,
            ..CallError::new(
                status.map_or("connection".into(), |s| format!("HTTP {s}")),
                "",
            )
        }
    }

    fn kind(o: &Outcome) -> &'static str {
        match o {
            Outcome::Delivered => "delivered",
            Outcome::Retry(_) => "retry",
            Outcome::Refuse { attempts: 1, .. } => "refuse-now",
            Outcome::Refuse { .. } => "refuse-3",
            Outcome::Denied(_) => "denied",
            Outcome::DestinationDown(_) => "down",
            Outcome::TooLarge { .. } => "too-large",
        }
    }

    #[test]
    fn webhook_statuses() {
        for (status, expected) in [
            (Some(200), "delivered"),
            (Some(204), "delivered"),
            (Some(301), "refuse-3"),
            (Some(302), "refuse-3"),
            (Some(400), "refuse-3"),
            (Some(401), "refuse-3"),
            (Some(404), "refuse-3"),
            (Some(408), "retry"),
            (Some(410), "refuse-3"),
            (Some(413), "refuse-3"),
            (Some(422), "refuse-3"),
            (Some(429), "retry"),
            (Some(500), "retry"),
            (Some(502), "retry"),
            (Some(503), "retry"),
            (Some(599), "retry"),
            (None, "down"),
        ] {
            assert_eq!(
                kind(&classify_http_status(http(status))),
                expected,
                "{status:?}"
            );
        }
    }

    #[test]
    fn throttling_is_recognised_in_every_dialect() {
        assert!(classify_http_status(http(Some(429))).is_throttle());
        assert!(!classify_http_status(http(Some(503))).is_throttle());
        for code in [
            "ThrottlingException",
            "Throttling",
            "Throttled",
            "RequestThrottled",
        ] {
            assert!(
                classify_entry_error(CallError::new(code, "")).is_throttle(),
                "{code}"
            );
        }
        assert!(!classify_entry_error(CallError::new("InternalError", "")).is_throttle());
        assert!(!Outcome::Delivered.is_throttle());
    }

    #[test]
    fn sqs_and_sns_entry_errors() {
        for (code, expected) in [
            ("InvalidParameterValue", "refuse-now"),
            ("InvalidParameter", "refuse-now"),
            ("InvalidMessageContents", "refuse-now"),
            (
                "AWS.SimpleQueueService.InvalidMessageContents",
                "refuse-now",
            ),
            ("InvalidAttributeValue", "refuse-now"),
            ("InvalidAttributeName", "refuse-now"),
            ("MessageTooLong", "refuse-now"),
            ("AWS.SimpleQueueService.MessageTooLong", "refuse-now"),
            ("InternalError", "retry"),
            ("ServiceUnavailable", "retry"),
            ("ThrottlingException", "retry"),
            ("RequestThrottled", "retry"),
            ("KMS.ThrottlingException", "retry"),
            ("KMSAccessDenied", "retry"),
            ("KMSDisabled", "retry"),
            ("missing", "retry"),
        ] {
            let outcome = classify_entry_error(CallError::new(code, "m"));
            assert_eq!(kind(&outcome), expected, "{code}");
        }
    }

    #[test]
    fn aws_call_errors() {
        let call = |code: &str, status: Option<u16>| CallError {
            http_status: status,
            ..CallError::new(code, "m")
        };
        for (error, expected) in [
            // What `aws::errors` makes of calls without an answer.
            (call("timeout", None), "down"), // TimeoutError, dispatch timeout
            (call("connection", None), "down"), // DispatchFailure (io)
            (call("dispatch", None), "down"),
            (call("credentials", None), "down"),
            (call("request", None), "down"),       // signing failed
            (call("HTTP 502", Some(502)), "down"), // an answer without an error body
            // Answers with an error code.
            (
                call("AWS.SimpleQueueService.NonExistentQueue", Some(400)),
                "down",
            ),
            (call("NotFound", Some(404)), "down"),
            (call("AccessDenied", Some(403)), "down"),
            (call("InvalidClientTokenId", Some(403)), "down"),
            (call("SignatureDoesNotMatch", Some(403)), "down"),
            (call("ThrottlingException", Some(400)), "down"),
            (call("InternalError", Some(500)), "down"),
            (call("InvalidParameterValue", Some(400)), "refuse-now"),
            (
                call("AWS.SimpleQueueService.MessageTooLong", Some(400)),
                "refuse-now",
            ),
            (call("InvalidParameterValue", Some(500)), "down"),
        ] {
            let label = format!("{} {:?}", error.code, error.http_status);
            assert_eq!(kind(&classify_call_error(error)), expected, "{label}");
        }
    }

    #[test]
    fn only_answers_about_the_entry_mean_the_destination_is_up() {
        let e = CallError::default();
        assert!(Outcome::Delivered.destination_answered());
        assert!(
            Outcome::Refuse {
                error: e.clone(),
                attempts: 3
            }
            .destination_answered()
        );
        assert!(Outcome::Denied(e.clone()).destination_answered());
        assert!(!Outcome::Retry(e.clone()).destination_answered());
        assert!(!Outcome::DestinationDown(e).destination_answered());
    }
}
