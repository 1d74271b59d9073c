//! Typed request bodies: an image create, a JSON patch, a member. A body
//! that does not parse is a 400 naming what was wrong; nothing downstream
//! reads `serde_json::Value`s field by field.

use super::error::{ImageError, ImageResult};
use super::model::{CORE, READ_ONLY};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The media type of an image update (Glance's JSON-patch dialect).
pub const PATCH_MEDIA_TYPE: &str = "application/openstack-images-v2.1-json-patch";
/// The older dialect Glance still accepts.
pub const PATCH_MEDIA_TYPE_V20: &str = "application/openstack-images-v2.0-json-patch";

fn parse<T: for<'de> Deserialize<'de>>(b: &[u8]) -> ImageResult<T> {
    if b.is_empty() {
        return Err(ImageError::BadRequest("Body expected in request.".into()));
    }
    let de = &mut serde_json::Deserializer::from_slice(b);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ImageError::BadRequest(if path == "." {
            format!("Malformed request body: {}", e.inner())
        } else {
            format!("Invalid value for '{path}': {}", e.inner())
        })
    })
}

/// `POST /v2/images`: core attributes, and free-form properties beside them.
#[allow(missing_docs)] // Glance's attribute names: the Image API v2 reference documents them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CreateReq {
    pub id: Option<String>,
    pub name: Option<String>,
    pub visibility: Option<String>,
    pub protected: Option<bool>,
    pub os_hidden: Option<bool>,
    pub owner: Option<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_disk: Option<u64>,
    pub min_ram: Option<u64>,
    pub tags: Option<Vec<String>>,
    /// Everything else: properties (strings), or read-only attributes (refused).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Refuses what no client may write: read-only and reserved attributes.
pub fn check_writable(attr: &str) -> ImageResult<()> {
    if READ_ONLY.contains(&attr) {
        return Err(ImageError::Forbidden(format!(
            "Attribute '{attr}' is read-only."
        )));
    }
    if attr == "locations" {
        return Err(ImageError::Forbidden(
            "It's not allowed to update locations if locations are invisible.".into(),
        ));
    }
    if attr.starts_with("os_glance") {
        return Err(ImageError::Forbidden(format!(
            "Attribute '{attr}' is reserved."
        )));
    }
    Ok(())
}

/// A property's value: Glance's schema types every property as a string.
pub fn property_value(attr: &str, v: &Value) -> ImageResult<String> {
    match v {
        Value::String(s) if s.len() <= 65535 => Ok(s.clone()),
        Value::String(_) => Err(ImageError::BadRequest(format!(
            "Property '{attr}' is longer than 65535 characters."
        ))),
        other => Err(ImageError::BadRequest(format!(
            "Provided object does not match schema 'image': {other} is not of type 'string' (property '{attr}')"
        ))),
    }
}

impl CreateReq {
    /// Parses and checks the extra keys (read-only refused, properties strings).
    pub fn parse(b: &[u8]) -> ImageResult<(CreateReq, BTreeMap<String, String>)> {
        let req: CreateReq = parse(b)?;
        let mut props = BTreeMap::new();
        for (k, v) in &req.extra {
            check_writable(k)?;
            props.insert(k.clone(), property_value(k, v)?);
        }
        Ok((req, props))
    }
}

/// A JSON-patch operation.
#[allow(missing_docs)] // Glance's attribute names: the Image API v2 reference documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Replace,
    Remove,
}

/// One operation of an update, its path decoded to the attribute it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    /// add, replace or remove.
    pub op: Op,
    /// The attribute (`name`, `tags`, a property).
    pub attr: String,
    /// The new value (add, replace).
    pub value: Option<Value>,
}

impl Patch {
    /// Whether the attribute is a core one (else a free-form property).
    pub fn is_core(&self) -> bool {
        CORE.contains(&self.attr.as_str())
    }
}

/// One operation as sent: `{"op": "replace", "path": "/name", "value": ..}`
/// (v2.1, RFC 6902 style) or `{"replace": "/name", "value": ..}` (the v2.0
/// media type, JSON-patch draft 4, which tempest still sends).
#[derive(Deserialize)]
struct RawOp {
    op: Option<String>,
    path: Option<String>,
    value: Option<Value>,
    add: Option<String>,
    replace: Option<String>,
    remove: Option<String>,
}

