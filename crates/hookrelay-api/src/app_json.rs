//! How an app and its hooks look on the wire.
//!
//! The `app` object carries every field the SDKs require, with defaults that fit
//! a self-hosted server, overlaid with what the client stored through `PATCH /app`. Timestamps are
//! RFC 3339 strings on the legacy paths and integer nanoseconds on `/api/v2`.
//! Secrets always come back as [`MASK`].

use hookrelay_core::secret::MASK;
use hookrelay_core::sign::SignatureScheme;
use hookrelay_core::{AwsAuth, EventHook, Target, Timestamp};
use hookrelay_store::App;
use serde_json::{Map, Value, json};

/// Which path family a response is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `/app`, `/check_sqs`, …: RFC 3339 timestamps.
    Legacy,
    /// `/api/v2/...`: integer nanoseconds.
    V2,
}

impl Dialect {
    pub fn time(self, t: Timestamp) -> Value {
        match self {
            Self::Legacy => Value::String(t.to_rfc3339()),
            Self::V2 => Value::from(t.nanos()),
        }
    }
}

/// App settings clients may set through `PATCH /app` (Stream's UpdateAppRequest), other
/// than `event_hooks`. Others are accepted and ignored, as read-only fields must be.
pub const UPDATABLE: &[&str] = &[
    "activity_metrics_config",
    "allowed_flag_reasons",
    "apn_config",
    "async_moderation_config",
    "async_url_enrich_enabled",
    "auto_translation_enabled",
    "before_message_send_hook_attempt_timeout_ms",
    "before_message_send_hook_url",
    "cdn_expiration_seconds",
    "channel_hide_members_only",
    "chat_primary_use_case",
    "custom_action_handler_url",
    "datadog_info",
    "disable_auth_checks",
    "disable_permissions_checks",
    "enable_hook_payload_compression",
    "enforce_unique_usernames",
    "feed_audit_logs_enabled",
    "feeds_moderation_enabled",
    "feeds_v2_region",
    "file_upload_config",
    "firebase_config",
    "grants",
    "guest_user_creation_disabled",
    "huawei_config",
    "image_moderation_block_labels",
    "image_moderation_enabled",
    "image_moderation_labels",
    "image_upload_config",
    "max_aggregated_activities_length",
    "member_custom_on_messages_enabled",
    "moderation_analytics_enabled",
    "moderation_dashboard_preferences",
    "moderation_enabled",
    "moderation_onboarding_complete",
    "moderation_s3_image_access_role_arn",
    "moderation_webhook_url",
    "multi_tenant_enabled",
    "permission_version",
    "push_config",
    "reminders_interval",
    "reminders_max_members",
    "reminders_max_per_user",
    "sns_key",
    "sns_secret",
    "sns_topic_arn",
    "sqs_key",
    "sqs_secret",
    "sqs_url",
    "user_response_time_enabled",
    "user_search_disallowed_roles",
    "video_primary_use_case",
    "webhook_events",
    "webhook_url",
    "xiaomi_config",
];

/// Legacy app-level secrets: stored encrypted, shown masked.
pub const SECRET_SETTINGS: &[&str] = &["sqs_secret", "sns_secret"];

