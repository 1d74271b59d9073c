//! `/v2.1/os-services`, `/v2.1/os-hypervisors`, `/v2.1/os-availability-zone`:
//! the compute hosts as registered by their agents, up or down by their
//! heartbeats.

use super::{Caller, Mv, S};
use crate::compute::aggregates::zone_of;
use crate::compute::build::host::ComputeHost;
use crate::compute::error::ComputeResult;
use crate::compute::now_string;
use crate::compute::os_services::BINARY;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub(super) fn admin(
    c: &crate::compute::Compute,
    caller: &Caller,
    action: &str,
) -> ComputeResult<()> {
    let ctx = caller.ctx(c)?;
    c.read_env(|_, env| env.authz.check(&ctx, action, &json!({})))
}

fn state(h: &ComputeHost, now: &str) -> &'static str {
    if h.is_up(now) {
        "up"
    } else {
        "down"
    }
}

/// Before 2.53 ids are integers; from 2.53 uuids (here derived from the
/// provider, which is one per host).
fn id(h: &ComputeHost, mv: (u32, u32)) -> Value {
    if mv >= (2, 53) {
        json!(h.provider)
    } else {
        json!(h.seq)
    }
}

/// A host as os-services shows it (the list, and 2.53's update answer).
pub(crate) fn service(
    st: &crate::compute::state::State,
    h: &ComputeHost,
    mv: (u32, u32),
    now: &str,
) -> Value {
    let mut v = json!({
        "id": id(h, mv),
        "binary": BINARY,
        "host": h.name,
        "zone": zone_of(st, h),
        "status": if h.enabled { "enabled" } else { "disabled" },
        "state": state(h, now),
        "updated_at": h.heartbeat,
        "disabled_reason": h.disabled_reason,
    });
    if mv >= (2, 11) {
        v["forced_down"] = json!(h.forced_down);
    }
    v
}

/// `GET /os-services` (admin), filtered by `host` and `binary` as Nova's
/// is: `openstack compute service set HOST nova-compute` finds its one
/// service this way.
pub async fn services_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Query(q): Query<BTreeMap<String, String>>,
) -> ComputeResult<Response> {
    admin(&c, &caller, "os_compute_api:os-services:list")?;
    let now = now_string();
    let st = c.snapshot();
    let list: Vec<Value> = st
        .hosts
        .values()
        .filter(|h| q.get("host").is_none_or(|want| *want == h.name))
        .filter(|_| q.get("binary").is_none_or(|want| want == BINARY))
        .map(|h| service(&st, h, mv, &now))
        .collect();
    Ok(Json(json!({ "services": list })).into_response())
}

pub(super) fn hypervisor(
    h: &ComputeHost,
    st: &crate::compute::state::State,
    mv: (u32, u32),
    now: &str,
    detail: bool,
) -> Value {
    let mut v = json!({
        "id": id(h, mv),
        "hypervisor_hostname": h.name,
        "state": state(h, now),
        "status": if h.enabled { "enabled" } else { "disabled" },
    });
    if detail {
        let on: Vec<_> = st
            .servers
            .values()
            .filter(|s| s.host.as_deref() == Some(h.name.as_str()))
            .collect();
        let vcpus_used: u64 = on.iter().map(|s| u64::from(s.flavor.vcpus)).sum();
        let ram_used: u64 = on.iter().map(|s| s.flavor.ram).sum();
        let disk_used: u64 = on.iter().map(|s| s.flavor.disk + s.flavor.ephemeral).sum();
        v["hypervisor_type"] = json!(h.hypervisor_type);
        v["hypervisor_version"] = json!(1);
        v["host_ip"] = json!(h.host_ip);
        v["service"] =
            json!({"host": h.name, "id": id(h, mv), "disabled_reason": h.disabled_reason});
        if mv < (2, 88) {
            v["vcpus"] = json!(h.vcpus);
            v["memory_mb"] = json!(h.memory_mb);
            v["local_gb"] = json!(h.disk_gb);
            v["vcpus_used"] = json!(vcpus_used);
            v["memory_mb_used"] = json!(ram_used);
            v["local_gb_used"] = json!(disk_used);
            v["free_ram_mb"] = json!(h.memory_mb as i64 - ram_used as i64);
            v["free_disk_gb"] = json!(h.disk_gb as i64 - disk_used as i64);
            v["running_vms"] = json!(on.len());
            v["current_workload"] = json!(0);
            v["disk_available_least"] = json!(h.disk_gb as i64 - disk_used as i64);
            // A JSON object from 2.28, its text before.
            v["cpu_info"] = if mv >= (2, 28) {
                json!({})
            } else {
                json!("{}")
            };
        }
    }
    v
}

