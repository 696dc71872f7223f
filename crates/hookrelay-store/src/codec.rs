//! How apps' settings and hooks are written into database columns, shared by every backend:
//! plain fields as JSON text, secrets apart and encrypted.

use std::collections::BTreeMap;

use hookrelay_core::hook::SigningSecrets;
use hookrelay_core::{EventHook, Secret, Timestamp};
use serde_json::Map;

use crate::{AppSettings, AttemptEvent, Result, SecretBox, Seq, StoreError};

/// `(settings JSON, sealed legacy secrets)` of an app.
pub fn encode_settings(
    secrets: &SecretBox,
    settings: &AppSettings,
) -> Result<(String, Option<Vec<u8>>)> {
    let fields = serde_json::to_string(&settings.fields)
        .map_err(|e| StoreError::Corrupt(format!("app settings: {e}")))?;
    if settings.secrets.is_empty() {
        return Ok((fields, None));
    }
    let clear: BTreeMap<&str, &str> = settings
        .secrets
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    let json = serde_json::to_string(&clear)
        .map_err(|e| StoreError::Corrupt(format!("app secret settings: {e}")))?;
    Ok((fields, Some(secrets.seal(&Secret::new(json)))))
}

pub fn decode_settings(
    secrets: &SecretBox,
    fields: &str,
    sealed: Option<&[u8]>,
) -> Result<AppSettings> {
    let fields: Map<_, _> = serde_json::from_str(fields)
        .map_err(|e| StoreError::Corrupt(format!("app settings: {e}")))?;
    let secrets = match sealed {
        Some(blob) => {
            let json = secrets.open(blob)?;
            let map: BTreeMap<String, String> = serde_json::from_str(json.expose())
                .map_err(|e| StoreError::Corrupt(format!("app secret settings: {e}")))?;
            map.into_iter().map(|(k, v)| (k, Secret::new(v))).collect()
        }
        None => BTreeMap::new(),
    };
    Ok(AppSettings { fields, secrets })
}

/// The sealed secrets of a hook with a signing secret: a JSON object behind this marker. A hook
/// with only an AWS secret keeps the older form (that secret alone), which the marker tells apart:
/// no AWS secret starts with a NUL byte.
const SECRETS_MARKER: &str = "\0hookrelay-hook-secrets:";

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct SealedHookSecrets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aws: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_signing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_until_ns: Option<i64>,
}

/// `(spec JSON without the secrets, sealed secrets)` of a hook.
pub fn encode_hook(secrets: &SecretBox, hook: &EventHook) -> Result<(String, Option<Vec<u8>>)> {
    let spec =
        serde_json::to_string(hook).map_err(|e| StoreError::Corrupt(format!("hook spec: {e}")))?;
    if hook.signing.is_empty() {
        return Ok((spec, hook.secret().map(|s| secrets.seal(s))));
    }
    let sealed = SealedHookSecrets {
        aws: hook.secret().map(|s| s.expose().to_owned()),
        signing: hook.signing.current.as_ref().map(|s| s.expose().to_owned()),
        previous_signing: hook
            .signing
            .previous
            .as_ref()
            .map(|(s, _)| s.expose().to_owned()),
        previous_until_ns: hook.signing.previous.as_ref().map(|(_, t)| t.nanos()),
    };
    let json = serde_json::to_string(&sealed)
        .map_err(|e| StoreError::Corrupt(format!("hook secrets: {e}")))?;
    Ok((
        spec,
        Some(secrets.seal(&Secret::new(format!("{SECRETS_MARKER}{json}")))),
    ))
}

pub fn decode_hook(secrets: &SecretBox, spec: &str, sealed: Option<&[u8]>) -> Result<EventHook> {
    let mut hook: EventHook =
        serde_json::from_str(spec).map_err(|e| StoreError::Corrupt(format!("hook spec: {e}")))?;
    let Some(blob) = sealed else {
        return Ok(hook);
    };
    let opened = secrets.open(blob)?;
    let Some(json) = opened.expose().strip_prefix(SECRETS_MARKER) else {
        hook.set_secret(opened);
        return Ok(hook);
    };
    let parts: SealedHookSecrets = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("hook secrets: {e}")))?;
    if let Some(aws) = parts.aws {
        hook.set_secret(Secret::new(aws));
    }
    hook.signing = SigningSecrets {
        current: parts.signing.map(Secret::new),
        previous: parts
            .previous_signing
            .zip(parts.previous_until_ns)
            .map(|(s, until)| (Secret::new(s), Timestamp::from_nanos(until))),
    };
    Ok(hook)
}

/// An app's previous API secret and the end of its window, from their two columns.
pub fn decode_previous_secret(
    secrets: &SecretBox,
    sealed: Option<&[u8]>,
    until_ms: Option<i64>,
) -> Result<Option<(Secret, Timestamp)>> {
    match (sealed, until_ms) {
        (Some(blob), Some(ms)) => Ok(Some((secrets.open(blob)?, Timestamp::from_millis(ms)))),
        _ => Ok(None),
    }
}

/// An attempt's events as stored: `[[seq, "event id", attempt], ...]`, compact for a batch.
pub fn attempt_events_json(events: &[AttemptEvent]) -> Result<String> {
    let rows: Vec<(Seq, &str, u32)> = events
        .iter()
        .map(|e| (e.seq, e.id.as_str(), e.attempt))
        .collect();
    serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(format!("attempt events: {e}")))
}

pub fn parse_attempt_events(json: &str) -> Result<Vec<AttemptEvent>> {
    let rows: Vec<(Seq, String, u32)> = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("attempt events: {e}")))?;
    Ok(rows
        .into_iter()
        .map(|(seq, id, attempt)| AttemptEvent { seq, id, attempt })
        .collect())
}
