//! A hook's `filter`: which events it takes by their content, not only by type.
//!
//! The shape follows SNS and EventBridge filter policies. A filter is a JSON object whose keys are
//! dotted paths into the event (`message.user.role`) and whose values are lists of conditions:
//!
//! ```json
//! {"channel_type": ["messaging"], "message.user.role": ["admin", "moderator"]}
//! ```
//!
//! An event matches when **every** key matches, and a key matches when **any** of its conditions
//! does. A condition is a JSON value (equal to it; strings, numbers, booleans and `null`), or an
//! object of one operator:
//! * `{"prefix": "abc"}`, `{"suffix": "xyz"}`: a string starting or ending so;
//! * `{"exists": true}` / `{"exists": false}`: the path is there (even as `null`) / is not;
//! * `{"numeric": [">=", 10, "<", 20]}`: a number in range (`<`, `<=`, `=`, `>=`, `>`; one or two
//!   comparisons);
//! * `{"not": [conditions]}`: the path is absent or matches none of them.
//!
//! When the value at a path is an array, a condition matches if any element does. A filter is
//! compiled once, when its hook is saved; matching reads the event's JSON and walks the paths.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::hook::input::FieldError;

/// At most this many keys, and conditions in all, per filter: a filter is a routing rule, not a
/// program, and its cost is paid for every event of the app.
pub const MAX_FILTER_KEYS: usize = 20;
pub const MAX_FILTER_CONDITIONS: usize = 150;
const MAX_PATH_LEN: usize = 256;

/// A compiled filter. It keeps the JSON it was made from, which is what the API shows and the
/// store keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct ContentFilter {
    source: Value,
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq)]
struct Rule {
    path: Vec<String>,
    any_of: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq)]
enum Condition {
    Equals(Value),
    Prefix(String),
    Suffix(String),
    Exists(bool),
    Numeric(Vec<(Comparison, f64)>),
    Not(Vec<Condition>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Comparison {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Comparison {
    fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "<" => Self::Lt,
            "<=" => Self::Le,
            "=" => Self::Eq,
            ">=" => Self::Ge,
            ">" => Self::Gt,
            _ => return None,
        })
    }

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Self::Lt => value < bound,
            Self::Le => value <= bound,
            Self::Eq => value == bound,
            Self::Ge => value >= bound,
            Self::Gt => value > bound,
        }
    }
}

impl ContentFilter {
    /// Compiles a filter. Errors name the part at fault, relative to the filter
    /// (`["message.user.role"][1]: …`); the caller prefixes the field's own path.
    pub fn compile(source: Value) -> Result<Self, FieldError> {
        let Value::Object(keys) = &source else {
            return Err(FieldError::new(
                "",
                "must be an object of path: [conditions]",
            ));
        };
        if keys.len() > MAX_FILTER_KEYS {
            return Err(FieldError::new(
                "",
                format!(
                    "has {} keys, at most {MAX_FILTER_KEYS} are allowed",
                    keys.len()
                ),
            ));
        }
        let mut rules = Vec::with_capacity(keys.len());
        let mut conditions = 0;
        for (key, value) in keys {
            let at = format!("[{key:?}]");
            let path: Vec<String> = key.split('.').map(str::to_owned).collect();
            if key.len() > MAX_PATH_LEN || path.iter().any(String::is_empty) {
                return Err(FieldError::new(
                    at,
                    format!(
                        "is not a path: use field names joined by '.' (at most {MAX_PATH_LEN} characters)"
                    ),
                ));
            }
            let any_of = conditions_of(value, &at, &mut conditions)?;
            rules.push(Rule { path, any_of });
        }
        if conditions > MAX_FILTER_CONDITIONS {
            return Err(FieldError::new(
                "",
                format!("has {conditions} conditions, at most {MAX_FILTER_CONDITIONS} are allowed"),
            ));
        }
        Ok(Self { source, rules })
    }

    /// Whether an event (its stored JSON) passes the filter. An event that is not a JSON object
    /// cannot be stored, so an unreadable one is treated as not matching.
    pub fn matches_json(&self, payload: &[u8]) -> bool {
        match serde_json::from_slice::<Value>(payload) {
            Ok(event) => self.matches(&event),
            Err(_) => false,
        }
    }

    pub fn matches(&self, event: &Value) -> bool {
        self.rules.iter().all(|rule| {
            let found = lookup(event, &rule.path);
            rule.any_of.iter().any(|c| c.matches(found))
        })
    }

