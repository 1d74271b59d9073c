//! Servers: create (checked against flavor, image, networks, quotas), list,
//! show, delete, metadata. Pure functions over the compute [`State`] and the
//! facts the handler looked up elsewhere ([`Facts`]); the build itself
//! (schedule, claim, spawn) is [`crate::compute::build`]'s.

pub mod actions;
pub mod filters;
pub mod interfaces;
pub mod ops;
pub use super::model::server as record;
pub mod request;
pub mod tags;
pub mod tombstone;
pub mod update;
pub mod view;

use super::error::{ComputeError, ComputeResult};
use super::service::{Ctx, Env, Write};
use super::state::{Change, State};
use record::{FlavorCopy, Server};
use request::CreateServer;
use serde_json::json;
use std::collections::BTreeMap;

/// What create needs to know of the image the caller asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFacts {
    /// Glance status; only `active` images boot.
    pub status: String,
    /// GiB the root disk must have at least.
    pub min_disk: u64,
    /// MiB of RAM at least.
    pub min_ram: u64,
    /// Bytes, to check a flavor with a fixed root disk can hold it.
    pub size: u64,
}

/// Facts about other services, looked up before the write (read-only, as
/// the caller may see them), so the write itself stays pure.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The image, or `None` when the caller cannot see it.
    pub image: Option<ImageFacts>,
    /// Requested networks the caller cannot see.
    pub missing_networks: Vec<String>,
    /// Requested ports that do not exist for the caller.
    pub missing_ports: Vec<String>,
    /// Requested ports already bound to a device.
    pub ports_in_use: Vec<String>,
    /// Requested security groups not found in the project.
    pub missing_groups: Vec<String>,
    /// With `networks: "auto"` (or none given before 2.37) and no explicit
    /// NIC: how many networks the pick is between (the project's own, or
    /// else the shared ones). None: not asked, or not known.
    pub auto_candidates: Option<usize>,
}

/// The zone a create asks for (`zone`, or an admin's `zone:host`): a zone
/// no enabled host is in is a 400, a forced host needs its own rule.
fn requested_zone(
    st: &State,
    env: &Env,
    ctx: &Ctx,
    project: &str,
    req: &CreateServer,
) -> ComputeResult<(Option<String>, Option<String>)> {
    let (zone, forced_host) = match &req.availability_zone {
        Some(z) => super::aggregates::split_zone(z),
        None => (None, None),
    };
    if forced_host.is_some() {
        env.authz.check(
            ctx,
            "os_compute_api:servers:create:forced_host",
            &json!({"project_id": project, "user_id": ctx.user_id}),
        )?;
    }
    if let Some(z) = &zone {
        if !super::aggregates::available_zones(st).contains(z) {
            return Err(ComputeError::BadRequest(format!(
                "The requested availability zone is not available: {z}"
            )));
        }
    }
    Ok((zone, forced_host))
}

/// The limits server create checks (from [`crate::compute::quotas`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Servers.
    pub instances: u64,
    /// vCPUs.
    pub cores: u64,
    /// MiB.
    pub ram: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            instances: 10,
            cores: 20,
            ram: 51200,
        }
    }
}

/// What a project uses now.
pub fn usage(st: &State, project: &str) -> Quota {
    let mut u = Quota {
        instances: 0,
        cores: 0,
        ram: 0,
    };
    for s in st.servers.values().filter(|s| s.project_id == project) {
        u.instances += 1;
        u.cores += u64::from(s.flavor.vcpus);
        u.ram += s.flavor.ram;
    }
    u
}

/// A server `ctx` may see: its project's, or any for an admin.
pub fn get<'a>(st: &'a State, ctx: &Ctx, id: &str) -> ComputeResult<&'a Server> {
    st.servers
        .get(id)
        .filter(|s| ctx.is_admin || ctx.project_id.as_deref() == Some(s.project_id.as_str()))
        .ok_or_else(|| ComputeError::NotFound(format!("Instance {id} could not be found.")))
}

