//! Server groups (os-server-groups): create, list, show, delete, their
//! views per microversion, and what the scheduler and server create need
//! of them (the members' hosts, the member quota). Pure functions over the
//! compute [`State`].

use super::body::{self, invalid, only, required};
use super::error::{ComputeError, ComputeResult};
use super::model::group::{ServerGroup, POLICIES};
use super::quotas;
use super::service::{Ctx, Env, Write};
use super::state::{Change, State};
use serde_json::{json, Map, Value};

/// A checked `POST /os-server-groups` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateGroup {
    /// Display name.
    pub name: String,
    /// One of [`POLICIES`].
    pub policy: String,
    /// `rules.max_server_per_host` (2.64+, anti-affinity only).
    pub max_server_per_host: Option<u32>,
}

fn policy_value(v: &Value, field: &str) -> ComputeResult<String> {
    match v.as_str() {
        Some(p) if POLICIES.contains(&p) => Ok(p.to_string()),
        _ => Err(invalid(
            field,
            v,
            "is not one of ['anti-affinity', 'affinity', 'soft-anti-affinity', 'soft-affinity']",
        )),
    }
}

/// Before 2.64 `policies` is a list of exactly one policy.
fn old_policies(m: &Map<String, Value>) -> ComputeResult<String> {
    let v = required(m.get("policies"), "policies")?;
    match v.as_array().map(Vec::as_slice) {
        Some([one]) => policy_value(one, "policies"),
        Some([]) => Err(invalid("policies", v, "is too short")),
        Some(_) => Err(invalid("policies", v, "is too long")),
        None => Err(invalid("policies", v, "is not of type 'array'")),
    }
}

/// From 2.64: `policy` and optional `rules`, whose only rule is
/// `max_server_per_host`, for anti-affinity only.
fn new_policy(m: &Map<String, Value>) -> ComputeResult<(String, Option<u32>)> {
    let policy = policy_value(required(m.get("policy"), "policy")?, "policy")?;
    let rules = match m.get("rules") {
        None => return Ok((policy, None)),
        Some(Value::Object(r)) => r,
        Some(v) => return Err(invalid("rules", v, "is not of type 'object'")),
    };
    only(rules, &["max_server_per_host"])?;
    let max = body::int_field(rules, "max_server_per_host", 1, i32::MAX as u64)?;
    if max.is_some() && policy != "anti-affinity" {
        return Err(ComputeError::BadRequest(format!(
            "Invalid input for field/attribute rules. Only anti-affinity policy supports \
             rules, not {policy}."
        )));
    }
    Ok((policy, max.map(|n| n as u32)))
}

impl CreateGroup {
    /// Checks `{"server_group": {...}}` as Nova's schema for `mv` does.
    pub fn parse(b: &[u8], mv: (u32, u32)) -> ComputeResult<CreateGroup> {
        let outer = body::object(b)?;
        only(&outer, &["server_group"])?;
        let m = body::wrapped(&outer, "server_group")?;
        if mv >= (2, 64) {
            only(m, &["name", "policy", "rules"])?;
        } else {
            only(m, &["name", "policies"])?;
        }
        let name = required(body::str_field(m, "name", 255)?, "name")?;
        if name.trim().is_empty() {
            return Err(invalid("name", &Value::from(name.as_str()), "is too short"));
        }
        let (policy, max_server_per_host) = if mv >= (2, 64) {
            new_policy(m)?
        } else {
            (old_policies(m)?, None)
        };
        Ok(CreateGroup {
            name,
            policy,
            max_server_per_host,
        })
    }
}

/// Nova's 404 for a group.
pub fn not_found(id: &str) -> ComputeError {
    ComputeError::NotFound(format!("Instance group {id} could not be found."))
}

/// A group `ctx` may see: its project's, or any for an admin.
pub fn get<'a>(st: &'a State, ctx: &Ctx, id: &str) -> ComputeResult<&'a ServerGroup> {
    st.groups
        .get(id)
        .filter(|g| ctx.is_admin || ctx.project_id.as_deref() == Some(g.project_id.as_str()))
        .ok_or_else(|| not_found(id))
}

