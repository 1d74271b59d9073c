//! Flavors, their extra specs and their access lists: pure functions from
//! (state, env, caller, request) to (result, changes).

use super::body::{self, invalid, only, required};
use super::error::{ComputeError, ComputeResult};
use super::model::Flavor;
use super::service::{Ctx, Env, Write};
use super::state::{Change, State};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A checked `POST /flavors` body.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateFlavor {
    /// Name, stripped.
    pub name: String,
    /// Given id, or None for a UUID.
    pub id: Option<String>,
    /// VCPUs.
    pub vcpus: u32,
    /// MiB.
    pub ram: u64,
    /// GiB.
    pub disk: u64,
    /// GiB.
    pub ephemeral: u64,
    /// MiB.
    pub swap: u64,
    /// Kept and shown.
    pub rxtx_factor: f64,
    /// Public (default) or private.
    pub is_public: bool,
    /// 2.55+.
    pub description: Option<String>,
}

const INT_MAX: u64 = i32::MAX as u64;

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && !id.starts_with(' ')
        && !id.ends_with(' ')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ' ' | '_' | '-'))
}

impl CreateFlavor {
    /// Checks `{"flavor": {...}}` as Nova's create schema does at `mv`.
    pub fn parse(b: &[u8], mv: (u32, u32)) -> ComputeResult<CreateFlavor> {
        let outer = body::object(b)?;
        let m = body::wrapped(&outer, "flavor")?;
        let mut allowed = vec![
            "name",
            "id",
            "ram",
            "vcpus",
            "disk",
            "OS-FLV-EXT-DATA:ephemeral",
            "swap",
            "rxtx_factor",
            "os-flavor-access:is_public",
        ];
        if mv >= (2, 55) {
            allowed.push("description");
        }
        only(m, &allowed)?;
        let name = required(body::str_field(m, "name", 255)?, "name")?;
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(invalid("name", &json!(name), "is too short"));
        }
        let id = match m.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if valid_id(s) => Some(s.clone()),
            Some(v) => return Err(invalid("id", v, "does not match the flavor id pattern")),
        };
        let rxtx_factor = match m.get("rxtx_factor") {
            None => 1.0,
            Some(v) => match v
                .as_f64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            {
                Some(f) if f > 0.0 && f <= 3.40282e38 => f,
                _ => return Err(invalid("rxtx_factor", v, "is not a positive number")),
            },
        };
        Ok(CreateFlavor {
            name,
            id,
            vcpus: required(body::int_field(m, "vcpus", 1, INT_MAX)?, "vcpus")? as u32,
            ram: required(body::int_field(m, "ram", 1, INT_MAX)?, "ram")?,
            disk: required(body::int_field(m, "disk", 0, INT_MAX)?, "disk")?,
            ephemeral: body::int_field(m, "OS-FLV-EXT-DATA:ephemeral", 0, INT_MAX)?.unwrap_or(0),
            swap: body::int_field(m, "swap", 0, INT_MAX)?.unwrap_or(0),
            rxtx_factor,
            is_public: body::bool_field(m, "os-flavor-access:is_public")?.unwrap_or(true),
            description: body::str_field(m, "description", 65535)?,
        })
    }
}

/// Whether `ctx` may see flavor `f`: public ones, and private ones its
/// project has access to; an admin sees all.
pub fn visible(st: &State, ctx: &Ctx, f: &Flavor) -> bool {
    f.is_public
        || ctx.is_admin
        || ctx
            .project_id
            .as_deref()
            .is_some_and(|p| st.flavor_access.contains(&(f.id.clone(), p.to_string())))
}

/// The flavor `id` as `ctx` may see it, or 404.
pub fn get<'a>(st: &'a State, ctx: &Ctx, id: &str) -> ComputeResult<&'a Flavor> {
    st.flavors
        .get(id)
        .filter(|f| visible(st, ctx, f))
        .ok_or_else(|| ComputeError::no_flavor(id))
}

