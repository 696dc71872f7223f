//! How apps' settings and hooks are written into database columns, shared by every backend:
//! plain fields as JSON text, secrets apart and encrypted.

use std::collections::BTreeMap;

use hookrelay_core::{EventHook, Secret};
use serde_json::Map;

use crate::{AppSettings, Result, SecretBox, StoreError};

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

/// `(spec JSON without the secret, sealed secret)` of a hook.
pub fn encode_hook(secrets: &SecretBox, hook: &EventHook) -> Result<(String, Option<Vec<u8>>)> {
    let spec =
        serde_json::to_string(hook).map_err(|e| StoreError::Corrupt(format!("hook spec: {e}")))?;
    Ok((spec, hook.secret().map(|s| secrets.seal(s))))
}

pub fn decode_hook(secrets: &SecretBox, spec: &str, sealed: Option<&[u8]>) -> Result<EventHook> {
    let mut hook: EventHook =
        serde_json::from_str(spec).map_err(|e| StoreError::Corrupt(format!("hook spec: {e}")))?;
    if let Some(blob) = sealed {
        hook.set_secret(secrets.open(blob)?);
    }
    Ok(hook)
}