async fn hypervisors(
    c: S,
    caller: Caller,
    mv: Mv,
    q: BTreeMap<String, String>,
    detail: bool,
) -> ComputeResult<Response> {
    let (State(c), Mv(mv)) = (c, mv);
    admin(&c, &caller, "os_compute_api:os-hypervisors:list")?;
    let now = now_string();
    let st = c.snapshot();
    // 2.53: `hypervisor_hostname_pattern` (a substring, as Nova's LIKE;
    // none matching is a 404) and `with_servers`.
    let pattern = q
        .get("hypervisor_hostname_pattern")
        .filter(|_| mv >= (2, 53));
    let with_servers = mv >= (2, 53)
        && q.get("with_servers").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        });
    let list: Vec<Value> = st
        .hosts
        .values()
        .filter(|h| pattern.is_none_or(|p| h.name.contains(p.as_str())))
        .map(|h| {
            let mut v = hypervisor(h, &st, mv, &now, detail);
            if with_servers {
                v["servers"] = st
                    .servers
                    .values()
                    .filter(|s| s.host.as_deref() == Some(h.name.as_str()))
                    .map(|s| json!({"name": s.instance_name, "uuid": s.id}))
                    .collect();
            }
            v
        })
        .collect();
    if let (Some(p), true) = (pattern, list.is_empty()) {
        return Err(crate::compute::error::ComputeError::NotFound(format!(
            "No hypervisor matching '{p}' could be found."
        )));
    }
    Ok(Json(json!({ "hypervisors": list })).into_response())
}

/// `GET /os-hypervisors` (admin).
pub async fn hypervisors_h(
    c: S,
    caller: Caller,
    mv: Mv,
    Query(q): Query<BTreeMap<String, String>>,
) -> ComputeResult<Response> {
    hypervisors(c, caller, mv, q, false).await
}

/// `GET /os-hypervisors/detail` (admin).
pub async fn hypervisors_detail_h(
    c: S,
    caller: Caller,
    mv: Mv,
    Query(q): Query<BTreeMap<String, String>>,
) -> ComputeResult<Response> {
    hypervisors(c, caller, mv, q, true).await
}

/// `GET /os-availability-zone`: zones with at least one enabled host, a
/// host's zone being its aggregates' (os-aggregates) or the one its agent
/// registered with.
pub async fn zones_h(State(c): S, caller: Caller) -> ComputeResult<Response> {
    caller.ctx(&c)?;
    let now = now_string();
    let st = c.snapshot();
    let mut zones: BTreeMap<String, bool> = BTreeMap::new();
    // The zones of the enabled hosts (what a create may ask for).
    for h in st.hosts.values().filter(|h| h.enabled) {
        *zones.entry(zone_of(&st, h)).or_default() |= h.is_up(&now);
    }
    let list: Vec<Value> = zones
        .into_iter()
        .map(|(z, up)| json!({"zoneName": z, "zoneState": {"available": up}, "hosts": null}))
        .collect();
    Ok(Json(json!({ "availabilityZoneInfo": list })).into_response())
}

/// `GET /os-availability-zone/detail` (admin; `openstack availability zone
/// list --long`): every zone with its hosts and their compute service,
/// `active` when enabled, `available` when up.
pub async fn zones_detail_h(State(c): S, caller: Caller) -> ComputeResult<Response> {
    admin(&c, &caller, "os_compute_api:os-availability-zone:detail")?;
    let now = now_string();
    let st = c.snapshot();
    let mut zones: BTreeMap<String, (bool, serde_json::Map<String, Value>)> = BTreeMap::new();
    for h in st.hosts.values() {
        let z = zones.entry(zone_of(&st, h)).or_default();
        z.0 |= h.enabled && h.is_up(&now);
        z.1.insert(
            h.name.clone(),
            json!({ BINARY: {"available": h.is_up(&now), "active": h.enabled,
                             "updated_at": h.heartbeat} }),
        );
    }
    let list: Vec<Value> = zones
        .into_iter()
        .map(|(z, (up, hosts))| json!({"zoneName": z, "zoneState": {"available": up}, "hosts": hosts}))
        .collect();
    Ok(Json(json!({ "availabilityZoneInfo": list })).into_response())
}
