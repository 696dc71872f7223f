//! From Stream's wire shape (one element of `event_hooks` in `PATCH /app`) to an [`EventHook`].
//!
//! The wire object is read field by field from a `serde_json` map rather than through a derived
//! struct, so that every refusal names its field (`sqs_region: is required`) instead of serde's
//! "invalid type at line 1 column 80", and so that the many fields the SDKs send and hookrelay does
//! not use (`created_at` as a string or a number, `callback`, `failover_config`, …) are tolerated.

use serde_json::{Map, Value};

use super::{
    AwsAuth, EventHook, HookId, QueueUrl, Region, RoleArn, SigningSecrets, Target, TopicArn,
    WebhookUrl,
};
use crate::limits::{MAX_EVENT_TYPE_LEN, MAX_EVENT_TYPES_PER_HOOK, MAX_RATE_LIMIT};
use crate::secret::MASK;
use crate::sign::{SignatureScheme, generate_whsec, whsec_key};
use crate::{ContentFilter, Secret, Timestamp};

/// A refused field: `field` is the path inside the hook (`sqs_region`), `reason` completes the
/// sentence "<field>: <reason>".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path, e.g. `event_hooks[2].`.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}{}", self.field);
        self
    }
}

/// What one element of `event_hooks` asks for.
#[derive(Debug)]
pub enum HookRequest {
    /// Create or update this hook.
    Upsert(Box<EventHook>),
    /// `"delete": true` in explicit-deletion mode: remove the hook with this id.
    Delete(HookId),
}

/// Typed, field-naming access to a JSON object.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// A string field; absent, `null` and `""` all mean "not given" (Go SDKs send empty strings).
    pub fn str(&self, name: &str) -> Result<Option<&'a str>, FieldError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(FieldError::new(name, "must be a string")),
        }
    }

    pub fn required_str(&self, name: &str) -> Result<&'a str, FieldError> {
        self.str(name)?
            .ok_or_else(|| FieldError::new(name, "is required"))
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, FieldError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(FieldError::new(name, "must be true or false")),
        }
    }

    pub fn str_list(&self, name: &str) -> Result<Vec<String>, FieldError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(FieldError::new(format!("{name}[{i}]"), "must be a string")),
                })
                .collect(),
            Some(_) => Err(FieldError::new(name, "must be an array of strings")),
        }
    }
}

fn parse<T: std::str::FromStr<Err = super::NameError>>(
    field: &str,
    value: &str,
) -> Result<T, FieldError> {
    value
        .parse()
        .map_err(|e: super::NameError| FieldError::new(field, e.0))
}

/// Checks `event_types`: at most 100 entries, each a plausible event type, `*` only at the end.
pub fn validate_event_types(types: &[String]) -> Result<(), FieldError> {
    if types.len() > MAX_EVENT_TYPES_PER_HOOK {
        return Err(FieldError::new(
            "event_types",
            format!(
                "has {} entries, at most {MAX_EVENT_TYPES_PER_HOOK} are allowed",
                types.len()
            ),
        ));
    }
    for (i, t) in types.iter().enumerate() {
        let base = t.strip_suffix('*').unwrap_or(t);
        let ok = !t.is_empty()
            && t.len() <= MAX_EVENT_TYPE_LEN
            && base
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !ok {
            return Err(FieldError::new(
                format!("event_types[{i}]"),
                format!(
                    "{t:?} is not an event type: use lowercase letters, digits, '.', '_' or '-' (at most {MAX_EVENT_TYPE_LEN}), with an optional trailing '*'"
                ),
            ));
        }
    }
    Ok(())
}

/// A hook id as a caller gives it (at most [`MAX_WIRE_HOOK_ID_LEN`] characters).
pub fn wire_hook_id(id: &str) -> Result<HookId, super::NameError> {
    if id.len() > super::MAX_WIRE_HOOK_ID_LEN {
        return Err(super::NameError(format!(
            "{id:?} is not a hook id (1 to {} letters, digits, '-' or '_')",
            super::MAX_WIRE_HOOK_ID_LEN
        )));
    }
    HookId::try_from(id.to_owned())
}

const PRODUCTS: &[&str] = &["all", "chat", "video", "moderation", "feeds"];

