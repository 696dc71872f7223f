//! One module per area of the API.

pub mod app_settings;
pub mod check;
pub mod dead_letters;
pub mod events;
pub mod hook_events;
