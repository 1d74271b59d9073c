//! Placement validates bodies and query strings with JSON Schema, and its
//! 400s carry jsonschema's own words: `'total' is a required property`,
//! `Additional properties are not allowed ('x' was unexpected)`, then
//! `Failed validating 'minimum' in schema['properties']['total']`. Clients
//! and Placement's own test suite look for those words, so weft's checks
//! (serde's, and the ones done by hand) are worded the same way here.

use super::error::PlacementError;
use serde_json::Value;

/// A value as Python prints it (`repr`), which is how jsonschema quotes
/// the instance at fault: `'abc'`, `1`, `True`, `None`, `[]`, `{}`.
pub fn py(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => format!("[{}]", a.iter().map(py).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("'{k}': {}", py(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// jsonschema's message: what is wrong, then which rule (`validator`) of
/// the schema at `path` failed. `prefix`: `JSON does not validate` for
/// bodies, `Invalid query string parameters` for query strings.
pub fn message(prefix: &str, summary: &str, validator: &str, path: &[&str]) -> String {
    let schema: String = path
        .iter()
        .map(|k| format!("['properties']['{k}']"))
        .collect();
    let instance: String = path.iter().map(|k| format!("['{k}']")).collect();
    format!(
        "{prefix}: {summary}\n\nFailed validating '{validator}' in schema{schema}\n\nOn \
         instance{instance}"
    )
}

/// A body's 400 worded as jsonschema words it.
pub fn invalid(summary: &str, validator: &str, path: &[&str]) -> PlacementError {
    PlacementError::bad(message("JSON does not validate", summary, validator, path))
}

/// `'name' is a required property` at `path` (the object holding it).
pub fn required(name: &str, path: &[&str]) -> PlacementError {
    invalid(
        &format!("'{name}' is a required property"),
        "required",
        path,
    )
}

/// A string's length outside `min..=max` characters, or `None`.
pub fn length(s: &str, min: usize, max: usize, path: &[&str]) -> Option<PlacementError> {
    let n = s.chars().count();
    let v = Value::String(s.to_string());
    if n < min {
        Some(invalid(
            &format!("{} is too short", py(&v)),
            "minLength",
            path,
        ))
    } else if n > max {
        Some(invalid(
            &format!("{} is too long", py(&v)),
            "maxLength",
            path,
        ))
    } else {
        None
    }
}

/// The JSON type serde wanted, from its `expected ...` words.
fn json_type(expected: &str) -> &'static str {
    let e = expected.trim();
    if e.contains("sequence") || e.contains("tuple") {
        "array"
    } else if e.contains("map") || e.contains("struct") {
        "object"
    } else if e.contains("string") || e.contains("char") {
        "string"
    } else if e.contains("bool") {
        "boolean"
    } else if e.contains("f32") || e.contains("f64") || e.contains("float") {
        "number"
    } else if [
        "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "integer",
    ]
    .iter()
    .any(|t| e.contains(t))
    {
        "integer"
    } else {
        "object"
    }
}

/// serde's refusal of `body` (at `path`, as serde_path_to_error names it)
/// in jsonschema's words, where it says the same thing: an unknown field,
/// a missing one, a wrong type. Anything else keeps serde's words.
pub fn from_serde(body: &Value, path: &str, said: &str) -> PlacementError {
    let keys: Vec<&str> = if path == "." || path.is_empty() {
        Vec::new()
    } else {
        path.split('.').collect()
    };
    let field = |prefix: &str| {
        said.strip_prefix(prefix)
            .and_then(|r| r.split('`').next())
            .map(str::to_string)
    };
    if let Some(name) = field("unknown field `") {
        // serde points at the unknown field; jsonschema at its object.
        let at = &keys[..keys.len().saturating_sub(1)];
        return invalid(
            &format!("Additional properties are not allowed ('{name}' was unexpected)"),
            "additionalProperties",
            at,
        );
    }
    if let Some(name) = field("missing field `") {
        return required(&name, &keys);
    }
    if let Some(rest) = said.strip_prefix("invalid type: ") {
        let expected = rest.split(", expected ").nth(1).unwrap_or("");
        let mut at = body;
        for k in &keys {
            at = match at {
                Value::Object(o) => o.get(*k).unwrap_or(&Value::Null),
                Value::Array(a) => k
                    .parse()
                    .ok()
                    .and_then(|i: usize| a.get(i))
                    .unwrap_or(&Value::Null),
                _ => &Value::Null,
            };
        }
        let ty = json_type(expected);
        return invalid(&format!("{} is not of type '{ty}'", py(at)), "type", &keys);
    }
    PlacementError::bad(format!("JSON does not validate: {path}: {said}"))
}
