//! Request bodies: typed structs read with serde_path_to_error, so every
//! 400 names the path of the bad field.

use super::error::{NetError, NetResult};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Reads a typed request body; a bad field's 400 names its path
/// (`Invalid input for ports.<id>: ...`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> NetResult<T> {
    if bytes.is_empty() {
        return Err(NetError::bad("HTTPBadRequest", "Resource body required"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, T>(de).map_err(path_error)
}

/// Reads a typed value out of an already parsed body; `prefix` is its path.
pub fn typed<T: DeserializeOwned>(v: &Value, prefix: &str) -> NetResult<T> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            prefix.to_string()
        } else {
            format!("{prefix}.{path}")
        };
        NetError::invalid(&field, e.into_inner())
    })
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> NetError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        NetError::bad("HTTPBadRequest", format!("Malformed request body: {inner}"))
    } else if path == "." {
        NetError::bad("HTTPBadRequest", format!("Invalid request body: {inner}"))
    } else {
        NetError::invalid(&path, inner)
    }
}

/// `PUT /agent/v1/hosts/{host}`: an agent registers its tunnel endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRegistration {
    pub agent: AgentFields,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFields {
    /// None (or absent): the host has no tunnel endpoint.
    #[serde(default)]
    pub tunnel_ip: Option<String>,
}

/// `POST /agent/v1/hosts/{host}/status`: `{"ports": {"<port id>": "ACTIVE"}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    pub ports: BTreeMap<String, String>,
}

/// `POST /agent/v1/hosts/{host}/ports/{id}/status`: `{"status": "ACTIVE"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortStatus {
    pub status: String,
}

/// The attributes of one resource in a request (`{"network": {...}}` inner map).
/// Each accessor removes what it reads; `finish` rejects whatever is left.
pub struct Fields {
    map: Map<String, Value>,
    op: &'static str,
}

/// Unwraps `{"<resource>": {...}}`.
pub fn unwrap(body: &Value, resource: &str, op: &'static str) -> NetResult<Fields> {
    match body.get(resource) {
        Some(Value::Object(m)) => Ok(Fields { map: m.clone(), op }),
        Some(_) => Err(NetError::invalid(resource, "must be a JSON object")),
        None => Err(NetError::bad(
            "HTTPBadRequest",
            format!("Resource body required: expected a '{resource}' object"),
        )),
    }
}

impl Fields {
    pub fn from_map(map: Map<String, Value>, op: &'static str) -> Fields {
        Fields { map, op }
    }

    pub fn has(&self, field: &str) -> bool {
        self.map.contains_key(field)
    }

    pub fn raw(&mut self, field: &str) -> Option<Value> {
        self.map.remove(field)
    }

    /// Neutron's read-only attributes: present -> 400.
    pub fn forbid(&mut self, field: &str) -> NetResult<()> {
        if self.map.contains_key(field) {
            return Err(NetError::bad(
                "HTTPBadRequest",
                format!("Attribute '{field}' not allowed in {}", self.op),
            ));
        }
        Ok(())
    }

    pub fn string(&mut self, field: &str) -> NetResult<Option<String>> {
        match self.map.remove(field) {
            None => Ok(None),
            Some(Value::String(s)) => {
                if s.len() > 255 {
                    Err(NetError::invalid(
                        field,
                        format!("'{s}' exceeds maximum length of 255"),
                    ))
                } else {
                    Ok(Some(s))
                }
            }
            Some(v) => Err(NetError::invalid(
                field,
                format!("'{v}' is not a valid string"),
            )),
        }
    }

    /// A string that may also be JSON null.
    pub fn opt_string(&mut self, field: &str) -> NetResult<Option<Option<String>>> {
        match self.map.get(field) {
            Some(Value::Null) => {
                self.map.remove(field);
                Ok(Some(None))
            }
            _ => Ok(self.string(field)?.map(Some)),
        }
    }

    pub fn boolean(&mut self, field: &str) -> NetResult<Option<bool>> {
        match self.map.remove(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(NetError::invalid(
                field,
                format!("'{v}' cannot be converted to boolean"),
            )),
        }
    }

    /// An integer, also from a numeric string (Neutron's convert_to_int); null -> None.
    pub fn int(&mut self, field: &str) -> NetResult<Option<Option<i64>>> {
        match self.map.remove(field) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::Number(n)) if n.is_i64() => Ok(Some(n.as_i64())),
            Some(Value::String(s)) => match s.trim().parse::<i64>() {
                Ok(v) => Ok(Some(Some(v))),
                Err(_) => Err(NetError::invalid(field, format!("'{s}' is not an integer"))),
            },
            Some(v) => Err(NetError::invalid(field, format!("'{v}' is not an integer"))),
        }
    }

    pub fn list(&mut self, field: &str) -> NetResult<Option<Vec<Value>>> {
        match self.map.remove(field) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(Value::Null) => Ok(Some(Vec::new())),
            Some(v) => Err(NetError::invalid(field, format!("'{v}' is not a list"))),
        }
    }

    pub fn string_list(&mut self, field: &str) -> NetResult<Option<Vec<String>>> {
        let Some(items) = self.list(field)? else {
            return Ok(None);
        };
        items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(NetError::invalid(
                    field,
                    format!("'{other}' is not a string"),
                )),
            })
            .collect::<NetResult<Vec<_>>>()
            .map(Some)
    }

    /// Rejects attributes nobody read, as Neutron does.
    pub fn finish(self) -> NetResult<()> {
        if self.map.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&String> = self.map.keys().collect();
        names.sort();
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        Err(NetError::bad(
            "HTTPBadRequest",
            format!("Unrecognized attribute(s) '{}'", names.join(", ")),
        ))
    }
}

/// Reads a list of JSON objects' string members (pools, routes, pairs).
pub fn object_field<'a>(field: &str, item: &'a Value, key: &str) -> NetResult<Option<&'a str>> {
    let obj = item
        .as_object()
        .ok_or_else(|| NetError::invalid(field, format!("'{item}' is not a dictionary")))?;
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(NetError::invalid(
            field,
            format!("'{v}' is not a valid {key}"),
        )),
    }
}