/// What a hook may point at, and how its secrets rotate, from the server's configuration.
#[derive(Debug, Clone)]
pub struct HookRules {
    /// The server's AWS endpoint overrides (`aws.endpoint_url`, `AWS_ENDPOINT_URL`,
    /// `AWS_ENDPOINT_URL_SQS`): an emulator's queue URL is accepted only when one points at it.
    pub aws_endpoints: Vec<String>,
    /// How long a replaced `webhook_secret` keeps signing beside the new one.
    pub secret_rotation_window: std::time::Duration,
}

/// Receivers get a day to deploy a new signing secret before the old one stops signing.
pub const DEFAULT_SECRET_ROTATION_WINDOW: std::time::Duration =
    std::time::Duration::from_secs(24 * 3600);

impl Default for HookRules {
    fn default() -> Self {
        Self {
            aws_endpoints: Vec::new(),
            secret_rotation_window: DEFAULT_SECRET_ROTATION_WINDOW,
        }
    }
}

/// Reads one wire hook. `stored` finds an existing hook by id; it supplies `created_at` and, when
/// the request carries the masked secret, the secret kept in the store.
pub fn parse_hook_request(
    value: &Value,
    explicit_deletion: bool,
    stored: impl Fn(&HookId) -> Option<EventHook>,
    rules: &HookRules,
    now: Timestamp,
) -> Result<HookRequest, FieldError> {
    let Value::Object(obj) = value else {
        return Err(FieldError::new("", "must be an object"));
    };
    let f = Fields(obj);
    let id = match f.str("id")? {
        Some(id) => Some(wire_hook_id(id).map_err(|e| FieldError::new("id", e.0))?),
        None => None,
    };
    if f.bool("delete")? == Some(true) {
        if !explicit_deletion {
            return Err(FieldError::new(
                "delete",
                "is only allowed with explicit_event_hooks_deletion: true; without it, leave the hook out of event_hooks to delete it",
            ));
        }
        return id
            .map(HookRequest::Delete)
            .ok_or_else(|| FieldError::new("id", "is required to delete a hook"));
    }
    let existing = id.as_ref().and_then(&stored);
    let target = parse_target(&f, existing.as_ref(), rules)?;
    let event_types = f.str_list("event_types")?;
    validate_event_types(&event_types)?;
    let product = f.str("product")?.unwrap_or("all");
    if !PRODUCTS.contains(&product) {
        return Err(FieldError::new(
            "product",
            format!("must be one of {}", PRODUCTS.join(", ")),
        ));
    }
    let own = parse_own_fields(obj, existing.as_ref(), rules, now)?;
    Ok(HookRequest::Upsert(Box::new(EventHook {
        id: id.unwrap_or_else(HookId::generate),
        // Stream's SDKs always send `enabled`; when it is missing Stream stores false (Go's zero
        // value), and so do we, so that a hook never starts delivering by surprise.
        enabled: f.bool("enabled")?.unwrap_or(false),
        event_types,
        product: product.to_owned(),
        target,
        should_send_custom_events: f.bool("should_send_custom_events")?,
        sns_event_based_message_group_id_enabled: f
            .bool("sns_event_based_message_group_id_enabled")?,
        rate_limit: own.rate_limit,
        signature: own.signature,
        signing: own.signing,
        filter: own.filter,
        created_at: existing.as_ref().map_or(now, |h| h.created_at),
        updated_at: now,
    })))
}

/// hookrelay's own hook fields, which Stream's SDKs do not know.
struct OwnFields {
    rate_limit: Option<u32>,
    signature: SignatureScheme,
    signing: SigningSecrets,
    filter: Option<ContentFilter>,
}