fn check_facts(f: &Facts, req: &CreateServer, flavor: &FlavorCopy) -> ComputeResult<()> {
    let bad = |m: String| Err(ComputeError::BadRequest(m));
    let Some(img) = &f.image else {
        return bad("Can not find requested image".into());
    };
    if img.status != "active" {
        return bad(format!("Image {} is not active.", req.image_ref));
    }
    if flavor.ram < img.min_ram {
        return bad("Flavor's memory is too small for requested image.".into());
    }
    if flavor.disk != 0 && (flavor.disk < img.min_disk || flavor.disk << 30 < img.size) {
        return bad("Flavor's disk is too small for requested image.".into());
    }
    if let Some(n) = f.missing_networks.first() {
        return bad(format!("Network {n} could not be found."));
    }
    if let Some(p) = f.missing_ports.first() {
        return bad(format!("Port id {p} could not be found."));
    }
    if let Some(p) = f.ports_in_use.first() {
        return Err(ComputeError::Conflict(format!("Port {p} is still in use.")));
    }
    if let Some(g) = f.missing_groups.first() {
        return bad(format!("Security group {g} not found."));
    }
    // Nova decides `auto` at the API, not in the build: no network to take
    // is a 400 (it would auto-allocate a topology, which needs an extension
    // weft's networking does not offer), several is its NetworkAmbiguous.
    match f.auto_candidates {
        Some(0) if !req.networks_omitted => bad(
            "Unable to automatically allocate a network for this project: create a network, or \
             ask for networks \"none\""
                .into(),
        ),
        Some(n) if n > 1 => Err(ComputeError::Conflict(
            "Multiple possible networks found, use a Network ID to be more specific.".into(),
        )),
        _ => Ok(()),
    }
}

/// `POST /servers`: `max_count` servers in BUILD (fewer down to
/// `min_count` when the quota allows no more), all to be scheduled.
pub fn create(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    req: &CreateServer,
    facts: &Facts,
    quota: Quota,
) -> Write<Vec<Server>> {
    let project = ctx
        .project_id
        .clone()
        .ok_or_else(|| ComputeError::BadRequest("A project-scoped token is needed.".into()))?;
    env.authz.check(
        ctx,
        "os_compute_api:servers:create",
        &json!({"project_id": project, "user_id": ctx.user_id}),
    )?;
    let flavor = super::flavors::get(st, ctx, &req.flavor_ref).map_err(|_| {
        ComputeError::BadRequest(format!("Flavor {} could not be found.", req.flavor_ref))
    })?;
    let copy = FlavorCopy {
        id: flavor.id.clone(),
        name: flavor.name.clone(),
        vcpus: flavor.vcpus,
        ram: flavor.ram,
        disk: flavor.disk,
        ephemeral: flavor.ephemeral,
        swap: flavor.swap,
        extra_specs: flavor.extra_specs.clone(),
    };
    check_facts(facts, req, &copy)?;
    let (zone, forced_host) = requested_zone(st, env, ctx, &project, req)?;
    let public_key = match &req.key_name {
        None => None,
        Some(k) => Some(
            st.keypairs
                .get(&(ctx.user_id.clone(), k.clone()))
                .map(|kp| kp.public_key.clone())
                .ok_or_else(|| ComputeError::BadRequest("Invalid key_name provided.".into()))?,
        ),
    };
    if req.max_count > 1 && req.nics.iter().any(|n| n.port.is_some()) {
        return Err(ComputeError::BadRequest(
            "Multiple instances can not be created with a port given: a port belongs to one server."
                .into(),
        ));
    }
    // As many as the quota allows, at least min_count (Nova's rule).
    let used = usage(st, &project);
    let fits = |n: u64| {
        used.instances + n <= quota.instances
            && used.cores + n * u64::from(copy.vcpus) <= quota.cores
            && used.ram + n * copy.ram <= quota.ram
    };
    let mut n = u64::from(req.max_count);
    while n > u64::from(req.min_count) && !fits(n) {
        n -= 1;
    }
    if !fits(n) {
        let what = if used.instances + n > quota.instances {
            "instances"
        } else if used.cores + n * u64::from(copy.vcpus) > quota.cores {
            "cores"
        } else {
            "ram"
        };
        return Err(ComputeError::Forbidden(format!(
            "Quota exceeded for {what}: Requested {n}, but already used {} of {} {what}",
            match what {
                "instances" => used.instances,
                "cores" => used.cores,
                _ => used.ram,
            },
            match what {
                "instances" => quota.instances,
                "cores" => quota.cores,
                _ => quota.ram,
            }
        )));
    }
    let reservation_id = format!("r-{}", &env.ids.uuid()[..8]);
    let mut out = Vec::new();
    for i in 0..n as u32 {
        let id = env.ids.uuid();
        let name = if n > 1 {
            format!("{}-{}", req.name, i + 1)
        } else {
            req.name.clone()
        };
        out.push(Server {
            instance_name: format!("weft-{id}"),
            hostname: hostname(&name),
            id,
            name,
            project_id: project.clone(),
            user_id: ctx.user_id.clone(),
            flavor: copy.clone(),
            image_ref: req.image_ref.clone(),
            key_name: req.key_name.clone(),
            public_key: public_key.clone(),
            user_data: req.user_data.clone(),
            metadata: req.metadata.clone(),
            security_groups: req.security_groups.clone(),
            nics: req.nics.clone(),
            // Before 2.37 with no network to take, Nova boots without one.
            auto_network: req.auto_network
                && !(req.networks_omitted && facts.auto_candidates == Some(0)),
            availability_zone: zone.clone(),
            forced_host: forced_host.clone(),
            server_group: req.group.clone(),
            launch_index: i,
            reservation_id: reservation_id.clone(),
            vm_state: record::vm_state::BUILDING.into(),
            task_state: Some("scheduling".into()),
            power_state: 0,
            host: None,
            allocated: false,
            fault: None,
            ports: vec![],
            created_ports: vec![],
            addresses: BTreeMap::new(),
            created: env.now.clone(),
            updated: env.now.clone(),
            launched_at: None,
            tags: req.tags.clone(),
            description: req.description.clone(),
            locked: false,
            trust_id: None,
            migration: None,
            pending_image: None,
        });
    }
    let changes = out
        .iter()
        .map(|s| Change::Server(Box::new(s.clone())))
        .collect();
    Ok((out, changes))
}

