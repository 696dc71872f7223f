//! An event hook: which events (`event_types`) go where (`Target`), and with what credentials.

pub mod aws;
pub mod input;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use aws::{NameError, QueueUrl, Region, RoleArn, TopicArn};

use crate::sign::SignatureScheme;
use crate::{ContentFilter, EventFilter, Secret, Timestamp};

/// A hook's id: a UUID when the server makes it, or the caller's own (1–64 of `[A-Za-z0-9_-]`).
///
/// Ids are per app: on the wire an app sees the id it chose, and inside the server (store,
/// delivery, logs) the id carries its app as a prefix (`<app id>-<wire id>`, see
/// [`HookId::scoped`]), so two apps can use the same id and no app can learn or take another's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HookId(String);

/// The longest id a caller may choose.
pub const MAX_WIRE_HOOK_ID_LEN: usize = 64;
/// The longest id inside the server: a wire id with its app prefix.
const MAX_HOOK_ID_LEN: usize = MAX_WIRE_HOOK_ID_LEN + 21;

impl HookId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id inside the server of the hook the app knows as `wire`.
    pub fn scoped(app: impl Into<i64>, wire: &HookId) -> HookId {
        HookId(format!("{}-{}", app.into(), wire.0))
    }

    /// The id the app knows this hook by (an id without the app's prefix is returned as is).
    pub fn wire(&self, app: impl Into<i64>) -> HookId {
        let prefix = format!("{}-", app.into());
        HookId(self.0.strip_prefix(&prefix).unwrap_or(&self.0).to_owned())
    }
}

impl TryFrom<String> for HookId {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_HOOK_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s))
        } else {
            Err(NameError(format!(
                "{s:?} is not a hook id (1 to {MAX_WIRE_HOOK_ID_LEN} letters, digits, '-' or '_')"
            )))
        }
    }
}

impl From<HookId> for String {
    fn from(v: HookId) -> String {
        v.0
    }
}

impl fmt::Display for HookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `hook_type` values hookrelay delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookType {
    Webhook,
    Sqs,
    Sns,
}

impl HookType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Sqs => "sqs",
            Self::Sns => "sns",
        }
    }
}

/// An `http` or `https` URL with a host; checked again by the HTTP client when it is used.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WebhookUrl {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"));
        let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
        let ok = s.len() <= 2048
            && host.is_some_and(|h| !h.is_empty() && !h.starts_with(':') && !h.contains('@'))
            && !s
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
        if ok {
            Ok(Self(s))
        } else {
            Err(NameError(format!(
                "{s:?} is not an http(s) URL with a host"
            )))
        }
    }
}

impl From<WebhookUrl> for String {
    fn from(v: WebhookUrl) -> String {
        v.0
    }
}

/// How hookrelay authenticates to AWS for one hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "auth_type", rename_all = "snake_case")]
pub enum AwsAuth {
    /// The hook's own access key and secret. The secret is stored encrypted, apart from the rest
    /// of the hook (hence `skip`): see `hookrelay-store`.
    Keys {
        key: String,
        #[serde(skip)]
        secret: Secret,
    },
    /// The server's own AWS identity (the default credential chain). Stream calls this "resource":
    /// the customer grants the server's principal access in the queue's or topic's policy.
    Resource,
    /// The server's identity assumes this role through STS.
    Role { role_arn: RoleArn },
}

impl AwsAuth {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Keys { .. } => "keys",
            Self::Resource => "resource",
            Self::Role { .. } => "role",
        }
    }
}

/// Where a hook delivers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "hook_type", rename_all = "snake_case")]
pub enum Target {
    Webhook {
        url: WebhookUrl,
    },
    Sqs {
        queue_url: QueueUrl,
        region: Region,
        auth: AwsAuth,
    },
    Sns {
        topic_arn: TopicArn,
        region: Region,
        auth: AwsAuth,
    },
}

impl Target {
    pub fn hook_type(&self) -> HookType {
        match self {
            Self::Webhook { .. } => HookType::Webhook,
            Self::Sqs { .. } => HookType::Sqs,
            Self::Sns { .. } => HookType::Sns,
        }
    }

    pub fn aws_auth(&self) -> Option<&AwsAuth> {
        match self {
            Self::Sqs { auth, .. } | Self::Sns { auth, .. } => Some(auth),
            Self::Webhook { .. } => None,
        }
    }

    pub fn aws_auth_mut(&mut self) -> Option<&mut AwsAuth> {
        match self {
            Self::Sqs { auth, .. } | Self::Sns { auth, .. } => Some(auth),
            Self::Webhook { .. } => None,
        }
    }
}

/// A hook's Standard Webhooks secrets (`whsec_…`): the current one, and the one it replaced while
/// it stays valid. Stored encrypted, apart from the rest of the hook, like the AWS secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SigningSecrets {
    pub current: Option<Secret>,
    /// The replaced secret and the end of its rotation window.
    pub previous: Option<(Secret, Timestamp)>,
}

impl SigningSecrets {
    pub fn is_empty(&self) -> bool {
        self.current.is_none() && self.previous.is_none()
    }

    /// The secrets to sign with at `now`: the current one, then the previous one in its window.
    pub fn valid_at(&self, now: Timestamp) -> impl Iterator<Item = &Secret> {
        let previous = self
            .previous
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|(s, _)| s);
        self.current.iter().chain(previous)
    }
}

/// One event hook of an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventHook {
    pub id: HookId,
    pub enabled: bool,
    /// Empty = every event, now and in future.
    pub event_types: Vec<String>,
    /// Stream's `product` scope; kept and shown, every event is delivered whatever it says.
    pub product: String,
    pub target: Target,
    /// Stream fields hookrelay keeps and shows but does not act on yet.
    pub should_send_custom_events: Option<bool>,
    pub sns_event_based_message_group_id_enabled: Option<bool>,
    /// hookrelay's own fields (absent from a PATCH of an existing hook = unchanged).
    /// The most events per second delivered; `None` = unlimited.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// How deliveries are signed (`webhook_signature` on the wire).
    #[serde(default)]
    pub signature: SignatureScheme,
    /// Kept apart from the spec, encrypted (hence `skip`): see `hookrelay-store`.
    #[serde(skip)]
    pub signing: SigningSecrets,
    /// Which events the hook takes by their content, on top of `event_types`.
    #[serde(default)]
    pub filter: Option<ContentFilter>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl EventHook {
    /// What the hook takes: `event_types`, then the content `filter`.
    pub fn event_filter(&self) -> EventFilter {
        EventFilter::new(&self.event_types).with_content(self.filter.clone())
    }

    /// The hook's AWS secret, if it has one.
    pub fn secret(&self) -> Option<&Secret> {
        match self.target.aws_auth() {
            Some(AwsAuth::Keys { secret, .. }) => Some(secret),
            _ => None,
        }
    }

    /// Puts back the secret the store keeps apart (see [`AwsAuth::Keys`]).
    pub fn set_secret(&mut self, value: Secret) {
        if let Some(AwsAuth::Keys { secret, .. }) = self.target.aws_auth_mut() {
            *secret = value;
        }
    }
}
