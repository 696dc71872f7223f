//! The signatures consumers use to check that a message came from this server, in the two
//! schemes a hook can choose (`webhook_signature`):
//!
//! * `stream` (the default): `X-Signature`, lowercase hex of HMAC-SHA256 over the exact body
//!   bytes, keyed with the app's API secret. This is the scheme every Stream SDK's
//!   `verify_webhook` implements, so their helpers work unchanged.
//! * `standard`: the Standard Webhooks scheme: `webhook-id`, `webhook-timestamp` (Unix seconds)
//!   and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the
//!   hook's own secret (`whsec_` + base64 of the key bytes). During a rotation the header holds one
//!   signature per valid secret, separated by spaces, as the scheme allows.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How a hook's deliveries are signed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    #[default]
    Stream,
    Standard,
}

impl SignatureScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Standard => "standard",
        }
    }
}

/// The prefix of a Standard Webhooks secret.
pub const WHSEC_PREFIX: &str = "whsec_";
/// Key bytes of a generated secret (the scheme asks for 24 to 64).
const GENERATED_KEY_BYTES: usize = 32;

/// A new random `whsec_` secret.
pub fn generate_whsec() -> String {
    // Two v4 UUIDs are 244 random bits from the OS generator; the fixed version bits are
    // dropped by hashing them into the key.
    let seed = format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let key = hmac_sha256(b"hookrelay whsec", &[seed.as_bytes()]);
    debug_assert_eq!(key.len(), GENERATED_KEY_BYTES);
    format!("{WHSEC_PREFIX}{}", BASE64.encode(key))
}

/// The key bytes of a `whsec_` secret; the error completes "webhook_secret: …".
pub fn whsec_key(secret: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("must be {WHSEC_PREFIX} followed by the base64 of 24 to 64 random bytes");
    let encoded = secret.strip_prefix(WHSEC_PREFIX).ok_or_else(bad)?;
    let key = BASE64.decode(encoded).map_err(|_| bad())?;
    if (24..=64).contains(&key.len()) {
        Ok(key)
    } else {
        Err(bad())
    }
}

/// One Standard Webhooks signature, `v1,<base64>`.
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", BASE64.encode(mac))
}

/// Length of one `v1,<base64 of 32 bytes>` signature.
pub const STANDARD_SIGNATURE_LEN: usize = 3 + 44;

/// HMAC-SHA256 of `body` keyed with `secret`, as 64 lowercase hex digits.
pub fn signature_hex(secret: &[u8], body: &[u8]) -> String {
    // Into a buffer, not `hex::encode`, which builds the string a char at a time: this runs
    // once per delivered message.
    let mut digits = [0u8; 64];
    hex::encode_to_slice(hmac_sha256(secret, &[body]), &mut digits)
        .expect("32 bytes are 64 hex digits");
    std::str::from_utf8(&digits)
        .expect("hex digits are ASCII")
        .to_owned()
}

/// HMAC-SHA256 over the concatenation of `parts`, without copying them into one buffer.
pub fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_signature_matches_the_schemes_published_example() {
        // The example of the Standard Webhooks specification's reference libraries.
        let key = whsec_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = standard_signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(sig.len(), STANDARD_SIGNATURE_LEN);
    }

    #[test]
    fn generated_secrets_are_valid_and_distinct() {
        let (a, b) = (generate_whsec(), generate_whsec());
        assert_ne!(a, b);
        assert_eq!(whsec_key(&a).unwrap().len(), GENERATED_KEY_BYTES);
        for bad in ["secret", "whsec_", "whsec_!!!", "whsec_c2hvcnQ="] {
            assert!(whsec_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matches_rfc4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
