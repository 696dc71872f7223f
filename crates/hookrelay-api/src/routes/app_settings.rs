//! `GET /app` and `PATCH /app` (and their `/api/v2` twins): app settings and event hooks.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use hookrelay_core::hook::input::{
    FieldError, HookRequest, HookRules, parse_hook_request, validate_event_types,
};
use hookrelay_core::hook::{TopicArn, WebhookUrl};
use hookrelay_core::limits::MAX_HOOKS_PER_APP;
use hookrelay_core::secret::MASK;
use hookrelay_core::{EventHook, HookId, Secret, Timestamp};
use hookrelay_store::{App, AppSettings, StoreError};
use serde_json::{Map, Value, json};

use crate::app_json::{Dialect, SECRET_SETTINGS, UPDATABLE, default_app, render_app};
use crate::auth::AppAuth;
use crate::context::duration;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::state::AppState;

pub async fn get_legacy(state: State<AppState>, auth: AppAuth) -> ApiResult<Json<Value>> {
    get_app(state, auth, Dialect::Legacy).await
}

pub async fn get_v2(state: State<AppState>, auth: AppAuth) -> ApiResult<Json<Value>> {
    get_app(state, auth, Dialect::V2).await
}

async fn get_app(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    dialect: Dialect,
) -> ApiResult<Json<Value>> {
    let hooks = state.store.hooks(app.id).await?;
    Ok(Json(json!({
        "app": render_app(&app, &hooks, dialect),
        "duration": duration(),
    })))
}

pub async fn update(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    // Before the full parse: a huge list costs next to nothing.
    refuse_long_hook_lists(&body.0)?;
    let request = body.object().await?;
    // Validate everything before writing anything: a refused request changes nothing.
    let settings = new_settings(&app, &request)?;
    let hooks = match request.get("event_hooks") {
        None | Some(Value::Null) => None,
        Some(list) => {
            let explicit = match request.get("explicit_event_hooks_deletion") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(ApiError::field(
                        "explicit_event_hooks_deletion",
                        "must be true or false",
                    ));
                }
            };
            // The request speaks of hooks by the ids the app chose; the store by scoped ids.
            let stored = state
                .store
                .hooks(app.id)
                .await?
                .into_iter()
                .map(|h| with_id(h, |id| id.wire(app.id)))
                .collect();
            let list = new_hook_list(list, explicit, stored, &state.hook_rules)?;
            Some(
                list.into_iter()
                    .map(|h| with_id(h, |id| HookId::scoped(app.id, id)))
                    .collect::<Vec<_>>(),
            )
        }
    };
    if let Some(hooks) = hooks {
        match state.store.replace_hooks(app.id, hooks).await {
            Err(StoreError::HookIdTaken(id)) => {
                // Ids are scoped by app, so this cannot come from another app's hook.
                return Err(ApiError::internal(format!("hook id {id} taken")));
            }
            other => other?,
        }
    }
    if let Some(settings) = settings {
        state.store.update_app_settings(app.id, settings).await?;
        if let Some(fresh) = state.store.app_by_id(app.id).await? {
            state.apps.put(Arc::new(fresh));
        }
    }
    Ok(Json(json!({ "duration": duration() })))
}

/// Counts `event_hooks` without building a JSON tree of each hook (a scan of the raw text), so a
/// list far over the limit costs next to nothing. Malformed JSON is left to the full parse.
fn refuse_long_hook_lists(body: &[u8]) -> ApiResult<()> {
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        #[serde(borrow, default)]
        event_hooks: Option<Vec<&'a serde_json::value::RawValue>>,
    }
    let count = serde_json::from_slice::<Peek<'_>>(body)
        .ok()
        .and_then(|p| p.event_hooks)
        .map_or(0, |hooks| hooks.len());
    // An explicit-deletion request may delete every stored hook and create as many.
    if count > 2 * MAX_HOOKS_PER_APP {
        return Err(ApiError::field(
            "event_hooks",
            &format!("has {count} entries; an app can have at most {MAX_HOOKS_PER_APP} hooks"),
        ));
    }
    Ok(())
}

fn with_id(mut hook: EventHook, id: impl FnOnce(&HookId) -> HookId) -> EventHook {
    hook.id = id(&hook.id);
    hook
}

