//! `POST /servers` read as Nova's schema reads it, per microversion.

use super::record::NicRequest;
use crate::compute::body::{self, invalid, only, required, str_field};
use crate::compute::error::{ComputeError, ComputeResult};
use base64::Engine;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A parsed create request.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateServer {
    /// Display name.
    pub name: String,
    /// Image id (a link's last segment is taken, as Nova does).
    pub image_ref: String,
    /// Flavor id (likewise).
    pub flavor_ref: String,
    /// Explicit networks.
    pub nics: Vec<NicRequest>,
    /// `"auto"`, or nothing given before 2.37.
    pub auto_network: bool,
    /// No `networks` at all (before 2.37): like `auto`, except that with no
    /// network to pick the server boots without one, as Nova's does.
    pub networks_omitted: bool,
    /// Security group names (default: `default`).
    pub security_groups: Vec<String>,
    /// Key pair name.
    pub key_name: Option<String>,
    /// Base64 user data.
    pub user_data: Option<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Availability zone.
    pub availability_zone: Option<String>,
    /// How many at least / at most.
    pub min_count: u32,
    /// At most.
    pub max_count: u32,
    /// `os:scheduler_hints.group`.
    pub group: Option<String>,
    /// 2.19.
    pub description: Option<String>,
    /// 2.52.
    pub tags: Vec<String>,
}

/// The keys of `server` Nova's schema knows at 2.79 that weft honours.
/// Others it knows but weft does not do (block devices, config drive,
/// personality files, trusted certs) are refused by name, never ignored.
const KNOWN: &[&str] = &[
    "name",
    "imageRef",
    "flavorRef",
    "networks",
    "security_groups",
    "key_name",
    "user_data",
    "metadata",
    "availability_zone",
    "min_count",
    "max_count",
    "description",
    "tags",
    "adminPass",
    "OS-DCF:diskConfig",
    "return_reservation_id",
    "block_device_mapping_v2",
    "config_drive",
];

/// `block_device_mapping_v2` is accepted only where it restates booting
/// from the image on a local disk (what python-openstackclient sends with
/// `--image`): `source_type: image`, `destination_type: local`, boot index
/// 0. Volumes, blank and swap disks are refused: weft has no block storage.
fn check_bdms(v: &Value, image: Option<&str>) -> ComputeResult<Option<String>> {
    let Value::Array(items) = v else {
        return Err(invalid(
            "block_device_mapping_v2",
            v,
            "is not of type 'array'",
        ));
    };
    let mut boot_image = None;
    for b in items {
        let src = b.get("source_type").and_then(Value::as_str);
        let dst = b
            .get("destination_type")
            .and_then(Value::as_str)
            .unwrap_or("local");
        let idx = b.get("boot_index").map(|i| {
            i.as_i64()
                .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
        });
        let uuid = b.get("uuid").and_then(Value::as_str);
        match (src, dst, idx) {
            (Some("image"), "local", Some(Some(0))) if image.is_none() || image == uuid => {
                boot_image = uuid.map(str::to_string);
            }
            _ => {
                return Err(ComputeError::BadRequest(format!(
                    "Block device mapping {b} is not supported by this cloud: servers boot \
                     from their image on a local disk, there are no volumes"
                )))
            }
        }
    }
    Ok(boot_image)
}

const NOT_DONE: &[&str] = &[
    "block_device_mapping",
    "personality",
    "trusted_image_certificates",
    "host",
    "hypervisor_hostname",
    "accessIPv4",
    "accessIPv6",
];

/// The last path segment of an id or a link (`http://.../flavors/42`).
fn ref_id(v: &str) -> String {
    v.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(v)
        .to_string()
}

fn count(m: &Map<String, Value>, key: &str) -> ComputeResult<Option<u32>> {
    Ok(body::int_field(m, key, 1, 1 << 20)?.map(|n| n as u32))
}