    pub fn as_json(&self) -> &Value {
        &self.source
    }
}

// Numbers come from JSON, which has no NaN: equality is total.
impl Eq for ContentFilter {}

impl TryFrom<Value> for ContentFilter {
    type Error = FieldError;
    fn try_from(value: Value) -> Result<Self, FieldError> {
        Self::compile(value)
    }
}

impl From<ContentFilter> for Value {
    fn from(f: ContentFilter) -> Value {
        f.source
    }
}

fn lookup<'a>(event: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(event, |at, name| at.as_object()?.get(name.as_str()))
}

fn conditions_of(value: &Value, at: &str, count: &mut usize) -> Result<Vec<Condition>, FieldError> {
    let Value::Array(items) = value else {
        return Err(FieldError::new(at, "must be an array of conditions"));
    };
    if items.is_empty() {
        return Err(FieldError::new(at, "must hold at least one condition"));
    }
    *count += items.len();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| condition(item, &format!("{at}[{i}]"), count))
        .collect()
}

fn condition(value: &Value, at: &str, count: &mut usize) -> Result<Condition, FieldError> {
    let Value::Object(op) = value else {
        return match value {
            Value::Array(_) => Err(FieldError::new(
                at,
                "must be a value or an operator object, not an array",
            )),
            v => Ok(Condition::Equals(v.clone())),
        };
    };
    let Some((name, arg)) = single(op) else {
        return Err(FieldError::new(
            at,
            "must be an object of exactly one operator: prefix, suffix, exists, numeric or not",
        ));
    };
    let at = format!("{at}.{name}");
    match (name.as_str(), arg) {
        ("prefix", Value::String(s)) => Ok(Condition::Prefix(s.clone())),
        ("suffix", Value::String(s)) => Ok(Condition::Suffix(s.clone())),
        ("prefix" | "suffix", _) => Err(FieldError::new(at, "must be a string")),
        ("exists", Value::Bool(b)) => Ok(Condition::Exists(*b)),
        ("exists", _) => Err(FieldError::new(at, "must be true or false")),
        ("numeric", Value::Array(parts)) => numeric(parts, &at),
        ("numeric", _) => Err(FieldError::new(
            at,
            "must be an array like [\">=\", 0, \"<\", 10]",
        )),
        ("not", inner) => {
            let list = match inner {
                Value::Array(_) => inner.clone(),
                single => Value::Array(vec![single.clone()]),
            };
            Ok(Condition::Not(conditions_of(&list, &at, count)?))
        }
        (other, _) => Err(FieldError::new(
            at,
            format!("{other:?} is not an operator: use prefix, suffix, exists, numeric or not"),
        )),
    }
}

fn single(map: &Map<String, Value>) -> Option<(&String, &Value)> {
    let mut entries = map.iter();
    let first = entries.next()?;
    entries.next().is_none().then_some(first)
}