/// `POST /flavors` (admin).
pub fn create(st: &State, env: &mut Env, ctx: &Ctx, req: &CreateFlavor) -> Write<Flavor> {
    env.authz
        .check(ctx, "os_compute_api:os-flavor-manage:create", &json!({}))?;
    if st.flavors.values().any(|f| f.name == req.name) {
        return Err(ComputeError::Conflict(format!(
            "Flavor with name {} already exists.",
            req.name
        )));
    }
    let id = match &req.id {
        Some(id) if st.flavors.contains_key(id) => {
            return Err(ComputeError::Conflict(format!(
                "Flavor with ID {id} already exists."
            )))
        }
        Some(id) => id.clone(),
        None => env.ids.uuid(),
    };
    let f = Flavor {
        id,
        name: req.name.clone(),
        vcpus: req.vcpus,
        ram: req.ram,
        disk: req.disk,
        ephemeral: req.ephemeral,
        swap: req.swap,
        rxtx_factor: req.rxtx_factor,
        is_public: req.is_public,
        description: req.description.clone(),
        extra_specs: BTreeMap::new(),
        created_at: env.now.clone(),
    };
    // Like Nova (bug 1209101), a private flavor starts with no project on
    // its access list, the creator's included: access is granted explicitly.
    Ok((f.clone(), vec![Change::Flavor(f)]))
}

/// `PUT /flavors/{id}` (2.55): only the description changes.
pub fn update(st: &State, env: &mut Env, ctx: &Ctx, id: &str, b: &[u8]) -> Write<Flavor> {
    env.authz
        .check(ctx, "os_compute_api:os-flavor-manage:update", &json!({}))?;
    let outer = body::object(b)?;
    let m = body::wrapped(&outer, "flavor")?;
    only(m, &["description"])?;
    if !m.contains_key("description") {
        return Err(ComputeError::BadRequest(
            "Invalid input for field/attribute flavor. Value: {}. 'description' is a required property".into(),
        ));
    }
    let mut f = get(st, ctx, id)?.clone();
    f.description = body::str_field(m, "description", 65535)?;
    Ok((f.clone(), vec![Change::Flavor(f)]))
}

/// `DELETE /flavors/{id}` (admin); its access list goes with it.
pub fn delete(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<()> {
    env.authz
        .check(ctx, "os_compute_api:os-flavor-manage:delete", &json!({}))?;
    get(st, ctx, id)?;
    let mut changes = vec![Change::DeleteFlavor(id.to_string())];
    changes.extend(
        st.access_of(id)
            .map(|p| Change::DeleteAccess(id.to_string(), p.to_string())),
    );
    Ok(((), changes))
}

/// `GET /flavors[/detail]` query: Nova's filters, sort and paging.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// `is_public`: Some(true) (the default), Some(false), or None (`none`: all; admin only).
    pub is_public: Option<bool>,
    /// `minRam`.
    pub min_ram: Option<u64>,
    /// `minDisk`.
    pub min_disk: Option<u64>,
    /// `sort_key` (default `flavorid`).
    pub sort_key: String,
    /// `sort_dir` asc (default) or desc.
    pub desc: bool,
    /// `limit`.
    pub limit: Option<usize>,
    /// `marker`: the last flavor id of the previous page.
    pub marker: Option<String>,
}

