//! Request bodies, checked field by field as Nova's JSON schemas check
//! them, with Nova's `Invalid input for field/attribute ...` messages.

use super::error::{ComputeError, ComputeResult};
use serde_json::{Map, Value};

/// The request body as a JSON object, or Nova's 400 for anything else.
pub fn object(b: &[u8]) -> ComputeResult<Map<String, Value>> {
    match serde_json::from_slice::<Value>(b) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ComputeError::BadRequest(
            "The request body must be a JSON object.".into(),
        )),
        Err(_) => Err(ComputeError::BadRequest("Malformed request body".into())),
    }
}

/// `body[key]` as an object (`{"flavor": {...}}`), or 400.
pub fn wrapped<'a>(
    body: &'a Map<String, Value>,
    key: &str,
) -> ComputeResult<&'a Map<String, Value>> {
    match body.get(key) {
        Some(Value::Object(m)) => Ok(m),
        Some(v) => Err(invalid(key, v, "is not of type 'object'")),
        None => Err(ComputeError::BadRequest(format!(
            "Invalid input for field/attribute {key}. Value: None. '{key}' is a required property"
        ))),
    }
}

/// Nova's schema error text.
pub fn invalid(field: &str, v: &Value, why: &str) -> ComputeError {
    ComputeError::BadRequest(format!(
        "Invalid input for field/attribute {field}. Value: {v}. {v} {why}"
    ))
}

/// A required or optional non-negative integer, given as a number or a
/// string of digits (Nova's `flavor_param_*` types accept both).
pub fn int_field(
    m: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
) -> ComputeResult<Option<u64>> {
    let Some(v) = m.get(key) else {
        return Ok(None);
    };
    let n = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n < min => Err(invalid(
            key,
            v,
            &format!("is less than the minimum of {min}"),
        )),
        Some(n) if n > max => Err(invalid(
            key,
            v,
            &format!("is greater than the maximum of {max}"),
        )),
        Some(n) => Ok(Some(n)),
        None => Err(invalid(key, v, "is not of type 'integer', 'string'")),
    }
}

/// A required field, or Nova's "is a required property".
pub fn required<T>(v: Option<T>, key: &str) -> ComputeResult<T> {
    v.ok_or_else(|| {
        ComputeError::BadRequest(format!(
            "Invalid input for field/attribute {key}. Value: None. '{key}' is a required property"
        ))
    })
}

/// An optional string no longer than `max`.
pub fn str_field(m: &Map<String, Value>, key: &str, max: usize) -> ComputeResult<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(v @ Value::String(_)) => Err(invalid(key, v, "is too long")),
        Some(v) => Err(invalid(key, v, "is not of type 'string'")),
    }
}

/// An optional boolean, given as JSON or as a string (`"true"`, `"False"`).
pub fn bool_field(m: &Map<String, Value>, key: &str) -> ComputeResult<Option<bool>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v @ Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(invalid(key, v, "is not of type 'boolean'")),
        },
        Some(v) => Err(invalid(key, v, "is not of type 'boolean'")),
    }
}

/// Rejects keys outside `allowed` (Nova's `additionalProperties: false`).
pub fn only(m: &Map<String, Value>, allowed: &[&str]) -> ComputeResult<()> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ComputeError::BadRequest(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        ))),
        None => Ok(()),
    }
}