fn numeric(parts: &[Value], at: &str) -> Result<Condition, FieldError> {
    let bad = || {
        FieldError::new(
            at,
            "must be one or two comparisons like [\">=\", 0, \"<\", 10] (<, <=, =, >=, >)",
        )
    };
    if parts.is_empty() || parts.len() > 4 || !parts.len().is_multiple_of(2) {
        return Err(bad());
    }
    parts
        .chunks(2)
        .map(|pair| match (&pair[0], &pair[1]) {
            (Value::String(op), Value::Number(n)) => Ok((
                Comparison::parse(op).ok_or_else(bad)?,
                n.as_f64().ok_or_else(bad)?,
            )),
            _ => Err(bad()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Condition::Numeric)
}

impl Condition {
    /// Whether the value found at the path (`None`: the path is absent) matches.
    fn matches(&self, found: Option<&Value>) -> bool {
        match self {
            Self::Exists(wanted) => found.is_some() == *wanted,
            Self::Not(inner) => !inner.iter().any(|c| c.matches(found)),
            _ => match found {
                None => false,
                Some(Value::Array(items)) => items.iter().any(|v| self.matches_one(v)),
                Some(v) => self.matches_one(v),
            },
        }
    }

    fn matches_one(&self, value: &Value) -> bool {
        match (self, value) {
            (Self::Equals(Value::Number(want)), Value::Number(got)) => {
                want.as_f64() == got.as_f64()
            }
            (Self::Equals(want), got) => want == got,
            (Self::Prefix(p), Value::String(s)) => s.starts_with(p.as_str()),
            (Self::Suffix(p), Value::String(s)) => s.ends_with(p.as_str()),
            (Self::Numeric(checks), Value::Number(n)) => n
                .as_f64()
                .is_some_and(|v| checks.iter().all(|(op, bound)| op.holds(v, *bound))),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(v: Value) -> ContentFilter {
        ContentFilter::compile(v).unwrap()
    }

    fn event() -> Value {
        json!({
            "type": "message.new", "channel_type": "messaging", "cid": "messaging:general",
            "message": {"text": "hi", "user": {"id": "u1", "role": "admin"}, "reply_count": 3,
                        "tags": ["urgent", "billing"], "parent_id": null},
        })
    }

    #[test]
    fn every_key_and_any_condition() {
        let f = filter(
            json!({"channel_type": ["messaging"], "message.user.role": ["admin", "moderator"]}),
        );
        assert!(f.matches(&event()));
        let f = filter(json!({"channel_type": ["messaging"], "message.user.role": ["moderator"]}));
        assert!(!f.matches(&event()));
        assert!(
            filter(json!({})).matches(&event()),
            "an empty filter takes everything"
        );
    }

    #[test]
    fn each_operator() {
        let cases = [
            (json!({"cid": [{"prefix": "messaging:"}]}), true),
            (json!({"cid": [{"prefix": "livestream:"}]}), false),
            (json!({"cid": [{"suffix": ":general"}]}), true),
            (json!({"message.parent_id": [{"exists": true}]}), true),
            (json!({"message.thread": [{"exists": false}]}), true),
            (json!({"message.thread": [{"exists": true}]}), false),
            (
                json!({"message.reply_count": [{"numeric": [">", 2, "<=", 3]}]}),
                true,
            ),
            (
                json!({"message.reply_count": [{"numeric": [">=", 4]}]}),
                false,
            ),
            (json!({"message.reply_count": [3.0]}), true),
            (
                json!({"message.user.role": [{"not": ["user", "guest"]}]}),
                true,
            ),
            (json!({"message.user.role": [{"not": "admin"}]}), false),
            (json!({"message.absent": [{"not": ["x"]}]}), true),
            (json!({"message.tags": ["billing"]}), true),
            (json!({"message.tags": [{"prefix": "urg"}]}), true),
            (json!({"message.parent_id": [null]}), true),
            (json!({"message.text.deeper": ["hi"]}), false),
        ];
        for (f, expected) in cases {
            assert_eq!(filter(f.clone()).matches(&event()), expected, "{f}");
        }
    }

    #[test]
    fn errors_name_the_part_at_fault() {
        let cases = [
            (json!(["messaging"]), ""),
            (json!({"a": "messaging"}), "[\"a\"]"),
            (json!({"a": []}), "[\"a\"]"),
            (json!({"a..b": ["x"]}), "[\"a..b\"]"),
            (json!({"a": ["ok", {"prefix": 1}]}), "[\"a\"][1].prefix"),
            (
                json!({"a": [{"numeric": [">", "1"]}]}),
                "[\"a\"][0].numeric",
            ),
            (json!({"a": [{"numeric": ["~", 1]}]}), "[\"a\"][0].numeric"),
            (json!({"a": [{"regex": ".*"}]}), "[\"a\"][0].regex"),
            (json!({"a": [{"prefix": "x", "suffix": "y"}]}), "[\"a\"][0]"),
            (
                json!({"a": [{"not": [{"exists": "yes"}]}]}),
                "[\"a\"][0].not[0].exists",
            ),
            (json!({"a": [["nested"]]}), "[\"a\"][0]"),
        ];
        for (f, field) in cases {
            let err = ContentFilter::compile(f.clone()).expect_err(&f.to_string());
            assert_eq!(err.field, field, "{f}: {err}");
        }
        let many: Map<String, Value> = (0..21).map(|i| (format!("k{i}"), json!(["x"]))).collect();
        assert!(ContentFilter::compile(Value::Object(many)).is_err());
    }

    #[test]
    fn round_trips_as_its_source_json() {
        let source =
            json!({"message.user.role": [{"not": ["guest"]}], "channel_type": ["messaging"]});
        let f = filter(source.clone());
        let text = serde_json::to_string(&f).unwrap();
        let back: ContentFilter = serde_json::from_str(&text).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.as_json(), &source);
        assert!(f.matches_json(serde_json::to_vec(&event()).unwrap().as_slice()));
    }
}