impl ListQuery {
    /// Parses a query string.
    pub fn parse(q: &str) -> ComputeResult<ListQuery> {
        let mut out = ListQuery {
            is_public: Some(true),
            sort_key: "flavorid".into(),
            ..ListQuery::default()
        };
        let num = |k: &str, v: &str| {
            v.parse::<u64>()
                .map_err(|_| ComputeError::BadRequest(format!("Invalid {k} filter [{v}]")))
        };
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            match k.as_ref() {
                "is_public" => {
                    out.is_public = match v.to_ascii_lowercase().as_str() {
                        "none" => None,
                        "true" | "t" | "1" | "yes" | "y" | "on" => Some(true),
                        "false" | "f" | "0" | "no" | "n" | "off" => Some(false),
                        _ => {
                            return Err(ComputeError::BadRequest(format!(
                                "Invalid is_public filter [{v}]"
                            )))
                        }
                    }
                }
                "minRam" => out.min_ram = Some(num("minRam", &v)?),
                "minDisk" => out.min_disk = Some(num("minDisk", &v)?),
                "sort_key" if SORT_KEYS.contains(&v.as_ref()) => out.sort_key = v.into_owned(),
                "sort_key" => {
                    return Err(ComputeError::BadRequest(format!(
                        "Invalid input for query parameters sort_key. Value: {v}."
                    )))
                }
                "sort_dir" => {
                    out.desc = match v.as_ref() {
                        "asc" => false,
                        "desc" => true,
                        _ => {
                            return Err(ComputeError::BadRequest(format!(
                                "Invalid input for query parameters sort_dir. Value: {v}. '{v}' is not one of ['asc', 'desc']"
                            )))
                        }
                    }
                }
                "limit" => {
                    out.limit = Some(v.parse::<usize>().map_err(|_| {
                        ComputeError::BadRequest(format!(
                            "Invalid input for query parameters limit. Value: {v}."
                        ))
                    })?)
                }
                "marker" => out.marker = Some(v.into_owned()),
                _ => {}
            }
        }
        Ok(out)
    }
}

/// The keys `sort_key` may name, as Nova's flavor list schema has them.
const SORT_KEYS: &[&str] = &[
    "created_at",
    "description",
    "disabled",
    "ephemeral_gb",
    "flavorid",
    "id",
    "is_public",
    "memory_mb",
    "name",
    "root_gb",
    "rxtx_factor",
    "swap",
    "updated_at",
    "vcpu_weight",
    "vcpus",
];

fn sort_value(f: &Flavor, key: &str) -> Value {
    match key {
        "flavorid" | "id" => json!(f.id),
        "name" => json!(f.name),
        "memory_mb" => json!(f.ram),
        "vcpus" => json!(f.vcpus),
        "root_gb" => json!(f.disk),
        "ephemeral_gb" => json!(f.ephemeral),
        "swap" => json!(f.swap),
        "rxtx_factor" => json!(f.rxtx_factor),
        "is_public" => json!(f.is_public),
        "created_at" => json!(f.created_at),
        "description" => json!(f.description),
        // Nova has these columns; weft's flavors never set them.
        _ => Value::Null,
    }
}

fn cmp_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Less,
        (_, Value::Null) => std::cmp::Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// The flavors `ctx` lists for `q`, one page.
pub fn list<'a>(st: &'a State, ctx: &Ctx, q: &ListQuery) -> ComputeResult<Vec<&'a Flavor>> {
    // Only an admin chooses: everyone else sees public flavors and the
    // private ones their project was given.
    let is_public = if ctx.is_admin {
        q.is_public
    } else {
        Some(true)
    };
    let project = ctx.project_id.as_deref();
    let mut rows: Vec<(Value, &Flavor)> = Vec::new();
    for f in st.flavors.values() {
        let accessible =
            project.is_some_and(|p| st.flavor_access.contains(&(f.id.clone(), p.to_string())));
        let shown = match is_public {
            None => true,
            Some(true) => f.is_public || accessible,
            Some(false) => !f.is_public,
        };
        if !shown || q.min_ram.is_some_and(|r| f.ram < r) || q.min_disk.is_some_and(|d| f.disk < d)
        {
            continue;
        }
        rows.push((sort_value(f, &q.sort_key), f));
    }
    rows.sort_by(|(a, fa), (b, fb)| {
        let o = cmp_values(a, b).then_with(|| fa.id.cmp(&fb.id));
        if q.desc {
            o.reverse()
        } else {
            o
        }
    });
    let mut out: Vec<&Flavor> = rows.into_iter().map(|(_, f)| f).collect();
    if let Some(m) = &q.marker {
        let at = out
            .iter()
            .position(|f| &f.id == m)
            .ok_or_else(|| ComputeError::BadRequest(format!("marker [{m}] not found")))?;
        out.drain(..=at);
    }
    if let Some(l) = q.limit {
        out.truncate(l);
    }
    Ok(out)
}

