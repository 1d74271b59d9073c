//! Quotas (os-quota-sets) and limits (`/limits`): per-project limits with
//! Nova's defaults, an admin's overrides stored per project, and the usage
//! counted from the records themselves (servers, their flavors' vCPUs and
//! RAM, server groups). Server create checks them inside the same store
//! write that adds the servers, so concurrent creates cannot pass a limit.

use super::body::{self, invalid};
use super::error::{ComputeError, ComputeResult};
use super::servers::Quota;
use super::service::{Ctx, Env, Write};
use super::state::{Change, State};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Nova's default quotas, in the order its API lists them.
pub const DEFAULTS: &[(&str, i64)] = &[
    ("instances", 10),
    ("cores", 20),
    ("ram", 51200),
    ("metadata_items", 128),
    ("key_pairs", 100),
    ("server_groups", 10),
    ("server_group_members", 10),
    ("injected_files", 5),
    ("injected_file_content_bytes", 10240),
    ("injected_file_path_bytes", 255),
];

/// The nova-network proxies shown (and settable) before 2.36 only.
const NETWORK: &[(&str, i64)] = &[
    ("fixed_ips", -1),
    ("floating_ips", 10),
    ("security_groups", 10),
    ("security_group_rules", 20),
];

/// The resources a quota set has at `mv` with their defaults: 2.36 drops
/// the network proxies, 2.57 the injected files (personality went away).
pub fn resources(mv: (u32, u32)) -> Vec<(&'static str, i64)> {
    DEFAULTS
        .iter()
        .chain(if mv < (2, 36) { NETWORK } else { &[] })
        .filter(|(k, _)| mv < (2, 57) || !k.starts_with("injected_file"))
        .copied()
        .collect()
}

/// The project's limit for `resource` (-1: unlimited).
pub fn limit(st: &State, project: &str, resource: &str) -> i64 {
    st.quotas
        .get(project)
        .and_then(|q| q.get(resource))
        .copied()
        .or_else(|| {
            DEFAULTS
                .iter()
                .chain(NETWORK)
                .find(|(k, _)| *k == resource)
                .map(|(_, v)| *v)
        })
        .unwrap_or(-1)
}

/// Whether `used + asked` passes `limit` (-1 never does).
pub fn exceeds(limit: i64, used: u64, asked: u64) -> bool {
    limit >= 0 && used + asked > limit as u64
}

/// The limits server create checks, for the project (unlimited as u64::MAX).
pub fn server_quota(st: &State, project: &str) -> Quota {
    let l = |r| u64::try_from(limit(st, project, r)).unwrap_or(u64::MAX);
    Quota {
        instances: l("instances"),
        cores: l("cores"),
        ram: l("ram"),
    }
}

/// Nova's 403 for a server that would carry more metadata items than its
/// project's `metadata_items` quota (at create, rebuild and metadata writes).
pub fn check_metadata(st: &State, project: &str, items: usize) -> ComputeResult<()> {
    let l = limit(st, project, "metadata_items");
    if exceeds(l, 0, items as u64) {
        return Err(ComputeError::Forbidden(format!(
            "Maximum number of metadata items exceeds {l}"
        )));
    }
    Ok(())
}

/// What the project uses of each resource Nova counts.
pub fn in_use(st: &State, project: &str) -> BTreeMap<&'static str, u64> {
    let u = super::servers::usage(st, project);
    let groups = st
        .groups
        .values()
        .filter(|g| g.project_id == project)
        .count() as u64;
    [
        ("instances", u.instances),
        ("cores", u.cores),
        ("ram", u.ram),
        ("server_groups", groups),
    ]
    .into()
}

fn check_show(env: &Env, ctx: &Ctx, rule: &str, project: &str) -> ComputeResult<()> {
    env.authz.check(
        ctx,
        &format!("os_compute_api:os-quota-sets:{rule}"),
        &json!({"project_id": project}),
    )
}

/// `GET /os-quota-sets/{project}` (`detail`: `/detail`, each resource with
/// `in_use` and `reserved`).
pub fn show(
    st: &State,
    env: &Env,
    ctx: &Ctx,
    project: &str,
    mv: (u32, u32),
    detail: bool,
) -> ComputeResult<Value> {
    check_show(env, ctx, if detail { "detail" } else { "show" }, project)?;
    let used = in_use(st, project);
    let mut m = Map::new();
    m.insert("id".into(), json!(project));
    for (k, _) in resources(mv) {
        let l = limit(st, project, k);
        let v = if detail {
            json!({"limit": l, "in_use": used.get(k).copied().unwrap_or(0), "reserved": 0})
        } else {
            json!(l)
        };
        m.insert(k.into(), v);
    }
    Ok(Value::Object(m))
}

/// `GET /os-quota-sets/{project}/defaults`.
pub fn defaults(env: &Env, ctx: &Ctx, project: &str, mv: (u32, u32)) -> ComputeResult<Value> {
    check_show(env, ctx, "defaults", project)?;
    let mut m = Map::new();
    m.insert("id".into(), json!(project));
    for (k, v) in resources(mv) {
        m.insert(k.into(), json!(v));
    }
    Ok(Value::Object(m))
}