fn nics(v: &Value, mv: (u32, u32)) -> ComputeResult<(Vec<NicRequest>, bool)> {
    match v {
        Value::String(s) if mv >= (2, 37) && s == "auto" => Ok((vec![], true)),
        Value::String(s) if mv >= (2, 37) && s == "none" => Ok((vec![], false)),
        Value::Array(items) => {
            let mut out = Vec::new();
            for it in items {
                let m = it
                    .as_object()
                    .ok_or_else(|| invalid("networks", it, "is not of type 'object'"))?;
                only(m, &["uuid", "port", "fixed_ip", "tag"])?;
                let nic = NicRequest {
                    network: str_field(m, "uuid", 255)?,
                    port: str_field(m, "port", 255)?.filter(|p| !p.is_empty()),
                    fixed_ip: str_field(m, "fixed_ip", 64)?,
                };
                if let Some(ip) = &nic.fixed_ip {
                    if ip.parse::<std::net::IpAddr>().is_err() {
                        return Err(invalid(
                            "fixed_ip",
                            &Value::from(ip.as_str()),
                            "is not a 'ip-address'",
                        ));
                    }
                }
                if nic.network.is_none() && nic.port.is_none() {
                    return Err(ComputeError::BadRequest(
                        "Bad networks format: network uuid is not in proper format".into(),
                    ));
                }
                out.push(nic);
            }
            if mv >= (2, 37) && out.is_empty() {
                return Err(invalid("networks", v, "is too short"));
            }
            Ok((out, false))
        }
        _ => Err(invalid(
            "networks",
            v,
            "is not valid under any of the given schemas",
        )),
    }
}

fn security_groups(m: &Map<String, Value>) -> ComputeResult<Vec<String>> {
    Ok(match m.get("security_groups") {
        None => vec!["default".to_string()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|g| match g.get("name").and_then(Value::as_str) {
                Some(n) if !n.is_empty() => Ok(n.to_string()),
                _ => Err(invalid("security_groups", g, "has no 'name'")),
            })
            .collect::<ComputeResult<Vec<_>>>()?,
        Some(v) => return Err(invalid("security_groups", v, "is not of type 'array'")),
    })
}

fn metadata(m: &Map<String, Value>) -> ComputeResult<BTreeMap<String, String>> {
    match m.get("metadata") {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(md)) => md
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) if !k.is_empty() && k.len() <= 255 && s.len() <= 255 => {
                    Ok((k.clone(), s.clone()))
                }
                _ => Err(invalid(
                    "metadata",
                    v,
                    "is not a string of at most 255 characters",
                )),
            })
            .collect(),
        Some(v) => Err(invalid("metadata", v, "is not of type 'object'")),
    }
}

/// `os:scheduler_hints`: `group` (a server group's uuid) is honoured;
/// any other hint is refused rather than silently ignored.
fn group_hint(top: &Map<String, Value>) -> ComputeResult<Option<String>> {
    let hints = top
        .get("os:scheduler_hints")
        .or_else(|| top.get("OS-SCH-HNT:scheduler_hints"));
    let h = match hints {
        None => return Ok(None),
        Some(Value::Object(h)) => h,
        Some(v) => return Err(invalid("os:scheduler_hints", v, "is not of type 'object'")),
    };
    if let Some(k) = h.keys().find(|k| k.as_str() != "group") {
        return Err(ComputeError::BadRequest(format!(
            "scheduler hint '{k}' is not supported by this cloud: only 'group' is"
        )));
    }
    match h.get("group") {
        None => Ok(None),
        Some(Value::String(g)) if uuid::Uuid::parse_str(g).is_ok() => Ok(Some(g.clone())),
        Some(v) => Err(invalid("group", v, "is not a 'uuid'")),
    }
}