// ---------------------------------------------------------------- extra specs

fn valid_spec_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 255
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.' | ' '))
}

/// Checks an `extra_specs` map: Nova's key pattern, values strings (numbers
/// and booleans are taken as their text) of at most 255 characters.
pub fn parse_specs(m: &Map<String, Value>) -> ComputeResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in m {
        if !valid_spec_key(k) {
            return Err(ComputeError::BadRequest(format!(
                "Invalid input for field/attribute extra_specs. Value: {k}. '{k}' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{{1,255}}$'"
            )));
        }
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(invalid(
                    k,
                    v,
                    "is not of type 'string', 'integer', 'number', 'boolean'",
                ))
            }
        };
        if s.chars().count() > 255 {
            return Err(invalid(k, v, "is too long"));
        }
        out.insert(k.clone(), s);
    }
    Ok(out)
}

fn specs_target(ctx: &Ctx) -> Value {
    json!({"project_id": ctx.project_id})
}

/// `GET /flavors/{id}/os-extra_specs[/{key}]`: the visible flavor's specs.
pub fn specs(
    st: &State,
    env: &Env,
    ctx: &Ctx,
    id: &str,
    key: Option<&str>,
) -> ComputeResult<Value> {
    let action = if key.is_some() { "show" } else { "index" };
    env.authz.check(
        ctx,
        &format!("os_compute_api:os-flavor-extra-specs:{action}"),
        &specs_target(ctx),
    )?;
    let f = get(st, ctx, id)?;
    match key {
        None => Ok(json!({"extra_specs": f.extra_specs})),
        Some(k) => f
            .extra_specs
            .get(k)
            .map(|v| json!({ k: v }))
            .ok_or_else(|| {
                ComputeError::NotFound(format!("Flavor {id} has no extra specs with key {k}."))
            }),
    }
}

/// `POST /flavors/{id}/os-extra_specs`: merges the given specs.
pub fn set_specs(st: &State, env: &mut Env, ctx: &Ctx, id: &str, b: &[u8]) -> Write<Value> {
    env.authz.check(
        ctx,
        "os_compute_api:os-flavor-extra-specs:create",
        &specs_target(ctx),
    )?;
    let outer = body::object(b)?;
    let m = body::wrapped(&outer, "extra_specs")?;
    let given = parse_specs(m)?;
    let mut f = get(st, ctx, id)?.clone();
    f.extra_specs.extend(given.clone());
    Ok((json!({"extra_specs": given}), vec![Change::Flavor(f)]))
}

/// `PUT /flavors/{id}/os-extra_specs/{key}`: `{key: value}`, one key, the URL's.
pub fn put_spec(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    id: &str,
    key: &str,
    b: &[u8],
) -> Write<Value> {
    env.authz.check(
        ctx,
        "os_compute_api:os-flavor-extra-specs:update",
        &specs_target(ctx),
    )?;
    let m = body::object(b)?;
    if m.len() != 1 || !m.contains_key(key) {
        return Err(ComputeError::BadRequest(
            "Request body and URI mismatch".into(),
        ));
    }
    let given = parse_specs(&m)?;
    let mut f = get(st, ctx, id)?.clone();
    f.extra_specs.extend(given.clone());
    Ok((json!(given), vec![Change::Flavor(f)]))
}