impl RawOp {
    /// (op, path) in either form; `None` unless exactly one form names one op.
    fn op_path(&self) -> Option<(String, Option<String>)> {
        let draft4: Vec<(&str, &String)> = [
            ("add", &self.add),
            ("replace", &self.replace),
            ("remove", &self.remove),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        match (&self.op, draft4.as_slice()) {
            (Some(op), []) => Some((op.clone(), self.path.clone())),
            (None, [(op, path)]) if self.path.is_none() => {
                Some((op.to_string(), Some((*path).clone())))
            }
            _ => None,
        }
    }
}

/// One JSON pointer segment: `~1` is `/`, `~0` is `~`.
fn unescape(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

/// Parses `[{"op": "replace", "path": "/name", "value": "x"}, ...]`.
pub fn parse_patch(b: &[u8]) -> ImageResult<Vec<Patch>> {
    let raw: Vec<RawOp> = parse(b)?;
    raw.into_iter()
        .map(|r| {
            let Some((op, path)) = r.op_path() else {
                return Err(ImageError::BadRequest(
                    "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".".into(),
                ));
            };
            let op = match op.as_str() {
                "add" => Op::Add,
                "replace" => Op::Replace,
                "remove" => Op::Remove,
                o => {
                    return Err(ImageError::BadRequest(format!(
                        "Operation '{o}' is not supported: use 'add', 'remove' or 'replace'."
                    )))
                }
            };
            let path = path.ok_or_else(|| {
                ImageError::BadRequest("Unable to find 'path' in JSON Schema change".into())
            })?;
            let segs: Vec<&str> = path.strip_prefix('/').map(|p| p.split('/').collect()).unwrap_or_default();
            let attr = match segs.as_slice() {
                [one] if !one.is_empty() => unescape(one),
                _ => {
                    return Err(ImageError::BadRequest(format!(
                        "Invalid JSON pointer for this resource: '{path}'"
                    )))
                }
            };
            if op != Op::Remove && r.value.is_none() {
                return Err(ImageError::BadRequest(format!(
                    "Unable to find 'value' in JSON Schema change for '{path}'"
                )));
            }
            Ok(Patch {
                op,
                attr,
                value: r.value,
            })
        })
        .collect()
}

/// `POST /v2/images/{id}/members` (other keys ignored, as Glance does).
#[allow(missing_docs)] // Glance's attribute names: the Image API v2 reference documents them.
#[derive(Debug, Clone, Deserialize)]
pub struct MemberReq {
    pub member: String,
}

/// `PUT /v2/images/{id}/members/{member}`. Other keys are ignored, as
/// Glance does: openstacksdk sends the whole member back (`member`, `status`).
#[allow(missing_docs)] // Glance's attribute names: the Image API v2 reference documents them.
#[derive(Debug, Clone, Deserialize)]
pub struct MemberStatusReq {
    pub status: String,
}

impl MemberReq {
    /// Parses the body.
    pub fn parse(b: &[u8]) -> ImageResult<MemberReq> {
        parse(b)
    }
}

impl MemberStatusReq {
    /// Parses the body.
    pub fn parse(b: &[u8]) -> ImageResult<MemberStatusReq> {
        parse(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_paths_decode_to_one_attribute() {
        let p = parse_patch(
            br#"[{"op":"add","path":"/a~1b","value":"1"},{"op":"remove","path":"/tags"},{"replace":"/name","value":"n"}]"#,
        )
        .unwrap();
        assert_eq!(p[0].attr, "a/b");
        assert_eq!(p[1].op, Op::Remove);
        assert!(p[1].is_core());
        assert_eq!(
            (p[2].op, p[2].attr.as_str()),
            (Op::Replace, "name"),
            "v2.0 form"
        );
        for bad in [
            r#"[{"op":"add","path":"/a/b","value":"1"}]"#,
            r#"[{"op":"move","path":"/a","from":"/b"}]"#,
            r#"[{"op":"add","path":"/a"}]"#,
            r#"{"op":"add"}"#,
            r#"[{"add":"/a","remove":"/b","value":"1"}]"#,
            r#"[{"op":"add","replace":"/a","path":"/a","value":"1"}]"#,
        ] {
            assert!(
                matches!(parse_patch(bad.as_bytes()), Err(ImageError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn create_refuses_read_only_and_non_string_properties() {
        assert!(matches!(
            CreateReq::parse(br#"{"name":"x","status":"active"}"#),
            Err(ImageError::Forbidden(_))
        ));
        assert!(matches!(
            CreateReq::parse(br#"{"name":"x","os_glance_foo":"1"}"#),
            Err(ImageError::Forbidden(_))
        ));
        assert!(matches!(
            CreateReq::parse(br#"{"name":"x","hw":1}"#),
            Err(ImageError::BadRequest(_))
        ));
        assert!(matches!(
            CreateReq::parse(br#"{"min_ram":-1}"#),
            Err(ImageError::BadRequest(_))
        ));
        let (r, props) = CreateReq::parse(br#"{"name":"x","hw_disk_bus":"virtio"}"#).unwrap();
        assert_eq!(r.name.as_deref(), Some("x"));
        assert_eq!(props["hw_disk_bus"], "virtio");
    }
}
