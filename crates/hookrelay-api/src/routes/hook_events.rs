//! `GET /hook/events`: the event types hookrelay knows (the webhook-delivered
//! chat events). Hooks are not limited to these: any type ingested is delivered to hooks whose
//! `event_types` is empty or matches it.

use axum::Json;
use axum::extract::Query;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AppAuth;
use crate::context::duration;

const CHAT_EVENTS: &[(&str, &str)] = &[
    ("channel.created", "A channel is created"),
    ("channel.deleted", "A channel is deleted"),
    ("channel.frozen", "A channel is frozen"),
    ("channel.hidden", "A channel is hidden"),
    ("channel.muted", "A channel is muted"),
    ("channel.truncated", "A channel's history is truncated"),
    ("channel.unfrozen", "A channel is unfrozen"),
    ("channel.unmuted", "A channel is unmuted"),
    ("channel.updated", "A channel is updated"),
    ("channel.visible", "A hidden channel is shown again"),
    ("export.channels.success", "A channel export finished"),
    ("export.channels.error", "A channel export failed"),
    ("export.users.success", "A user export finished"),
    ("export.users.error", "A user export failed"),
    ("flag.updated", "A flag is updated"),
    ("member.added", "A member is added to a channel"),
    ("member.removed", "A member is removed from a channel"),
    ("member.updated", "A channel member is updated"),
    ("message.deleted", "A message is deleted"),
    ("message.flagged", "A message is flagged"),
    ("message.new", "A new message is sent"),
    ("message.pending", "A message is pending moderation"),
    ("message.read", "A channel is marked read"),
    ("message.unblocked", "A blocked message is unblocked"),
    ("message.undeleted", "A deleted message is restored"),
    ("message.updated", "A message is updated"),
    ("notification.mark_unread", "A channel is marked unread"),
    ("notification.reminder_due", "A message reminder is due"),
    (
        "notification.thread_message_new",
        "A new message in a thread the user takes part in",
    ),
    ("reaction.deleted", "A reaction is removed"),
    ("reaction.new", "A reaction is added"),
    ("reaction.updated", "A reaction is updated"),
    ("reminder.created", "A reminder is created"),
    ("reminder.deleted", "A reminder is deleted"),
    ("reminder.updated", "A reminder is updated"),
    ("thread.updated", "A thread is updated"),
    ("user.banned", "A user is banned"),
    ("user.deactivated", "A user is deactivated"),
    ("user.deleted", "A user is deleted"),
    ("user.flagged", "A user is flagged"),
    ("user.messages.deleted", "A user's messages are deleted"),
    ("user.muted", "A user is muted"),
    ("user.reactivated", "A user is reactivated"),
    ("user.unbanned", "A user is unbanned"),
    ("user.unmuted", "A user is unmuted"),
    ("user.unread_message_reminder", "A user has unread messages"),
    ("user.updated", "A user is updated"),
];

#[derive(Deserialize)]
pub struct ProductQuery {
    product: Option<String>,
}

pub async fn list(_auth: AppAuth, Query(q): Query<ProductQuery>) -> Json<Value> {
    let wants_chat = q.product.as_deref().is_none_or(|p| {
        p.split(',')
            .any(|p| matches!(p.trim(), "" | "chat" | "all"))
    });
    let events: Vec<Value> = if wants_chat {
        CHAT_EVENTS
            .iter()
            .map(|(name, description)| json!({"name": name, "description": description, "products": ["chat"]}))
            .collect()
    } else {
        Vec::new()
    };
    Json(json!({"events": events, "duration": duration()}))
}