/// Reads hookrelay's own fields. Python's `getstream` drops fields it does not know when it
/// sends hooks back, so an absent field keeps what the existing hook has; `null` clears it.
fn parse_own_fields(
    obj: &Map<String, Value>,
    existing: Option<&EventHook>,
    rules: &HookRules,
    now: Timestamp,
) -> Result<OwnFields, FieldError> {
    let rate_limit = match obj.get("rate_limit") {
        None => existing.and_then(|h| h.rate_limit),
        Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => None,
            Some(v) if v <= u64::from(MAX_RATE_LIMIT) => Some(v as u32),
            _ => return Err(rate_limit_error()),
        },
        Some(_) => return Err(rate_limit_error()),
    };
    let f = Fields(obj);
    let signature = match f.str("webhook_signature")? {
        None => existing.map(|h| h.signature).unwrap_or_default(),
        Some("stream") => SignatureScheme::Stream,
        Some("standard") => SignatureScheme::Standard,
        Some(other) => {
            return Err(FieldError::new(
                "webhook_signature",
                format!("{other:?} is not a signature scheme: use stream or standard"),
            ));
        }
    };
    let mut signing = existing.map(|h| h.signing.clone()).unwrap_or_default();
    if signing
        .previous
        .as_ref()
        .is_some_and(|(_, until)| *until <= now)
    {
        signing.previous = None;
    }
    match f.str("webhook_secret")? {
        None | Some(MASK) => {}
        Some(given) => {
            whsec_key(given).map_err(|e| FieldError::new("webhook_secret", e))?;
            if signing.current.as_ref().map(Secret::expose) != Some(given) {
                let until = Timestamp::from_nanos(
                    now.nanos()
                        .saturating_add(rules.secret_rotation_window.as_nanos() as i64),
                );
                signing.previous = signing.current.take().map(|old| (old, until));
                signing.current = Some(Secret::new(given));
            }
        }
    }
    if signature == SignatureScheme::Standard && signing.current.is_none() {
        signing.current = Some(Secret::new(generate_whsec()));
    }
    let filter = match obj.get("filter") {
        None => existing.and_then(|h| h.filter.clone()),
        Some(Value::Null) => None,
        Some(Value::Object(m)) if m.is_empty() => None,
        Some(v) => Some(ContentFilter::compile(v.clone()).map_err(|e| e.within("filter"))?),
    };
    Ok(OwnFields {
        rate_limit,
        signature,
        signing,
        filter,
    })
}

fn rate_limit_error() -> FieldError {
    FieldError::new(
        "rate_limit",
        format!("must be a whole number of events per second, 0 (unlimited) to {MAX_RATE_LIMIT}"),
    )
}

fn parse_target(
    f: &Fields<'_>,
    existing: Option<&EventHook>,
    rules: &HookRules,
) -> Result<Target, FieldError> {
    let hook_type = f.required_str("hook_type")?;
    match hook_type {
        "webhook" => {
            let url = f.required_str("webhook_url")?;
            let url = WebhookUrl::try_from(url.to_owned())
                .map_err(|e| FieldError::new("webhook_url", e.0))?;
            Ok(Target::Webhook { url })
        }
        "sqs" => {
            let queue_url: QueueUrl = parse("sqs_queue_url", f.required_str("sqs_queue_url")?)?;
            queue_url
                .check_reachable(&rules.aws_endpoints)
                .map_err(|e| FieldError::new("sqs_queue_url", e.0))?;
            let region = parse_region(f, "sqs", queue_url.region())?;
            let auth = parse_auth(f, "sqs", existing)?;
            Ok(Target::Sqs {
                queue_url,
                region,
                auth,
            })
        }
        "sns" => {
            let topic_arn: TopicArn = parse("sns_topic_arn", f.required_str("sns_topic_arn")?)?;
            let region = parse_region(f, "sns", Some(topic_arn.region()))?;
            let auth = parse_auth(f, "sns", existing)?;
            Ok(Target::Sns {
                topic_arn,
                region,
                auth,
            })
        }
        "pending_message" => Err(FieldError::new(
            "hook_type",
            "pending_message hooks are not supported by hookrelay (it delivers events; it does not moderate messages); use webhook, sqs or sns",
        )),
        other => Err(FieldError::new(
            "hook_type",
            format!("{other:?} is not a hook type: use webhook, sqs or sns"),
        )),
    }
}

/// `<p>_region` is required, and must agree with the region the queue URL or topic ARN names:
/// signing for another region fails at delivery time with an error that is hard to read.
fn parse_region(f: &Fields<'_>, p: &str, named: Option<&str>) -> Result<Region, FieldError> {
    let field = format!("{p}_region");
    let region: Region = parse(&field, f.required_str(&field)?)?;
    match named {
        Some(named) if named != region.as_str() => Err(FieldError::new(
            field,
            format!(
                "{region} does not match the region of the {} ({named})",
                if p == "sqs" { "queue URL" } else { "topic ARN" }
            ),
        )),
        _ => Ok(region),
    }
}