/// `DELETE /flavors/{id}/os-extra_specs/{key}`.
pub fn delete_spec(st: &State, env: &mut Env, ctx: &Ctx, id: &str, key: &str) -> Write<()> {
    env.authz.check(
        ctx,
        "os_compute_api:os-flavor-extra-specs:delete",
        &specs_target(ctx),
    )?;
    let mut f = get(st, ctx, id)?.clone();
    if f.extra_specs.remove(key).is_none() {
        return Err(ComputeError::NotFound(format!(
            "Flavor {id} has no extra specs with key {key}."
        )));
    }
    Ok(((), vec![Change::Flavor(f)]))
}

// ---------------------------------------------------------------- access

/// `{"flavor_access": [...]}` of a private flavor.
pub fn access_view(st: &State, id: &str) -> Value {
    let list: Vec<Value> = st
        .access_of(id)
        .map(|p| json!({"flavor_id": id, "tenant_id": p}))
        .collect();
    json!({ "flavor_access": list })
}

/// `GET /flavors/{id}/os-flavor-access` (admin).
pub fn access(st: &State, env: &Env, ctx: &Ctx, id: &str) -> ComputeResult<Value> {
    env.authz
        .check(ctx, "os_compute_api:os-flavor-access", &json!({}))?;
    let f = get(st, ctx, id)?;
    if f.is_public {
        return Err(ComputeError::NotFound(
            "Access list not available for public flavors.".into(),
        ));
    }
    Ok(access_view(st, id))
}

/// `POST /flavors/{id}/action` with `addTenantAccess` or `removeTenantAccess`.
pub fn access_action(st: &State, env: &mut Env, ctx: &Ctx, id: &str, b: &[u8]) -> Write<Value> {
    let m = body::object(b)?;
    let (add, inner) = match (m.get("addTenantAccess"), m.get("removeTenantAccess")) {
        (Some(v), None) => (true, v),
        (None, Some(v)) => (false, v),
        _ => {
            return Err(ComputeError::BadRequest(
                "There is no such action in the request body.".into(),
            ))
        }
    };
    let action = if add {
        "add_tenant_access"
    } else {
        "remove_tenant_access"
    };
    env.authz.check(
        ctx,
        &format!("os_compute_api:os-flavor-access:{action}"),
        &json!({}),
    )?;
    let key = if add {
        "addTenantAccess"
    } else {
        "removeTenantAccess"
    };
    let inner = inner
        .as_object()
        .ok_or_else(|| invalid(key, inner, "is not of type 'object'"))?;
    only(inner, &["tenant"])?;
    let tenant = required(body::str_field(inner, "tenant", 255)?, "tenant")?;
    if tenant.is_empty() {
        return Err(invalid("tenant", &json!(tenant), "is too short"));
    }
    let f = get(st, ctx, id)?;
    let pair = (id.to_string(), tenant.clone());
    let change = if add {
        if f.is_public {
            return Err(ComputeError::Conflict(
                "Can not add access to a public flavor.".into(),
            ));
        }
        if st.flavor_access.contains(&pair) {
            return Err(ComputeError::Conflict(format!(
                "Flavor access already exists for flavor {id} and project {tenant} combination."
            )));
        }
        Change::Access(pair.0, pair.1)
    } else {
        if !st.flavor_access.contains(&pair) {
            return Err(ComputeError::NotFound(format!(
                "Flavor access not found for {id} / {tenant} combination."
            )));
        }
        Change::DeleteAccess(pair.0, pair.1)
    };
    // The list as it will be once the change commits.
    let mut tenants: Vec<&str> = st.access_of(id).filter(|p| *p != tenant).collect();
    if add {
        tenants.push(&tenant);
        tenants.sort_unstable();
    }
    let list: Vec<Value> = tenants
        .iter()
        .map(|p| json!({"flavor_id": id, "tenant_id": p}))
        .collect();
    Ok((json!({ "flavor_access": list }), vec![change]))
}
