//! Which events a hook receives: its `event_types`. Empty means every event, including types that
//! do not exist yet (the seeds: "Not provided or empty array means subscribe to all existing and
//! future events"). An entry ending in `*` matches by prefix, so `message.*` takes `message.new`
//! and `message.updated`, and `*` alone takes everything. A hook's content `filter`
//! ([`ContentFilter`]) narrows it further.

use crate::ContentFilter;

/// A compiled `event_types` list, with the hook's content filter if it has one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    exact: Vec<String>,
    prefixes: Vec<String>,
    all: bool,
    content: Option<ContentFilter>,
}

impl EventFilter {
    pub fn new(event_types: &[String]) -> Self {
        let mut filter = Self {
            all: event_types.is_empty(),
            ..Self::default()
        };
        for t in event_types {
            match t.strip_suffix('*') {
                Some("") => filter.all = true,
                Some(prefix) => filter.prefixes.push(prefix.to_owned()),
                None => filter.exact.push(t.clone()),
            }
        }
        filter
    }

    pub fn with_content(mut self, content: Option<ContentFilter>) -> Self {
        self.content = content;
        self
    }

    /// Whether the hook takes this event: its type, then (only then, as it costs reading the
    /// JSON) its content.
    pub fn matches_event(&self, event_type: &str, payload: &[u8]) -> bool {
        self.matches(event_type)
            && self
                .content
                .as_ref()
                .is_none_or(|c| c.matches_json(payload))
    }

    /// Whether the hook takes events of this type (its content filter aside).
    pub fn matches(&self, event_type: &str) -> bool {
        self.all
            || self.exact.iter().any(|t| t == event_type)
            || self
                .prefixes
                .iter()
                .any(|p| event_type.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(types: &[&str]) -> EventFilter {
        EventFilter::new(&types.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn empty_matches_everything_even_future_types() {
        assert!(f(&[]).matches("message.new"));
        assert!(f(&[]).matches("some.type.invented.tomorrow"));
    }

    #[test]
    fn exact_and_wildcard() {
        let filter = f(&["reaction.new", "message.*"]);
        assert!(filter.matches("reaction.new"));
        assert!(filter.matches("message.new"));
        assert!(filter.matches("message.updated"));
        assert!(!filter.matches("reaction.deleted"));
        assert!(!filter.matches("messages.new"));
        assert!(f(&["*"]).matches("anything"));
    }
}