/// `<p>_auth_type` with its fields. When the type is absent it is inferred: `keys` if a key is
/// given, `role` if a role ARN is, else `resource` (the Stream docs mark it required, but the
/// older SDK examples omit it).
fn parse_auth(
    f: &Fields<'_>,
    p: &str,
    existing: Option<&EventHook>,
) -> Result<AwsAuth, FieldError> {
    let (type_f, key_f, secret_f, role_f) = (
        format!("{p}_auth_type"),
        format!("{p}_key"),
        format!("{p}_secret"),
        format!("{p}_role_arn"),
    );
    let auth_type = match f.str(&type_f)? {
        Some(t) => t,
        None if f.str(&key_f)?.is_some() => "keys",
        None if f.str(&role_f)?.is_some() => "role",
        None => "resource",
    };
    match auth_type {
        "keys" => {
            let key = f.str(&key_f)?.ok_or_else(|| {
                FieldError::new(&key_f, format!("is required when {type_f} is keys"))
            })?;
            let secret = f.str(&secret_f)?.ok_or_else(|| {
                FieldError::new(&secret_f, format!("is required when {type_f} is keys"))
            })?;
            let secret = if secret == MASK {
                kept_secret(existing, key).ok_or_else(|| {
                    FieldError::new(
                        &secret_f,
                        format!(
                            "is the masked value, which keeps the stored secret only for an existing hook with the same id, type and {key_f}; send the real secret"
                        ),
                    )
                })?
            } else {
                Secret::new(secret)
            };
            Ok(AwsAuth::Keys {
                key: key.to_owned(),
                secret,
            })
        }
        "resource" => Ok(AwsAuth::Resource),
        "role" => {
            let role = f.str(&role_f)?.ok_or_else(|| {
                FieldError::new(&role_f, format!("is required when {type_f} is role"))
            })?;
            Ok(AwsAuth::Role {
                role_arn: parse::<RoleArn>(&role_f, role)?,
            })
        }
        other => Err(FieldError::new(
            type_f,
            format!("{other:?} is not an auth type: use keys, resource or role"),
        )),
    }
}