/// The ids of the group's members: the servers that name it.
pub fn members<'a>(st: &'a State, id: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    st.servers
        .values()
        .filter(move |s| s.server_group.as_deref() == Some(id))
        .map(|s| s.id.as_str())
}

/// The group as Nova shows it at `mv`.
pub fn view(st: &State, g: &ServerGroup, mv: (u32, u32)) -> Value {
    let mut v = json!({
        "id": g.id,
        "name": g.name,
        "members": members(st, &g.id).collect::<Vec<_>>(),
    });
    if mv >= (2, 64) {
        v["policy"] = json!(g.policy);
        v["rules"] = match g.max_server_per_host {
            Some(n) => json!({"max_server_per_host": n}),
            None => json!({}),
        };
    } else {
        v["policies"] = json!([g.policy]);
        v["metadata"] = json!({});
    }
    if mv >= (2, 13) {
        v["project_id"] = json!(g.project_id);
        v["user_id"] = json!(g.user_id);
    }
    v
}

/// `POST /os-server-groups`, within the project's `server_groups` quota.
pub fn create(st: &State, env: &mut Env, ctx: &Ctx, req: &CreateGroup) -> Write<ServerGroup> {
    let project = ctx
        .project_id
        .clone()
        .ok_or_else(|| ComputeError::BadRequest("A project-scoped token is needed.".into()))?;
    env.authz.check(
        ctx,
        "os_compute_api:os-server-groups:create",
        &json!({"project_id": project, "user_id": ctx.user_id}),
    )?;
    let used = st
        .groups
        .values()
        .filter(|g| g.project_id == project)
        .count() as u64;
    if quotas::exceeds(quotas::limit(st, &project, "server_groups"), used, 1) {
        return Err(ComputeError::Forbidden(
            "Quota exceeded, too many server groups.".into(),
        ));
    }
    let g = ServerGroup {
        id: env.ids.uuid(),
        name: req.name.clone(),
        project_id: project,
        user_id: ctx.user_id.clone(),
        policy: req.policy.clone(),
        max_server_per_host: req.max_server_per_host,
        created_at: env.now.clone(),
    };
    Ok((g.clone(), vec![Change::Group(g)]))
}

/// `DELETE /os-server-groups/{id}`: the members keep running; the group's
/// policy no longer applies to anything.
pub fn delete(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<()> {
    let g = get(st, ctx, id)?;
    env.authz.check(
        ctx,
        "os_compute_api:os-server-groups:delete",
        &json!({"project_id": g.project_id, "user_id": g.user_id}),
    )?;
    Ok(((), vec![Change::DeleteGroup(id.to_string())]))
}

/// `GET /os-server-groups[?all_projects=True]`, oldest first, paged by
/// `offset`/`limit` as Nova's.
pub fn list<'a>(
    st: &'a State,
    env: &Env,
    ctx: &Ctx,
    all_projects: bool,
    offset: usize,
    limit: Option<usize>,
) -> ComputeResult<Vec<&'a ServerGroup>> {
    let own = ctx.project_id.clone().unwrap_or_default();
    env.authz.check(
        ctx,
        "os_compute_api:os-server-groups:index",
        &json!({"project_id": own}),
    )?;
    let all = all_projects
        && env
            .authz
            .check(
                ctx,
                "os_compute_api:os-server-groups:index:all_projects",
                &json!({"project_id": own}),
            )
            .is_ok();
    let mut rows: Vec<&ServerGroup> = st
        .groups
        .values()
        .filter(|g| all || g.project_id == own)
        .collect();
    rows.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(rows
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect())
}

/// The group a create's `group` hint names, checked for the caller and
/// for room: Nova's 400 for a group the caller cannot see, 403 when the
/// group already holds `server_group_members` servers.
pub fn admit(st: &State, ctx: &Ctx, group: &str, joining: u64) -> ComputeResult<()> {
    let g = get(st, ctx, group).map_err(|e| ComputeError::BadRequest(e.to_string()))?;
    let now = members(st, group).count() as u64;
    if quotas::exceeds(
        quotas::limit(st, &g.project_id, "server_group_members"),
        now,
        joining,
    ) {
        return Err(ComputeError::Forbidden(
            "Quota exceeded, too many servers in group".into(),
        ));
    }
    Ok(())
}
