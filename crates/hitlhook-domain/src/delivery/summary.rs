//! A readable summary of a checkpoint's context for people (Slack, email): the top-level fields
//! as label/value pairs, long values shortened, nested values as compact JSON. Renderers escape
//! the text for their own format.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// One line of a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub label: String,
    pub value: String,
}

/// Summarises `context_json`: at most `max_fields` fields, each value at most `max_chars`
/// characters. Fields left out are counted in a last `…` line. Invalid JSON is shown as text.
#[must_use]
pub fn summarize(context_json: &str, max_fields: usize, max_chars: usize) -> Vec<Field> {
    // An object is read in the sender's field order (serde_json's map would sort the keys).
    let ordered = serde_json::from_str::<OrderedObject>(context_json).ok();
    let value: Value = match serde_json::from_str(context_json) {
        Ok(v) => v,
        Err(_) => {
            return vec![Field {
                label: "context".into(),
                value: shorten(context_json, max_chars),
            }];
        }
    };
    let entries: Vec<(String, &Value)> = match (&value, &ordered) {
        (Value::Object(_), Some(OrderedObject(fields))) => {
            fields.iter().map(|(k, v)| (k.clone(), v)).collect()
        }
        (Value::Object(map), None) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        (Value::Array(items), _) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("#{}", i + 1), v))
            .collect(),
        (Value::Null, _) => Vec::new(),
        (other, _) => vec![("context".to_owned(), other)],
    };
    let total = entries.len();
    let mut fields: Vec<Field> = entries
        .into_iter()
        .take(max_fields)
        .map(|(label, v)| Field {
            label: shorten(&label, 64),
            value: shorten(&as_text(v), max_chars),
        })
        .collect();
    if total > max_fields {
        fields.push(Field {
            label: "…".into(),
            value: format!("{} more fields in the inbox", total - max_fields),
        });
    }
    fields
}

/// A JSON object's fields in document order.
struct OrderedObject(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    fields.push((k, v));
                }
                Ok(OrderedObject(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Cuts `text` to `max` characters (not bytes), marking the cut with `…`.
#[must_use]
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(fields: &[Field]) -> Vec<(&str, &str)> {
        fields
            .iter()
            .map(|f| (f.label.as_str(), f.value.as_str()))
            .collect()
    }

    #[test]
    fn summary_table() {
        let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
            (
                r#"{"plan": "research", "score": 0.93, "ok": true}"#,
                vec![("plan", "research"), ("score", "0.93"), ("ok", "true")],
            ),
            (
                r#"{"nested": {"a": [1]}}"#,
                vec![("nested", r#"{"a":[1]}"#)],
            ),
            (r#"["x", 2]"#, vec![("#1", "x"), ("#2", "2")]),
            ("{}", vec![]),
            ("null", vec![]),
            (
                r#"{"z": null, "a": false}"#,
                vec![("z", "null"), ("a", "false")],
            ),
            ("not json", vec![("context", "not json")]),
            (r#"{"long": "abcdefghijkl"}"#, vec![("long", "abcdefghi…")]),
            (
                r#"{"a":1,"b":2,"c":3,"d":4,"e":5}"#,
                vec![
                    ("a", "1"),
                    ("b", "2"),
                    ("c", "3"),
                    ("…", "2 more fields in the inbox"),
                ],
            ),
        ];
        for (json, want) in cases {
            assert_eq!(pairs(&summarize(json, 3, 10)), want, "{json}");
        }
    }

    #[test]
    fn shorten_counts_characters() {
        assert_eq!(shorten("ééééé", 3), "éé…");
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abc", 0), "…");
    }
}
