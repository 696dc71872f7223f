//! One module per area of the API.

pub mod app_lifecycle;
pub mod app_settings;
pub mod check;
pub mod dead_letters;
pub mod events;
pub mod health;
pub mod hook_events;
pub mod hooks;
pub mod inlet;
pub mod metrics;