/// A guest hostname from a display name, as Nova sanitises it.
fn hostname(name: &str) -> String {
    let h: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let h = h.trim_matches('-');
    let h: String = h.chars().take(63).collect();
    if h.is_empty() {
        "server".into()
    } else {
        h
    }
}

/// `DELETE /servers/{id}`: a server never placed goes at once; one with a
/// host or an allocation is marked `deleting` for the build side to tear
/// down (domain, disk, ports, allocation) and then remove.
pub fn delete(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<()> {
    let s = get(st, ctx, id)?;
    env.authz.check(
        ctx,
        "os_compute_api:servers:delete",
        &json!({"project_id": s.project_id, "user_id": s.user_id}),
    )?;
    if s.locked && !ctx.is_admin {
        return Err(ComputeError::Conflict(format!("Instance {id} is locked")));
    }
    if s.host.is_none() && !s.allocated && s.created_ports.is_empty() {
        return Ok(((), tombstone::remove(st, s, &env.now)));
    }
    let mut s = s.clone();
    s.task_state = Some("deleting".into());
    s.updated = env.now.clone();
    Ok(((), vec![Change::Server(Box::new(s))]))
}

/// `GET /servers[/detail]` filters, as Nova reads them.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// `name`: a regular expression, as Nova's ([`filters`]).
    pub name: Option<String>,
    /// `status` (ACTIVE, BUILD, ERROR, SHUTOFF...).
    pub status: Option<String>,
    /// `changes-since` (ISO 8601): only servers updated at or after.
    pub changes_since: Option<String>,
    /// `changes-before` (2.66): only servers updated at or before.
    pub changes_before: Option<String>,
    /// `all_tenants` (admin): every project's.
    pub all_tenants: bool,
    /// `project_id`/`tenant_id` (admin with all_tenants).
    pub project_id: Option<String>,
    /// `host` (admin; ignored for others, as Nova).
    pub host: Option<String>,
    /// `flavor`, `image`.
    pub flavor: Option<String>,
    /// `image`.
    pub image: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
    /// Last id of the previous page.
    pub marker: Option<String>,
    /// `tags`, `tags-any`, `not-tags`, `not-tags-any` (2.26).
    pub tags: tags::TagFilter,
    /// `deleted` (admin): only deleted servers (true) or none (false).
    pub deleted: Option<bool>,
}