/// A checked `PUT /os-quota-sets/{project}` body: the new limits and `force`.
pub fn parse_update(b: &[u8], mv: (u32, u32)) -> ComputeResult<(BTreeMap<String, i64>, bool)> {
    let outer = body::object(b)?;
    body::only(&outer, &["quota_set"])?;
    let m = body::wrapped(&outer, "quota_set")?;
    let known = resources(mv);
    let mut out = BTreeMap::new();
    let mut force = false;
    for (k, v) in m {
        if k == "force" {
            force = body::bool_field(m, "force")?.unwrap_or(false);
            continue;
        }
        if !known.iter().any(|(r, _)| r == k) {
            return Err(ComputeError::BadRequest(format!(
                "Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if (-1..=i64::from(i32::MAX)).contains(&n) => {
                out.insert(k.clone(), n);
            }
            Some(_) => return Err(invalid(k, v, "is less than the minimum of -1")),
            None => return Err(invalid(k, v, "is not of type 'integer', 'string'")),
        }
    }
    Ok((out, force))
}

/// `PUT /os-quota-sets/{project}` (admin): below what is in use only with
/// `force`, as Nova.
pub fn update(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    project: &str,
    set: &BTreeMap<String, i64>,
    force: bool,
    mv: (u32, u32),
) -> Write<Value> {
    check_show(env, ctx, "update", project)?;
    let used = in_use(st, project);
    if !force {
        for (k, l) in set {
            let u = used.get(k.as_str()).copied().unwrap_or(0);
            if *l >= 0 && (*l as u64) < u {
                return Err(ComputeError::BadRequest(format!(
                    "Quota limit {l} for {k} must be greater than or equal to already used and reserved {u}."
                )));
            }
        }
    }
    let mut q = st.quotas.get(project).cloned().unwrap_or_default();
    q.extend(set.iter().map(|(k, v)| (k.clone(), *v)));
    let mut view = Map::new();
    for (k, d) in resources(mv) {
        view.insert(k.into(), json!(q.get(k).copied().unwrap_or(d)));
    }
    Ok((
        Value::Object(view),
        vec![Change::Quota(project.to_string(), q)],
    ))
}

/// `DELETE /os-quota-sets/{project}` (admin): back to the defaults.
pub fn revert(st: &State, env: &mut Env, ctx: &Ctx, project: &str) -> Write<()> {
    check_show(env, ctx, "delete", project)?;
    let changes = if st.quotas.contains_key(project) {
        vec![Change::DeleteQuota(project.to_string())]
    } else {
        vec![]
    };
    Ok(((), changes))
}

/// `GET /limits[?tenant_id=]`: the absolute limits and usage (rate limits
/// are long gone from Nova: always empty).
pub fn limits(
    st: &State,
    env: &Env,
    ctx: &Ctx,
    tenant: Option<&str>,
    mv: (u32, u32),
) -> ComputeResult<Value> {
    let own = ctx.project_id.clone().unwrap_or_default();
    env.authz
        .check(ctx, "os_compute_api:limits", &json!({"project_id": own}))?;
    // Another project's limits are an admin's to see; Nova quietly shows
    // the caller's own to anyone else.
    let project = match tenant {
        Some(t)
            if t != own
                && env
                    .authz
                    .check(
                        ctx,
                        "os_compute_api:limits:other_project",
                        &json!({"project_id": t}),
                    )
                    .is_ok() =>
        {
            t.to_string()
        }
        _ => own,
    };
    let l = |r: &str| json!(limit(st, &project, r));
    let used = in_use(st, &project);
    let mut a = json!({
        "maxServerMeta": l("metadata_items"),
        "maxTotalKeypairs": l("key_pairs"),
        "maxImageMeta": l("metadata_items"),
        "maxTotalInstances": l("instances"),
        "maxTotalCores": l("cores"),
        "maxTotalRAMSize": l("ram"),
        "maxServerGroups": l("server_groups"),
        "maxServerGroupMembers": l("server_group_members"),
        "totalInstancesUsed": used["instances"],
        "totalCoresUsed": used["cores"],
        "totalRAMUsed": used["ram"],
        "totalServerGroupsUsed": used["server_groups"],
    });
    if mv < (2, 57) {
        a["maxPersonality"] = l("injected_files");
        a["maxPersonalitySize"] = l("injected_file_content_bytes");
    }
    if mv < (2, 36) {
        a["maxSecurityGroups"] = l("security_groups");
        a["maxSecurityGroupRules"] = l("security_group_rules");
        a["maxTotalFloatingIps"] = l("floating_ips");
        a["totalSecurityGroupsUsed"] = json!(0);
        a["totalFloatingIpsUsed"] = json!(0);
    }
    Ok(json!({"limits": {"rate": [], "absolute": a}}))
}
