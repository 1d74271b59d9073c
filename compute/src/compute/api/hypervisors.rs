//! `/v2.1/os-hypervisors/{id}` (show, `uptime`), `/os-hypervisors/statistics`
//! and the pre-2.53 `{pattern}/search` and `{pattern}/servers` (admin): what
//! `openstack hypervisor show` and `hypervisor stats show` ask beyond the
//! lists in [`super::hosts`].

use super::hosts::{admin, hypervisor};
use super::{Caller, Mv, S};
use crate::compute::build::host::ComputeHost;
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::now_string;
use crate::compute::state::State as ComputeState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The host whose hypervisor id is `id`: a uuid from 2.53, an integer
/// before (Nova's 400 for a malformed uuid, 404 for an unknown id).
fn by_id<'a>(st: &'a ComputeState, id: &str, mv: (u32, u32)) -> ComputeResult<&'a ComputeHost> {
    let missing = || ComputeError::NotFound(format!("Hypervisor with ID {id} could not be found."));
    if mv >= (2, 53) {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(ComputeError::BadRequest(format!("Invalid uuid {id}")));
        }
        st.hosts
            .values()
            .find(|h| h.provider == id)
            .ok_or_else(missing)
    } else {
        let n: u64 = id.parse().map_err(|_| missing())?;
        st.hosts.values().find(|h| h.seq == n).ok_or_else(missing)
    }
}

fn servers_on(st: &ComputeState, host: &str) -> Value {
    st.servers
        .values()
        .filter(|s| s.host.as_deref() == Some(host))
        .map(|s| json!({"name": s.instance_name, "uuid": s.id}))
        .collect()
}

fn truthy(q: &BTreeMap<String, String>, key: &str) -> bool {
    q.get(key)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// `GET /os-hypervisors/{id}[?with_servers=true]`.
pub async fn show_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> ComputeResult<Response> {
    admin(&c, &caller, "os_compute_api:os-hypervisors:show")?;
    let st = c.snapshot();
    let h = by_id(&st, &id, mv)?;
    let mut v = hypervisor(h, &st, mv, &now_string(), true);
    if mv >= (2, 53) && truthy(&q, "with_servers") {
        v["servers"] = servers_on(&st, &h.name);
    }
    Ok(Json(json!({ "hypervisor": v })).into_response())
}

/// `GET /os-hypervisors/{id}/uptime` (until 2.88, when show carries it):
/// the uptime line of the host this process reads (every weft host's
/// agent runs on the machine it reports).
pub async fn uptime_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    admin(&c, &caller, "os_compute_api:os-hypervisors:uptime")?;
    let st = c.snapshot();
    let h = by_id(&st, &id, mv)?;
    let mut v = hypervisor(h, &st, mv, &now_string(), false);
    v["uptime"] = json!(uptime_line(
        &std::fs::read_to_string("/proc/uptime").unwrap_or_default(),
        &std::fs::read_to_string("/proc/loadavg").unwrap_or_default(),
        &chrono::Utc::now().format("%H:%M:%S").to_string(),
    ));
    Ok(Json(json!({ "hypervisor": v })).into_response())
}

/// The line `uptime(1)` prints (what libvirt's driver reports and clients
/// parse): ` 17:37:14 up 3 days,  2:33,  0 users,  load average: a, b, c`.
fn uptime_line(proc_uptime: &str, proc_loadavg: &str, now: &str) -> String {
    let secs = proc_uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0) as u64;
    let load: Vec<&str> = proc_loadavg.split_whitespace().take(3).collect();
    let load = match load.len() {
        3 => load.join(", "),
        _ => "0.00, 0.00, 0.00".to_string(),
    };
    let (days, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    let up = match days {
        0 => format!("{h:2}:{m:02}"),
        1 => format!("1 day, {h:2}:{m:02}"),
        d => format!("{d} days, {h:2}:{m:02}"),
    };
    format!(" {now} up {up},  0 users,  load average: {load}")
}

