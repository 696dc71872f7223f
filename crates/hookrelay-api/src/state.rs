//! What every handler shares.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hookrelay_core::Secret;
use hookrelay_core::hook::input::HookRules;
use hookrelay_store::{App, Store};

use crate::error::ApiResult;

/// Request limits, from the server config.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Largest request body accepted, in bytes (ingest batches included).
    pub max_body_bytes: usize,
    /// Largest single event, in bytes, as stored.
    pub max_event_bytes: usize,
    /// How long a request body may take to arrive, once its headers have.
    pub body_timeout: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_event_bytes: 1024 * 1024,
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Shared state of the HTTP API.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub apps: Arc<AppCache>,
    pub limits: ApiLimits,
    pub delivery: hookrelay_delivery::DeliveryHandle,
    /// Renders `/metrics`; `None` when metrics are disabled.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// What hooks may point at (emulator endpoints).
    pub hook_rules: Arc<HookRules>,
    /// When set, `/metrics` needs `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret>,
    /// The web console's sessions.
    pub console: Arc<crate::console::Sessions>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        limits: ApiLimits,
        delivery: hookrelay_delivery::DeliveryHandle,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Self {
        Self {
            store,
            apps: Arc::new(AppCache::default()),
            console: Arc::default(),
            limits,
            delivery,
            metrics,
            hook_rules: Arc::default(),
            metrics_token: None,
        }
    }

    pub fn with_metrics_token(mut self, token: Option<Secret>) -> Self {
        self.metrics_token = token;
        self
    }

    pub fn with_hook_rules(mut self, rules: HookRules) -> Self {
        self.hook_rules = Arc::new(rules);
        self
    }
}

/// How long an app read from the store is trusted before it is read again: the bound on how
/// long a secret rotated or an app deleted through another node (or `hookrelay apps` on the data
/// directory) keeps working here.
const APP_CACHE_TTL: Duration = Duration::from_secs(2);

/// Apps by API key, so authenticating a request (ingest above all) costs no database read.
/// A miss reads the store, so apps created by `hookrelay apps create` while the server runs are
/// found; `PATCH /app`, a secret rotation and a deletion refresh the entry of their app at once.
#[derive(Default)]
pub struct AppCache {
    by_key: RwLock<HashMap<String, (Arc<App>, Instant)>>,
}

impl AppCache {
    pub async fn by_key(&self, store: &dyn Store, key: &str) -> ApiResult<Option<Arc<App>>> {
        if let Some((app, read_at)) = self
            .by_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            && read_at.elapsed() < APP_CACHE_TTL
        {
            return Ok(Some(app.clone()));
        }
        let Some(app) = store.app_by_key(key).await? else {
            self.remove(key);
            return Ok(None);
        };
        let app = Arc::new(app);
        self.put(app.clone());
        Ok(Some(app))
    }

    pub fn put(&self, app: Arc<App>) {
        self.by_key
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(app.api_key.clone(), (app, Instant::now()));
    }

    pub fn remove(&self, key: &str) {
        self.by_key
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}
