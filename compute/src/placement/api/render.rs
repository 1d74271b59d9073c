//! Placement's JSON shapes, per microversion.

use crate::placement::microversion::Version;
use crate::placement::model::{Inventory, Provider};
use serde_json::{json, Map, Value};

/// The path of provider `uuid` under `mount` (Placement's links are
/// server-relative, see [`super::Base`]).
pub fn provider_url(mount: &str, uuid: &str) -> String {
    format!("{mount}/resource_providers/{uuid}")
}

/// A provider as `GET /resource_providers/{uuid}` shows it at `v`, its
/// links under `mount`.
pub fn provider(mount: &str, p: &Provider, v: Version) -> Value {
    let base = provider_url(mount, &p.uuid);
    let mut links = vec![
        json!({"rel": "self", "href": base}),
        json!({"rel": "inventories", "href": format!("{base}/inventories")}),
        json!({"rel": "usages", "href": format!("{base}/usages")}),
    ];
    if v.at_least(1) {
        links.push(json!({"rel": "aggregates", "href": format!("{base}/aggregates")}));
    }
    if v.at_least(6) {
        links.push(json!({"rel": "traits", "href": format!("{base}/traits")}));
    }
    if v.at_least(11) {
        links.push(json!({"rel": "allocations", "href": format!("{base}/allocations")}));
    }
    let mut o = json!({
        "uuid": p.uuid,
        "name": p.name,
        "generation": p.generation,
        "links": links,
    });
    if v.at_least(14) {
        o["parent_provider_uuid"] = json!(p.parent);
        o["root_provider_uuid"] = json!(p.root);
    }
    o
}

/// One inventory record.
pub fn inventory(inv: &Inventory) -> Value {
    json!({
        "total": inv.total,
        "reserved": inv.reserved,
        "min_unit": inv.min_unit,
        "max_unit": inv.max_unit,
        "step_size": inv.step_size,
        "allocation_ratio": inv.allocation_ratio,
    })
}

/// `{"inventories": {...}, "resource_provider_generation": N}`.
pub fn inventories(p: &Provider) -> Value {
    let inv: Map<String, Value> = p
        .inventories
        .iter()
        .map(|(rc, i)| (rc.clone(), inventory(i)))
        .collect();
    json!({"inventories": inv, "resource_provider_generation": p.generation})
}

/// One inventory with the provider generation.
pub fn one_inventory(p: &Provider, rc: &str) -> Option<Value> {
    let mut v = inventory(p.inventories.get(rc)?);
    v["resource_provider_generation"] = json!(p.generation);
    Some(v)
}

/// `{"traits": [...], "resource_provider_generation": N}`.
pub fn provider_traits(p: &Provider) -> Value {
    json!({"traits": p.traits, "resource_provider_generation": p.generation})
}

/// `{"aggregates": [...]}` (+ the generation from 1.19).
pub fn provider_aggregates(p: &Provider, v: Version) -> Value {
    let mut o = json!({"aggregates": p.aggregates});
    if v.at_least(19) {
        o["resource_provider_generation"] = json!(p.generation);
    }
    o
}

/// A resource class with its link under `mount`.
pub fn class(mount: &str, name: &str) -> Value {
    json!({"name": name, "links": [{"rel": "self", "href": format!("{mount}/resource_classes/{name}")}]})
}