impl CreateServer {
    /// Reads `{"server": {...}, "os:scheduler_hints": {...}}`.
    pub fn parse(b: &[u8], mv: (u32, u32)) -> ComputeResult<CreateServer> {
        let top = body::object(b)?;
        only(
            &top,
            &["server", "os:scheduler_hints", "OS-SCH-HNT:scheduler_hints"],
        )?;
        let m = body::wrapped(&top, "server")?;
        if let Some(k) = m.keys().find(|k| NOT_DONE.contains(&k.as_str())) {
            return Err(ComputeError::BadRequest(format!(
                "'{k}' is not supported by this cloud: servers boot from their image, \
                 get metadata from 169.254.169.254 and one address per port"
            )));
        }
        only(m, KNOWN)?;
        match m.get("config_drive") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::String(s)) if s.is_empty() || s.eq_ignore_ascii_case("false") => {}
            Some(v) => {
                return Err(ComputeError::BadRequest(format!(
                    "config_drive {v} is not supported by this cloud: the metadata service \
                     at 169.254.169.254 serves the same data"
                )))
            }
        }
        let given_image = str_field(m, "imageRef", 2048)?.filter(|s| !s.is_empty());
        let bdm_image = match m.get("block_device_mapping_v2") {
            Some(v) => check_bdms(v, given_image.as_deref())?,
            None => None,
        };
        let name = required(str_field(m, "name", 255)?, "name")?;
        if name.trim().is_empty() {
            return Err(invalid(
                "name",
                &Value::from(name.as_str()),
                "does not match '^(?! )...'",
            ));
        }
        let image_ref = given_image
            .or(bdm_image)
            .map(|s| ref_id(&s))
            .ok_or_else(|| {
                ComputeError::BadRequest(
                    "Missing imageRef attribute: weft servers boot from an image".into(),
                )
            })?;
        let flavor_ref = ref_id(&required(str_field(m, "flavorRef", 2048)?, "flavorRef")?);
        let networks_omitted = !m.contains_key("networks");
        let (nics, auto_network) = match m.get("networks") {
            Some(v) => nics(v, mv)?,
            None if mv >= (2, 37) => {
                return Err(ComputeError::BadRequest(
                    "Invalid input for field/attribute networks. Value: None. 'networks' is a required property".into(),
                ))
            }
            None => (vec![], true),
        };
        let security_groups = security_groups(m)?;
        let user_data = str_field(m, "user_data", 65535)?;
        if let Some(u) = &user_data {
            base64::engine::general_purpose::STANDARD
                .decode(u.trim())
                .map_err(|_| {
                    ComputeError::BadRequest("User data needs to be valid base 64.".into())
                })?;
        }
        let metadata = metadata(m)?;
        let min_count = count(m, "min_count")?.unwrap_or(1);
        let max_count = count(m, "max_count")?.unwrap_or(min_count);
        if min_count > max_count {
            return Err(ComputeError::BadRequest(
                "min_count must be <= max_count".into(),
            ));
        }
        let group = group_hint(&top)?;
        let description = if mv >= (2, 19) {
            str_field(m, "description", 255)?
        } else if m.contains_key("description") {
            return Err(only(m, &[]).unwrap_err());
        } else {
            None
        };
        let tags = match m.get("tags") {
            Some(Value::Array(a)) if mv >= (2, 52) => a
                .iter()
                .map(|t| match t.as_str() {
                    Some(s) if !s.is_empty() && s.len() <= 60 && !s.contains(['/', ',']) => {
                        Ok(s.to_string())
                    }
                    _ => Err(invalid("tags", t, "is not a valid tag")),
                })
                .collect::<ComputeResult<_>>()?,
            Some(v) => {
                return Err(invalid(
                    "tags",
                    v,
                    "is not allowed at this microversion or not an array",
                ))
            }
            None => vec![],
        };
        if tags.len() > super::tags::MAX_TAGS {
            return Err(invalid("tags", &m["tags"], "is too long (50 tags at most)"));
        }
        Ok(CreateServer {
            name,
            image_ref,
            flavor_ref,
            nics,
            auto_network,
            networks_omitted,
            security_groups,
            key_name: str_field(m, "key_name", 255)?,
            user_data,
            metadata,
            availability_zone: str_field(m, "availability_zone", 255)?.filter(|z| !z.is_empty()),
            min_count,
            max_count,
            group,
            description,
            tags,
        })
    }
}
