//! The compute API's records as stored, and their API views per microversion.

pub mod action;
pub mod aggregate;
pub mod group;
pub mod host;
pub mod host_request;
pub mod migration;
pub mod server;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A flavor: the size of a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flavor {
    /// The flavor id (any string; Nova makes a UUID when none is given).
    pub id: String,
    /// Unique among flavors.
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub ram: u64,
    /// Root disk in GiB (0: the image's size).
    pub disk: u64,
    /// Ephemeral disk in GiB (`OS-FLV-EXT-DATA:ephemeral`).
    pub ephemeral: u64,
    /// Swap in MiB.
    pub swap: u64,
    /// Nova's `rxtx_factor` (kept and shown; it shapes nothing).
    pub rxtx_factor: f64,
    /// Public flavors are seen by all; private ones by admins and the
    /// projects in their access list.
    pub is_public: bool,
    /// Free text (2.55).
    pub description: Option<String>,
    /// Key/value specs for the scheduler and the driver.
    pub extra_specs: BTreeMap<String, String>,
    /// When it was created, for sorting by `created_at`.
    pub created_at: String,
}

/// A key pair: a user's public key that servers get in their metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keypair {
    /// The owner: key pairs are per user, not per project.
    pub user_id: String,
    /// Unique per user.
    pub name: String,
    /// `ssh` or `x509` (2.2).
    pub key_type: String,
    /// The public key as given (OpenSSH format for ssh).
    pub public_key: String,
    /// MD5 of the key, colon-separated hex, as Nova shows it.
    pub fingerprint: String,
    /// When it was created.
    pub created_at: String,
    /// A sequence number, Nova's integer `id` of the key pair.
    pub seq: u64,
}

/// `/flavors/{id}` link pair, as Nova renders `links`.
fn links(base: &str, kind: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/v2.1/{kind}/{id}")},
        {"rel": "bookmark", "href": format!("{base}/{kind}/{id}")},
    ])
}

/// The summary view of `GET /flavors`.
pub fn flavor_summary(f: &Flavor, base: &str, mv: (u32, u32)) -> Value {
    let mut v = json!({"id": f.id, "name": f.name, "links": links(base, "flavors", &f.id)});
    if mv >= (2, 55) {
        v["description"] = json!(f.description);
    }
    v
}

/// The detailed view (show, create, `GET /flavors/detail`).
pub fn flavor_view(f: &Flavor, base: &str, mv: (u32, u32)) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(f.id));
    m.insert("name".into(), json!(f.name));
    m.insert("vcpus".into(), json!(f.vcpus));
    m.insert("ram".into(), json!(f.ram));
    m.insert("disk".into(), json!(f.disk));
    m.insert("OS-FLV-EXT-DATA:ephemeral".into(), json!(f.ephemeral));
    m.insert("OS-FLV-DISABLED:disabled".into(), json!(false));
    // Before 2.75 a flavor without swap shows "" (Nova's old quirk).
    let swap = if f.swap == 0 && mv < (2, 75) {
        json!("")
    } else {
        json!(f.swap)
    };
    m.insert("swap".into(), swap);
    m.insert("rxtx_factor".into(), json!(f.rxtx_factor));
    m.insert("os-flavor-access:is_public".into(), json!(f.is_public));
    m.insert("links".into(), links(base, "flavors", &f.id));
    if mv >= (2, 55) {
        m.insert("description".into(), json!(f.description));
    }
    if mv >= (2, 61) {
        m.insert("extra_specs".into(), json!(f.extra_specs));
    }
    Value::Object(m)
}

/// A key pair as listed (`GET /os-keypairs`).
pub fn keypair_summary(k: &Keypair, mv: (u32, u32)) -> Value {
    let mut v = json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint});
    if mv >= (2, 2) {
        v["type"] = json!(k.key_type);
    }
    v
}

/// A key pair as shown (`GET /os-keypairs/{name}`).
pub fn keypair_view(k: &Keypair, mv: (u32, u32)) -> Value {
    let mut v = keypair_summary(k, mv);
    v["user_id"] = json!(k.user_id);
    v["id"] = json!(k.seq);
    v["created_at"] = json!(k.created_at);
    v["updated_at"] = Value::Null;
    v["deleted"] = json!(false);
    v["deleted_at"] = Value::Null;
    v
}
