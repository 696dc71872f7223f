//! How one hook signs what it sends: the same names and values as HTTP headers (webhooks) and as
//! message attributes (SQS, SNS), so a consumer verifies them the same way wherever they arrive.
//! The schemes themselves are in `hookrelay_core::sign`.

use std::sync::Arc;

use hookrelay_core::sign::{
    STANDARD_SIGNATURE_LEN, SignatureScheme, signature_hex, standard_signature, whsec_key,
};
use hookrelay_core::{EventHook, Secret, Timestamp};

/// Bytes of the data type of every attribute: AWS counts it in a message's size.
const STRING_TYPE_LEN: usize = crate::destinations::STRING_TYPE.len();
/// Digits of a Unix time in seconds (until the year 2286).
const TIMESTAMP_DIGITS: usize = 10;

/// A hook's signer, made once per worker.
#[derive(Clone, Debug)]
pub enum Signer {
    /// `X-Signature`: hex HMAC-SHA256 of the body with the app's API secret.
    Stream { app_secret: Secret },
    /// Standard Webhooks with the hook's keys: the current one, then a replaced one until its
    /// rotation window ends.
    Standard {
        keys: Arc<[(Vec<u8>, Option<Timestamp>)]>,
    },
}

impl Signer {
    pub fn for_hook(hook: &EventHook, app_secret: &Secret) -> Self {
        match hook.signature {
            SignatureScheme::Stream => Self::Stream {
                app_secret: app_secret.clone(),
            },
            SignatureScheme::Standard => {
                let current = hook.signing.current.iter().map(|s| (s, None));
                let previous = hook
                    .signing
                    .previous
                    .iter()
                    .map(|(s, until)| (s, Some(*until)));
                let keys = current
                    .chain(previous)
                    // Stored secrets were checked when saved; one that no longer decodes is skipped.
                    .filter_map(|(s, until)| whsec_key(s.expose()).ok().map(|k| (k, until)))
                    .collect();
                Self::Standard { keys }
            }
        }
    }

    /// The signature fields of one message, as `(name, value)`: header names for webhooks,
    /// attribute names for SQS and SNS. `now` is the send time (`webhook-timestamp`).
    pub fn sign(
        &self,
        event_id: &str,
        payload: &[u8],
        now: Timestamp,
    ) -> Vec<(&'static str, String)> {
        match self {
            Self::Stream { app_secret } => vec![(
                "X-Signature",
                signature_hex(app_secret.expose().as_bytes(), payload),
            )],
            Self::Standard { keys } => {
                let timestamp = now.nanos() / 1_000_000_000;
                let signatures: Vec<String> = keys
                    .iter()
                    .filter(|(_, until)| until.is_none_or(|u| u > now))
                    .map(|(key, _)| standard_signature(key, event_id, timestamp, payload))
                    .collect();
                vec![
                    ("webhook-id", event_id.to_owned()),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signatures.join(" ")),
                ]
            }
        }
    }

    /// The most bytes the signature attributes add to an SQS/SNS message (AWS counts each
    /// attribute's name, data type and value).
    pub fn attribute_size(&self) -> SignatureSize {
        match self {
            Self::Stream { .. } => SignatureSize {
                fixed: "X-Signature".len() + STRING_TYPE_LEN + 64,
                plus_event_id: false,
            },
            Self::Standard { keys } => {
                let n = keys.len().max(1);
                let fixed = "webhook-id".len()
                    + STRING_TYPE_LEN
                    + "webhook-timestamp".len()
                    + STRING_TYPE_LEN
                    + TIMESTAMP_DIGITS
                    + "webhook-signature".len()
                    + STRING_TYPE_LEN
                    + n * STANDARD_SIGNATURE_LEN
                    + (n - 1);
                // `webhook-id` repeats the event id.
                SignatureSize {
                    fixed,
                    plus_event_id: true,
                }
            }
        }
    }
}

/// What a hook's signature attributes add to the size of a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignatureSize {
    pub fixed: usize,
    /// The event id is one of the values.
    pub plus_event_id: bool,
}

impl SignatureSize {
    pub fn bytes(self, event_id_len: usize) -> usize {
        self.fixed + if self.plus_event_id { event_id_len } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay_core::hook::SigningSecrets;

    fn standard(signing: SigningSecrets) -> Signer {
        let hook_json = serde_json::json!({
            "id": "h", "enabled": true, "event_types": [], "product": "all",
            "target": {"hook_type": "webhook", "url": "https://example.com/"},
            "should_send_custom_events": null, "sns_event_based_message_group_id_enabled": null,
            "signature": "standard", "created_at": 0, "updated_at": 0,
        });
        let mut hook: EventHook = serde_json::from_value(hook_json).unwrap();
        hook.signing = signing;
        Signer::for_hook(&hook, &Secret::new("app-secret"))
    }

    const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD: &str = "whsec_b2xkLXNpZ25pbmcta2V5LTEyMzQ1Njc4";

    #[test]
    fn both_secrets_sign_during_the_rotation_window_then_only_the_new_one() {
        let until = Timestamp::from_millis(1_800_000_000_000);
        let signer = standard(SigningSecrets {
            current: Some(Secret::new(NEW)),
            previous: Some((Secret::new(OLD), until)),
        });
        let during = signer.sign("ev1", b"{}", Timestamp::from_millis(1_700_000_000_000));
        let names: Vec<&str> = during.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["webhook-id", "webhook-timestamp", "webhook-signature"]
        );
        assert_eq!(during[1].1, "1700000000");
        let sigs: Vec<&str> = during[2].1.split(' ').collect();
        assert_eq!(sigs.len(), 2);
        assert_eq!(
            sigs[0],
            standard_signature(&whsec_key(NEW).unwrap(), "ev1", 1_700_000_000, b"{}")
        );
        let after = signer.sign("ev1", b"{}", Timestamp::from_millis(1_900_000_000_000));
        assert_eq!(after[2].1.split(' ').count(), 1);
        // The size AWS counts is never underestimated.
        for (_, value) in &during {
            assert!(value.len() <= signer.attribute_size().bytes(3));
        }
        let counted: usize = during.iter().map(|(n, v)| n.len() + 6 + v.len()).sum();
        assert_eq!(counted, signer.attribute_size().bytes(3));
    }

    #[test]
    fn the_stream_scheme_signs_with_the_app_secret() {
        let hook_json = serde_json::json!({
            "id": "h", "enabled": true, "event_types": [], "product": "all",
            "target": {"hook_type": "webhook", "url": "https://example.com/"},
            "should_send_custom_events": null, "sns_event_based_message_group_id_enabled": null,
            "created_at": 0, "updated_at": 0,
        });
        let hook: EventHook = serde_json::from_value(hook_json).unwrap();
        let signer = Signer::for_hook(&hook, &Secret::new("app-secret"));
        let fields = signer.sign("ev1", b"{}", Timestamp::now());
        assert_eq!(
            fields,
            vec![("X-Signature", signature_hex(b"app-secret", b"{}"))]
        );
        assert_eq!(
            signer.attribute_size().bytes(3),
            "X-Signature".len() + 6 + 64
        );
    }
}