/// The app's defaults: every field the SDKs require.
pub fn default_app(app: &App) -> Map<String, Value> {
    let upload = json!({"size_limit": 0, "allowed_file_extensions": [], "allowed_mime_types": [],
                        "blocked_file_extensions": [], "blocked_mime_types": []});
    let value = json!({
        "id": app.id,
        "name": app.name,
        "organization": "",
        "allow_multi_user_devices": true,
        "async_url_enrich_enabled": false,
        "auto_translation_enabled": false,
        "call_types": {},
        "campaign_enabled": false,
        "cdn_expiration_seconds": 86400,
        "channel_configs": {},
        "custom_action_handler_url": "",
        "before_message_send_hook_url": "",
        "disable_auth_checks": false,
        "disable_permissions_checks": false,
        "enable_hook_payload_compression": false,
        "enforce_unique_usernames": "no",
        "event_hooks": [],
        "feed_audit_logs_enabled": false,
        "file_upload_config": upload,
        "grants": {},
        "guest_user_creation_disabled": false,
        "image_moderation_enabled": false,
        "image_upload_config": upload,
        "max_aggregated_activities_length": 0,
        "member_custom_on_messages_enabled": false,
        "member_custom_on_mentioned_users_enabled": false,
        "member_custom_on_typing_events_enabled": false,
        "moderation_audio_call_moderation_enabled": false,
        "moderation_enabled": false,
        "moderation_keyframe_video_enabled": false,
        "moderation_llm_configurability_enabled": false,
        "moderation_multitenant_blocklist_enabled": false,
        "moderation_video_call_moderation_enabled": false,
        "moderation_webhook_url": "",
        "multi_tenant_enabled": false,
        "permission_version": "v2",
        "placement": "",
        "policies": {},
        "push_notifications": {
            "offline_only": false, "version": "v3",
            "apn": {"development": false, "enabled": false},
            "firebase": {"enabled": false}, "huawei": {"enabled": false}, "xiaomi": {"enabled": false},
        },
        "reminders_interval": 3600,
        "sns_key": "", "sns_secret": "", "sns_topic_arn": "",
        "sqs_key": "", "sqs_secret": "", "sqs_url": "",
        "suspended": false,
        "suspended_explanation": "",
        "use_hook_v2": true,
        "user_response_time_enabled": false,
        "user_search_disallowed_roles": [],
        "webhook_events": [],
        "webhook_url": "",
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

/// The full `app` object of `GET /app`.
pub fn render_app(app: &App, hooks: &[EventHook], dialect: Dialect) -> Value {
    let mut out = default_app(app);
    for (k, v) in &app.settings.fields {
        out.insert(k.clone(), v.clone());
    }
    for name in SECRET_SETTINGS {
        let shown = if app.settings.secrets.contains_key(*name) {
            MASK
        } else {
            ""
        };
        out.insert((*name).to_owned(), Value::String(shown.to_owned()));
    }
    out.insert(
        "event_hooks".into(),
        Value::Array(
            hooks
                .iter()
                .map(|h| render_hook(h, app.id, dialect))
                .collect(),
        ),
    );
    Value::Object(out)
}

/// One hook of app `app`, in Stream's `EventHook` shape (with the id the app chose).
pub fn render_hook(hook: &EventHook, app: hookrelay_store::AppId, dialect: Dialect) -> Value {
    let mut h = Map::new();
    h.insert("id".into(), hook.id.wire(app).as_str().into());
    h.insert("hook_type".into(), hook.target.hook_type().as_str().into());
    h.insert("enabled".into(), hook.enabled.into());
    h.insert("event_types".into(), hook.event_types.clone().into());
    h.insert("product".into(), hook.product.clone().into());
    match &hook.target {
        Target::Webhook { url } => {
            h.insert("webhook_url".into(), url.as_str().into());
        }
        Target::Sqs {
            queue_url,
            region,
            auth,
        } => {
            h.insert("sqs_queue_url".into(), queue_url.as_str().into());
            h.insert("sqs_region".into(), region.as_str().into());
            render_auth(&mut h, "sqs", auth);
        }
        Target::Sns {
            topic_arn,
            region,
            auth,
        } => {
            h.insert("sns_topic_arn".into(), topic_arn.as_str().into());
            h.insert("sns_region".into(), region.as_str().into());
            render_auth(&mut h, "sns", auth);
        }
    }
    if let Some(v) = hook.should_send_custom_events {
        h.insert("should_send_custom_events".into(), v.into());
    }
    if let Some(v) = hook.sns_event_based_message_group_id_enabled {
        h.insert("sns_event_based_message_group_id_enabled".into(), v.into());
    }
    // hookrelay's own fields, shown only when set so Stream-shaped hooks look as Stream's do.
    if let Some(limit) = hook.rate_limit {
        h.insert("rate_limit".into(), limit.into());
    }
    if hook.signature != SignatureScheme::Stream {
        h.insert("webhook_signature".into(), hook.signature.as_str().into());
    }
    if hook.signing.current.is_some() {
        h.insert("webhook_secret".into(), MASK.into());
    }
    if let Some(filter) = &hook.filter {
        h.insert("filter".into(), filter.as_json().clone());
    }
    h.insert("created_at".into(), dialect.time(hook.created_at));
    h.insert("updated_at".into(), dialect.time(hook.updated_at));
    Value::Object(h)
}

fn render_auth(h: &mut Map<String, Value>, p: &str, auth: &AwsAuth) {
    h.insert(format!("{p}_auth_type"), auth.type_name().into());
    match auth {
        AwsAuth::Keys { key, .. } => {
            h.insert(format!("{p}_key"), key.as_str().into());
            h.insert(format!("{p}_secret"), MASK.into());
        }
        AwsAuth::Role { role_arn } => {
            h.insert(format!("{p}_role_arn"), role_arn.as_str().into());
        }
        AwsAuth::Resource => {}
    }
}