/// The stored secret of `existing`, if it used the same access key.
fn kept_secret(existing: Option<&EventHook>, key: &str) -> Option<Secret> {
    match existing?.target.aws_auth()? {
        AwsAuth::Keys {
            key: stored_key,
            secret,
        } if stored_key == key && !secret.expose().is_empty() => Some(secret.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_one(v: Value) -> Result<EventHook, FieldError> {
        match parse_hook_request(
            &v,
            false,
            |_| None,
            &HookRules::default(),
            Timestamp::from_nanos(1),
        )? {
            HookRequest::Upsert(h) => Ok(*h),
            HookRequest::Delete(_) => panic!("not a delete"),
        }
    }

    fn sqs_hook() -> Value {
        json!({
            "enabled": true, "hook_type": "sqs",
            "sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/MyQueue",
            "sqs_region": "us-east-1", "sqs_auth_type": "keys",
            "sqs_key": "yourkey", "sqs_secret": "yoursecret", "event_types": [],
            "created_at": "2024-01-01T00:00:00.123457+00:00", "updated_at": 1704067200123456789u64,
        })
    }

    #[test]
    fn seed_sqs_hook_parses() {
        let hook = parse_one(sqs_hook()).unwrap();
        assert!(hook.enabled);
        assert_eq!(hook.id.as_str().len(), 36, "a UUID is generated");
        assert_eq!(hook.secret().unwrap().expose(), "yoursecret");
        assert_eq!(hook.product, "all");
    }

    #[test]
    fn each_invalid_field_is_named() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"hook_type": "carrier_pigeon"}), "hook_type"),
            (
                json!({"hook_type": "pending_message", "webhook_url": "https://x.io"}),
                "hook_type",
            ),
            (json!({"enabled": true}), "hook_type"),
            (json!({"hook_type": "webhook"}), "webhook_url"),
            (
                json!({"hook_type": "webhook", "webhook_url": "ftp://x"}),
                "webhook_url",
            ),
            (
                json!({"hook_type": "sqs", "sqs_queue_url": "https://foo.com/bar", "sqs_region": "us-east-1"}),
                "sqs_queue_url",
            ),
            (
                json!({"hook_type": "sqs", "sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q"}),
                "sqs_region",
            ),
            (
                json!({"hook_type": "sqs", "sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q", "sqs_region": "moon-1"}),
                "sqs_region",
            ),
            (
                json!({"hook_type": "sqs", "sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q", "sqs_region": "eu-west-1"}),
                "sqs_region",
            ),
            (
                json!({"hook_type": "sqs", "sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q", "sqs_region": "us-east-1", "sqs_auth_type": "keys"}),
                "sqs_key",
            ),
            (
                json!({"hook_type": "sqs", "sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q", "sqs_region": "us-east-1", "sqs_auth_type": "keys", "sqs_key": "k"}),
                "sqs_secret",
            ),
            (
                json!({"hook_type": "sqs", "sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q", "sqs_region": "us-east-1", "sqs_auth_type": "role"}),
                "sqs_role_arn",
            ),
            (
                json!({"hook_type": "sqs", "sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q", "sqs_region": "us-east-1", "sqs_auth_type": "role", "sqs_role_arn": "arn:aws:iam::1:role/x"}),
                "sqs_role_arn",
            ),
            (
                json!({"hook_type": "sqs", "sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q", "sqs_region": "us-east-1", "sqs_auth_type": "password"}),
                "sqs_auth_type",
            ),
            (
                json!({"hook_type": "sns", "sns_topic_arn": "arn:aws:sns:us-east-1:1234:t", "sns_region": "us-east-1"}),
                "sns_topic_arn",
            ),
            (
                json!({"hook_type": "sns", "sns_topic_arn": "arn:aws:sns:us-east-1:123456789012:t"}),
                "sns_region",
            ),
            (
                json!({"hook_type": "webhook", "webhook_url": "https://x.io", "event_types": [""]}),
                "event_types[0]",
            ),
            (
                json!({"hook_type": "webhook", "webhook_url": "https://x.io", "event_types": ["mess*age"]}),
                "event_types[0]",
            ),
            (
                json!({"hook_type": "webhook", "webhook_url": "https://x.io", "event_types": "message.new"}),
                "event_types",
            ),
            (
                json!({"hook_type": "webhook", "webhook_url": "https://x.io", "event_types": vec!["a"; 101]}),
                "event_types",
            ),
            (
                json!({"hook_type": "webhook", "webhook_url": "https://x.io", "enabled": "yes"}),
                "enabled",
            ),
            (
                json!({"hook_type": "webhook", "webhook_url": "https://x.io", "id": "a b"}),
                "id",
            ),
        ];
        for (input, field) in cases {
            let err = parse_one(input.clone()).expect_err(&input.to_string());
            assert_eq!(err.field, field, "{input}: {err}");
        }
    }

    #[test]
    fn masked_secret_keeps_the_stored_one_for_the_same_key_only() {
        let stored = parse_one(sqs_hook()).unwrap();
        let id = stored.id.clone();
        let mut again = sqs_hook();
        again["id"] = json!(id.as_str());
        again["sqs_secret"] = json!(MASK);
        let lookup = |i: &HookId| (i == &id).then(|| stored.clone());
        let HookRequest::Upsert(kept) = parse_hook_request(
            &again,
            false,
            lookup,
            &HookRules::default(),
            Timestamp::from_nanos(2),
        )
        .unwrap() else {
            panic!()
        };
        let kept = *kept;
        assert_eq!(kept.secret().unwrap().expose(), "yoursecret");
        assert_eq!(kept.created_at, stored.created_at);

        again["sqs_key"] = json!("otherkey");
        let err = parse_hook_request(
            &again,
            false,
            lookup,
            &HookRules::default(),
            Timestamp::from_nanos(2),
        )
        .unwrap_err();
        assert_eq!(err.field, "sqs_secret");
        // A new hook cannot borrow a secret it never had.
        let mut new = sqs_hook();
        new["sqs_secret"] = json!(MASK);
        assert_eq!(parse_one(new).unwrap_err().field, "sqs_secret");
    }

    #[test]
    fn auth_type_is_inferred_and_delete_needs_explicit_mode() {
        let mut v = sqs_hook();
        v.as_object_mut().unwrap().remove("sqs_auth_type");
        assert_eq!(
            parse_one(v).unwrap().target.aws_auth().unwrap().type_name(),
            "keys"
        );
        let del = json!({"id": "abc", "delete": true});
        assert!(
            parse_hook_request(
                &del,
                false,
                |_| None,
                &HookRules::default(),
                Timestamp::now()
            )
            .is_err()
        );
        assert!(matches!(
            parse_hook_request(
                &del,
                true,
                |_| None,
                &HookRules::default(),
                Timestamp::now()
            )
            .unwrap(),
            HookRequest::Delete(_)
        ));
    }

    fn webhook(extra: Value) -> Value {
        let mut v = json!({"id": "w", "enabled": true, "hook_type": "webhook",
                           "webhook_url": "https://example.com/hook"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    }

    fn upsert(v: &Value, stored: Option<&EventHook>, now: i64) -> Result<EventHook, FieldError> {
        let lookup = |_: &HookId| stored.cloned();
        let rules = HookRules::default();
        match parse_hook_request(v, false, lookup, &rules, Timestamp::from_nanos(now))? {
            HookRequest::Upsert(h) => Ok(*h),
            HookRequest::Delete(_) => panic!("not a delete"),
        }
    }

    #[test]
    fn own_fields_absent_from_a_patch_keep_their_stored_values() {
        let first = upsert(
            &webhook(json!({"rate_limit": 100, "webhook_signature": "standard",
                            "filter": {"channel_type": ["messaging"]}})),
            None,
            1,
        )
        .unwrap();
        assert_eq!(first.rate_limit, Some(100));
        assert_eq!(first.signature, SignatureScheme::Standard);
        let generated = first
            .signing
            .current
            .clone()
            .expect("a secret is generated");
        assert!(generated.expose().starts_with("whsec_"));
        assert!(first.filter.is_some());

        // What Python's getstream sends back: the Stream fields only.
        let again = upsert(&webhook(json!({})), Some(&first), 2).unwrap();
        assert_eq!(again.rate_limit, Some(100));
        assert_eq!(again.signature, SignatureScheme::Standard);
        assert_eq!(again.signing, first.signing);
        assert_eq!(again.filter, first.filter);
        // The masked secret sent back keeps it too.
        let masked = upsert(&webhook(json!({"webhook_secret": MASK})), Some(&first), 3).unwrap();
        assert_eq!(masked.signing, first.signing);

        // null clears; 0 means unlimited.
        let cleared = upsert(
            &webhook(json!({"rate_limit": 0, "filter": null, "webhook_signature": "stream"})),
            Some(&first),
            4,
        )
        .unwrap();
        assert_eq!(cleared.rate_limit, None);
        assert_eq!(cleared.filter, None);
        assert_eq!(cleared.signature, SignatureScheme::Stream);
    }

    #[test]
    fn a_new_webhook_secret_rotates_the_old_one_out_after_the_window() {
        let first = upsert(&webhook(json!({"webhook_signature": "standard"})), None, 0).unwrap();
        let old = first.signing.current.clone().unwrap();
        let new = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let rotated = upsert(&webhook(json!({"webhook_secret": new})), Some(&first), 10).unwrap();
        assert_eq!(rotated.signing.current.as_ref().unwrap().expose(), new);
        let (kept, until) = rotated.signing.previous.clone().unwrap();
        assert_eq!(kept, old);
        let window = DEFAULT_SECRET_ROTATION_WINDOW.as_nanos() as i64;
        assert_eq!(until.nanos(), 10 + window);
        // Sending the same secret again is not a new rotation.
        let same = upsert(&webhook(json!({"webhook_secret": new})), Some(&rotated), 20).unwrap();
        assert_eq!(same.signing, rotated.signing);
        // Once the window has passed, the old secret is dropped at the next save.
        let later = upsert(&webhook(json!({})), Some(&rotated), 11 + window).unwrap();
        assert!(later.signing.previous.is_none());
    }

    #[test]
    fn own_fields_are_checked_with_their_names() {
        for (extra, field) in [
            (json!({"rate_limit": -1}), "rate_limit"),
            (json!({"rate_limit": 1.5}), "rate_limit"),
            (json!({"rate_limit": "100"}), "rate_limit"),
            (json!({"rate_limit": 2_000_000}), "rate_limit"),
            (json!({"webhook_signature": "hmac"}), "webhook_signature"),
            (json!({"webhook_secret": "hunter2"}), "webhook_secret"),
            (
                json!({"filter": {"message.user.role": "admin"}}),
                "filter[\"message.user.role\"]",
            ),
            (json!({"filter": [1]}), "filter"),
        ] {
            let err = upsert(&webhook(extra.clone()), None, 1).expect_err(&extra.to_string());
            assert_eq!(err.field, field, "{extra}: {err}");
        }
    }
}