/// `GET /os-hypervisors/statistics`: the sums over every host.
pub async fn statistics_h(State(c): S, caller: Caller, Mv(mv): Mv) -> ComputeResult<Response> {
    admin(&c, &caller, "os_compute_api:os-hypervisors:statistics")?;
    let st = c.snapshot();
    let now = now_string();
    let keys = [
        "vcpus",
        "memory_mb",
        "local_gb",
        "vcpus_used",
        "memory_mb_used",
        "local_gb_used",
        "free_ram_mb",
        "free_disk_gb",
        "running_vms",
        "current_workload",
        "disk_available_least",
    ];
    let mut sums: BTreeMap<&str, i64> = keys.iter().map(|k| (*k, 0)).collect();
    for h in st.hosts.values() {
        // The per-host figures as the detail shows them (before 2.88).
        let v = hypervisor(h, &st, mv.min((2, 87)), &now, true);
        for k in keys {
            *sums.get_mut(k).expect("listed") += v[k].as_i64().unwrap_or(0);
        }
    }
    let mut out = json!({ "count": st.hosts.len() });
    for (k, n) in sums {
        out[k] = json!(n);
    }
    Ok(Json(json!({ "hypervisor_statistics": out })).into_response())
}

/// Hosts whose name holds `pattern` (Nova's `LIKE %pattern%`), or 404.
fn matching<'a>(st: &'a ComputeState, pattern: &str) -> ComputeResult<Vec<&'a ComputeHost>> {
    let found: Vec<_> = st
        .hosts
        .values()
        .filter(|h| h.name.contains(pattern))
        .collect();
    match found.is_empty() {
        true => Err(ComputeError::NotFound(format!(
            "No hypervisor matching '{pattern}' could be found."
        ))),
        false => Ok(found),
    }
}

/// From 2.53 the list's `hypervisor_hostname_pattern` replaces these.
fn gone_at_2_53(mv: (u32, u32)) -> ComputeResult<()> {
    match mv >= (2, 53) {
        true => Err(ComputeError::NotFound(
            "The resource could not be found.".into(),
        )),
        false => Ok(()),
    }
}

/// `GET /os-hypervisors/{pattern}/search` (before 2.53).
pub async fn search_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(pattern): Path<String>,
) -> ComputeResult<Response> {
    admin(&c, &caller, "os_compute_api:os-hypervisors:search")?;
    gone_at_2_53(mv)?;
    let st = c.snapshot();
    let now = now_string();
    let list: Vec<Value> = matching(&st, &pattern)?
        .into_iter()
        .map(|h| hypervisor(h, &st, mv, &now, false))
        .collect();
    Ok(Json(json!({ "hypervisors": list })).into_response())
}

/// `GET /os-hypervisors/{pattern}/servers` (before 2.53).
pub async fn servers_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(pattern): Path<String>,
) -> ComputeResult<Response> {
    admin(&c, &caller, "os_compute_api:os-hypervisors:servers")?;
    gone_at_2_53(mv)?;
    let st = c.snapshot();
    let now = now_string();
    let list: Vec<Value> = matching(&st, &pattern)?
        .into_iter()
        .map(|h| {
            let mut v = hypervisor(h, &st, mv, &now, false);
            v["servers"] = servers_on(&st, &h.name);
            v
        })
        .collect();
    Ok(Json(json!({ "hypervisors": list })).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn uptime_reads_as_uptime_1_prints_it() {
        assert_eq!(
            super::uptime_line("270000.5 1.0", "0.33 0.36 0.34 1/99 7", "17:37:14"),
            " 17:37:14 up 3 days,  3:00,  0 users,  load average: 0.33, 0.36, 0.34"
        );
        assert_eq!(
            super::uptime_line("59", "", "01:00:00"),
            " 01:00:00 up  0:00,  0 users,  load average: 0.00, 0.00, 0.00"
        );
    }
}