/// The hook list after this request: the given list (replace mode), or the stored list with the
/// given hooks created, updated or deleted (explicit-deletion mode).
fn new_hook_list(
    list: &Value,
    explicit: bool,
    stored: Vec<EventHook>,
    rules: &HookRules,
) -> ApiResult<Vec<EventHook>> {
    let Value::Array(items) = list else {
        return Err(ApiError::field("event_hooks", "must be an array of hooks"));
    };
    let now = Timestamp::now();
    let lookup = |id: &hookrelay_core::HookId| stored.iter().find(|h| &h.id == id).cloned();
    let mut result: Vec<EventHook> = if explicit { stored.clone() } else { Vec::new() };
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("event_hooks[{i}].");
        let request = parse_hook_request(item, explicit, lookup, rules, now)
            .map_err(|e| field_error(e.within(&prefix)))?;
        let id = match &request {
            HookRequest::Upsert(h) => h.id.clone(),
            HookRequest::Delete(id) => id.clone(),
        };
        if !seen.insert(id.clone()) {
            return Err(field_error(FieldError::new(
                format!("{prefix}id"),
                format!("{id} appears more than once in event_hooks"),
            )));
        }
        match request {
            HookRequest::Delete(id) => result.retain(|h| h.id != id),
            HookRequest::Upsert(hook) => match result.iter_mut().find(|h| h.id == hook.id) {
                Some(slot) => *slot = *hook,
                None => result.push(*hook),
            },
        }
    }
    if result.len() > MAX_HOOKS_PER_APP {
        return Err(ApiError::field(
            "event_hooks",
            &format!("an app can have at most {MAX_HOOKS_PER_APP} hooks"),
        ));
    }
    Ok(result)
}

fn field_error(e: FieldError) -> ApiError {
    ApiError::field(&e.field, &e.reason)
}

/// The app's settings after this request, or `None` when it sets none. Fields hookrelay does not
/// know, and read-only fields the Go SDK always sends, are ignored.
fn new_settings(app: &App, request: &Map<String, Value>) -> ApiResult<Option<AppSettings>> {
    let defaults = default_app(app);
    let mut settings = app.settings.clone();
    let mut changed = false;
    for (name, value) in request {
        if SECRET_SETTINGS.contains(&name.as_str()) {
            changed = true;
            match value {
                Value::Null => {}
                Value::String(s) if s == MASK => {}
                Value::String(s) if s.is_empty() => {
                    settings.secrets.remove(name);
                }
                Value::String(s) => {
                    settings
                        .secrets
                        .insert(name.clone(), Secret::new(s.clone()));
                }
                _ => return Err(ApiError::field(name, "must be a string")),
            }
            continue;
        }
        if !UPDATABLE.contains(&name.as_str()) {
            continue;
        }
        changed = true;
        if value.is_null() {
            settings.fields.remove(name);
            continue;
        }
        if let Some(default) = defaults.get(name)
            && std::mem::discriminant(default) != std::mem::discriminant(value)
        {
            return Err(ApiError::field(name, &format!("must be {}", kind(default))));
        }
        validate_setting(name, value)?;
        settings.fields.insert(name.clone(), value.clone());
    }
    Ok(changed.then_some(settings))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
        Value::Null => "null",
    }
}

/// Checks the settings whose content matters to hookrelay (URLs, ARNs, event types).
fn validate_setting(name: &str, value: &Value) -> ApiResult<()> {
    let text = value.as_str().unwrap_or_default();
    match name {
        "webhook_url"
        | "sqs_url"
        | "custom_action_handler_url"
        | "before_message_send_hook_url"
        | "moderation_webhook_url"
            if !text.is_empty() =>
        {
            WebhookUrl::try_from(text.to_owned())
                .map_err(|_| ApiError::field(name, "must be a valid URL"))?;
        }
        "sns_topic_arn" if !text.is_empty() => {
            text.parse::<TopicArn>()
                .map_err(|e| ApiError::field(name, &e.0))?;
        }
        "webhook_events" => {
            let types: Vec<String> = serde_json::from_value(value.clone())
                .map_err(|_| ApiError::field(name, "must be an array of strings"))?;
            validate_event_types(&types).map_err(|e| {
                field_error(FieldError::new(
                    e.field.replace("event_types", name),
                    e.reason,
                ))
            })?;
        }
        "enforce_unique_usernames" if !["no", "app", "team"].contains(&text) => {
            return Err(ApiError::field(name, "must be one of [no app team]"));
        }
        _ => {}
    }
    Ok(())
}