/// Which servers a list looks at: Nova shows deleted ones (tombstones)
/// with `changes-since`/`changes-before`, so pollers see deletes, and to
/// admins who ask with `deleted`; anyone else's `deleted` is dropped.
fn sources<'a>(st: &'a State, ctx: &Ctx, q: &ListQuery) -> Vec<&'a Server> {
    let (live, dead) = match q.deleted.filter(|_| ctx.is_admin) {
        Some(true) => (false, true),
        Some(false) => (true, false),
        None => (
            true,
            q.changes_since.is_some() || q.changes_before.is_some(),
        ),
    };
    let live = st.servers.values().filter(move |_| live);
    let dead = st.deleted.values().filter(move |_| dead);
    live.chain(dead).collect()
}

/// The servers `ctx` lists for `q`, newest first (Nova's default sort:
/// created_at desc, then id desc).
pub fn list<'a>(
    st: &'a State,
    env: &Env,
    ctx: &Ctx,
    q: &ListQuery,
) -> ComputeResult<Vec<&'a Server>> {
    let own = ctx.project_id.clone().unwrap_or_default();
    env.authz.check(
        ctx,
        "os_compute_api:servers:index",
        &json!({"project_id": own}),
    )?;
    let all = q.all_tenants && ctx.is_admin;
    let f = filters::Compiled::new(q)?;
    let mut rows: Vec<&Server> = sources(st, ctx, q)
        .into_iter()
        .filter(|s| {
            (all || s.project_id == own)
                && q.project_id
                    .as_ref()
                    .is_none_or(|p| !all || &s.project_id == p)
                && f.matches(s)
                && q.status
                    .as_ref()
                    .is_none_or(|x| s.status().eq_ignore_ascii_case(x))
                && q.host
                    .as_ref()
                    // An admin's filter; Nova drops it for anyone else.
                    .is_none_or(|h| !ctx.is_admin || s.host.as_deref() == Some(h))
                && q.flavor.as_ref().is_none_or(|f| &s.flavor.id == f)
                && q.image.as_ref().is_none_or(|i| &s.image_ref == i)
                && q.tags.matches(s)
        })
        .collect();
    rows.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    if let Some(m) = &q.marker {
        let at = rows
            .iter()
            .position(|s| &s.id == m)
            .ok_or_else(|| ComputeError::BadRequest(format!("marker [{m}] not found")))?;
        rows.drain(..=at);
    }
    if let Some(l) = q.limit {
        rows.truncate(l);
    }
    Ok(rows)
}

/// `PUT /servers/{id}/metadata` (replace) or `POST` (merge).
pub fn set_metadata(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    id: &str,
    md: BTreeMap<String, String>,
    replace: bool,
) -> Write<BTreeMap<String, String>> {
    let s = get(st, ctx, id)?;
    env.authz.check(
        ctx,
        "os_compute_api:server-metadata:update",
        &json!({"project_id": s.project_id}),
    )?;
    let mut s = s.clone();
    if replace {
        s.metadata = md;
    } else {
        s.metadata.extend(md);
    }
    s.updated = env.now.clone();
    let out = s.metadata.clone();
    Ok((out, vec![Change::Server(Box::new(s))]))
}

/// `DELETE /servers/{id}/metadata/{key}`.
pub fn delete_metadata(st: &State, env: &mut Env, ctx: &Ctx, id: &str, key: &str) -> Write<()> {
    let s = get(st, ctx, id)?;
    env.authz.check(
        ctx,
        "os_compute_api:server-metadata:delete",
        &json!({"project_id": s.project_id}),
    )?;
    if !s.metadata.contains_key(key) {
        return Err(ComputeError::NotFound("Metadata item was not found".into()));
    }
    let mut s = s.clone();
    s.metadata.remove(key);
    s.updated = env.now.clone();
    Ok(((), vec![Change::Server(Box::new(s))]))
}
