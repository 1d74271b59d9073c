//! `/allocations` (by consumer, and `POST` for several at once), `/usages`
//! and `/allocation_candidates`.

use super::{body, no_content, since, Caller, JsonBytes, Mv, S};
use crate::placement::allocations::{self as allocs, Allocs, ConsumerWrite};
use crate::placement::candidates::{self, Group, Request};
use crate::placement::error::{Code, PlacementError, PlacementResult};
use crate::placement::microversion::Version;
use crate::placement::query::{self, Params};
use crate::placement::service::{canonical_uuid, Ctx};
use crate::placement::State;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

type R = PlacementResult<Response>;

pub async fn show(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(consumer): Path<String>,
) -> R {
    c.admit(&pl, "placement:allocations:list", None)?;
    let st = pl.snapshot();
    let Some(x) = st.consumers.get(&consumer) else {
        return Ok(Json(json!({"allocations": {}})).into_response());
    };
    let mut out = Map::new();
    for (rp, resources) in &x.allocations {
        let generation = st.providers.get(rp).map(|p| p.generation);
        out.insert(
            rp.clone(),
            json!({"generation": generation, "resources": resources}),
        );
    }
    let mut body = json!({"allocations": out});
    if v.at_least(12) {
        body["project_id"] = json!(x.project_id);
        body["user_id"] = json!(x.user_id);
    }
    if v.at_least(28) {
        body["consumer_generation"] = json!(x.generation);
    }
    if v.at_least(38) {
        body["consumer_type"] = json!(x.consumer_type.as_deref().unwrap_or("unknown"));
    }
    Ok(Json(body).into_response())
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderRef {
    uuid: String,
}

/// One allocation in the list form (before 1.12).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListItem {
    resource_provider: ProviderRef,
    resources: BTreeMap<String, u64>,
}

/// `PUT /allocations/{consumer}` before 1.12.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListBody {
    allocations: Vec<ListItem>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
}

/// One provider's share in the dict form (1.12+); `generation` is what
/// `GET` shows and clients may send back; it is not checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DictItem {
    resources: BTreeMap<String, u64>,
    #[serde(default)]
    #[allow(dead_code)]
    generation: Option<u64>,
}

/// `PUT /allocations/{consumer}` from 1.12, and each consumer of `POST /allocations`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DictBody {
    allocations: BTreeMap<String, DictItem>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    consumer_generation: Option<Option<u64>>,
    #[serde(default)]
    consumer_type: Option<String>,
    /// 1.34: what candidates said; accepted and not kept.
    #[serde(default)]
    #[allow(dead_code)]
    mappings: Option<Value>,
}

fn required_field(name: &str) -> PlacementError {
    PlacementError::bad(format!(
        "JSON does not validate: '{name}' is a required property"
    ))
}

/// One consumer's dict-form body; `allow_empty`: `POST /allocations`, where
/// `{}` has always meant "this consumer holds nothing now".
fn dict_write(
    v: Version,
    consumer: String,
    b: DictBody,
    allow_empty: bool,
) -> PlacementResult<ConsumerWrite> {
    if v.at_least(8) && (b.project_id.is_none() || b.user_id.is_none()) {
        return Err(required_field(if b.project_id.is_none() {
            "project_id"
        } else {
            "user_id"
        }));
    }
    if v.at_least(28) && b.consumer_generation.is_none() {
        return Err(required_field("consumer_generation"));
    }
    if v.at_least(38) {
        match &b.consumer_type {
            None => return Err(required_field("consumer_type")),
            Some(t)
                if t.is_empty()
                    || t.len() > 255
                    || !t
                        .bytes()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_') =>
            {
                return Err(PlacementError::bad(format!(
                    "JSON does not validate: '{t}' does not match '^[A-Z0-9_]+$'"
                )))
            }
            _ => {}
        }
    } else if b.consumer_type.is_some() {
        return Err(PlacementError::bad(
            "JSON does not validate: Additional properties are not allowed ('consumer_type' \
             was unexpected)",
        ));
    }
    if b.allocations.is_empty() && !v.at_least(28) && !allow_empty {
        return Err(PlacementError::bad(
            "JSON does not validate: {} does not have enough properties (allocations)",
        ));
    }
    let mut allocations = Allocs::new();
    for (rp, item) in b.allocations {
        if let Some(rc) = item.resources.keys().find(|rc| {
            rc.is_empty()
                || !rc
                    .bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
        }) {
            return Err(PlacementError::bad(format!(
                "JSON does not validate: '{rc}' does not match '^[A-Z0-9_]+$' (resources)"
            )));
        }
        let rp = canonical_uuid(&rp).ok_or_else(|| {
            PlacementError::bad(format!(
                "JSON does not validate: '{rp}' is not a valid uuid"
            ))
        })?;
        allocations.insert(rp, item.resources);
    }
    Ok(ConsumerWrite {
        consumer,
        allocations,
        project_id: b.project_id,
        user_id: b.user_id,
        consumer_generation: b.consumer_generation.flatten(),
        consumer_type: b.consumer_type,
    })
}

fn parse_put(v: Version, consumer: String, b: &Bytes) -> PlacementResult<ConsumerWrite> {
    if v.at_least(12) {
        return dict_write(v, consumer, body(b)?, false);
    }
    let l: ListBody = body(b)?;
    if l.allocations.is_empty() {
        return Err(PlacementError::bad(
            "JSON does not validate: [] is too short (allocations)",
        ));
    }
    if v.at_least(8) && (l.project_id.is_none() || l.user_id.is_none()) {
        return Err(required_field("project_id"));
    }
    let mut allocations = Allocs::new();
    for item in l.allocations {
        let rp = canonical_uuid(&item.resource_provider.uuid).ok_or_else(|| {
            PlacementError::bad("JSON does not validate: resource_provider uuid is not a uuid")
        })?;
        allocations.entry(rp).or_default().extend(item.resources);
    }
    Ok(ConsumerWrite {
        consumer,
        allocations,
        project_id: l.project_id,
        user_id: l.user_id,
        consumer_generation: None,
        consumer_type: None,
    })
}

pub async fn put(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(consumer): Path<String>,
    JsonBytes(b): JsonBytes,
) -> R {
    c.admit(&pl, "placement:allocations:update", None)?;
    let w = parse_put(v, consumer, &b)?;
    let writes = vec![w];
    pl.write_async(Ctx { version: v }, move |st, env, ctx| {
        allocs::write(st, env, ctx, &writes)
    })
    .await?;
    Ok(no_content())
}

pub async fn post(axum::extract::State(pl): S, c: Caller, Mv(v): Mv, JsonBytes(b): JsonBytes) -> R {
    if !v.at_least(13) {
        return Err(PlacementError::MethodNotAllowed);
    }
    c.admit(&pl, "placement:allocations:manage", None)?;
    let all: BTreeMap<String, DictBody> = body(&b)?;
    let mut writes = Vec::with_capacity(all.len());
    for (consumer, d) in all {
        writes.push(dict_write(v, consumer, d, true)?);
    }
    pl.write_async(Ctx { version: v }, move |st, env, ctx| {
        allocs::write(st, env, ctx, &writes)
    })
    .await?;
    Ok(no_content())
}

pub async fn delete(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(consumer): Path<String>,
) -> R {
    c.admit(&pl, "placement:allocations:delete", None)?;
    pl.write_async(Ctx { version: v }, move |st, env, ctx| {
        allocs::delete(st, env, ctx, &consumer)
    })
    .await?;
    Ok(no_content())
}

pub async fn usages(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    RawQuery(raw): RawQuery,
) -> R {
    since(v, 9)?;
    let q = Params::parse(raw.as_deref());
    for k in q.keys() {
        let ok = matches!(k, "project_id" | "user_id") || (k == "consumer_type" && v.at_least(38));
        if !ok {
            return Err(PlacementError::bad_query(format!(
                "Invalid query string parameters: Additional properties are not allowed ('{k}' \
                 was unexpected)"
            )));
        }
    }
    let project = q
        .one("project_id")?
        .ok_or_else(|| PlacementError::BadRequest {
            code: Code::MissingValue,
            message: "Invalid query string parameters: 'project_id' is a required property".into(),
        })?;
    c.admit(&pl, "placement:usages", Some(project))?;
    let st = pl.snapshot();
    let by_type = allocs::usages(&st, project, q.one("user_id")?, q.one("consumer_type")?);
    let body = if v.at_least(38) {
        let mut m = Map::new();
        for (ty, u) in by_type {
            let mut o = json!({"consumer_count": u.consumer_count});
            for (rc, n) in u.usages {
                o[rc] = json!(n);
            }
            m.insert(ty, o);
        }
        json!({"usages": m})
    } else {
        let mut sum: BTreeMap<String, u64> = BTreeMap::new();
        for u in by_type.values() {
            for (rc, n) in &u.usages {
                *sum.entry(rc.clone()).or_default() += n;
            }
        }
        json!({"usages": sum})
    };
    Ok(Json(body).into_response())
}

/// Splits `resources1` into (`resources`, `1`) for the keys of a group.
fn split_key(k: &str) -> Option<(&'static str, &str)> {
    for base in ["resources", "required", "member_of", "in_tree"] {
        if let Some(s) = k.strip_prefix(base) {
            return Some((base, s));
        }
    }
    None
}

fn valid_suffix(v: Version, s: &str) -> bool {
    if v.at_least(33) {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    } else {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    }
}

fn bad_key(k: &str) -> PlacementError {
    PlacementError::bad_query(format!(
        "Invalid query string parameters: Additional properties are not allowed ('{k}' was \
         unexpected)"
    ))
}

/// The query of `GET /allocation_candidates` at `v`, as a [`Request`].
pub fn candidates_request(st: &State, v: Version, q: &Params) -> PlacementResult<Request> {
    let mut suffixes: BTreeSet<&str> = BTreeSet::new();
    for k in q.keys() {
        match k {
            "limit" if v.at_least(16) => continue,
            "group_policy" if v.at_least(25) => continue,
            "root_required" if v.at_least(35) => continue,
            "same_subtree" if v.at_least(36) => {
                return Err(PlacementError::bad_query(format!(
                    "'{k}' is not supported by this placement service."
                )))
            }
            _ => {}
        }
        let (base, suffix) = split_key(k).ok_or_else(|| bad_key(k))?;
        let from = match base {
            "resources" => 10,
            "required" => 17,
            "member_of" => 21,
            _ => 31,
        };
        if !v.at_least(from) {
            return Err(bad_key(k));
        }
        if !suffix.is_empty() {
            if !v.at_least(25) || !valid_suffix(v, suffix) {
                return Err(bad_key(k));
            }
            suffixes.insert(suffix);
        }
    }
    let group = |suffix: &str| -> PlacementResult<Group> {
        let key = |b: &str| format!("{b}{suffix}");
        let rkey = key("resources");
        let in_tree = match q.one(&key("in_tree"))? {
            None => None,
            Some(u) => Some(canonical_uuid(u).ok_or_else(|| {
                PlacementError::bad_query(format!(
                    "Invalid query string parameters: Expected '{}' parameter to be a format of \
                     uuid. Got: {u}",
                    key("in_tree")
                ))
            })?),
        };
        Ok(Group {
            suffix: suffix.to_string(),
            resources: match q.one(&rkey)? {
                Some(r) => query::resources(st, &rkey, r)?,
                None => BTreeMap::new(),
            },
            required: query::required(st, v, &key("required"), q.all(&key("required")))?,
            member_of: query::member_of(v, q.all(&key("member_of")))?,
            in_tree,
        })
    };
    let unsuffixed = group("")?;
    let groups = suffixes
        .iter()
        .map(|s| group(s))
        .collect::<PlacementResult<Vec<_>>>()?;
    if unsuffixed.resources.is_empty() && groups.iter().all(|g| g.resources.is_empty()) {
        return Err(PlacementError::bad_query(if v.at_least(25) {
            "At least one request group (`resources` or `resources{$S}`) must be specified."
        } else {
            "Invalid query string parameters: 'resources' is a required property"
        }));
    }
    if let Some(g) = groups.iter().find(|g| g.resources.is_empty()) {
        return Err(PlacementError::bad_query(format!(
            "All request groups must have resources; group '{}' has none \
             (resourceless groups need same_subtree, which is not supported).",
            g.suffix
        )));
    }
    let isolate = match q.one("group_policy")? {
        None if groups.len() > 1 => {
            return Err(PlacementError::bad_query(
                "The \"group_policy\" parameter is required when specifying more than one \
                 \"resources{$S}\" parameter.",
            ))
        }
        None | Some("none") => false,
        Some("isolate") => true,
        Some(o) => {
            return Err(PlacementError::bad_query(format!(
                "Invalid query string parameters: '{o}' is not one of ['none', 'isolate']"
            )))
        }
    };
    let limit = match q.one("limit")? {
        None => None,
        Some(l) => Some(l.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            PlacementError::bad_query(format!(
                "Invalid query string parameters: '{l}' does not match '^[1-9][0-9]*$'"
            ))
        })?),
    };
    let root_required = match q.one("root_required")? {
        None => Default::default(),
        Some(r) if r.starts_with("in:") => {
            return Err(PlacementError::bad_query(format!(
                "Invalid query string parameters: Expected 'root_required' parameter value of \
                 the form: HW_CPU_X86_VMX,!CUSTOM_MAGIC. Got: {r}"
            )))
        }
        Some(r) => query::required(st, v, "root_required", [r])?,
    };
    Ok(Request {
        unsuffixed,
        groups,
        isolate,
        limit,
        root_required,
        nested: v.at_least(29),
    })
}

/// One provider's share of an allocation request.
#[derive(Serialize)]
struct Share<'a> {
    resources: &'a BTreeMap<&'a str, u64>,
}

/// The list form of an allocation request's items (before 1.12).
#[derive(Serialize)]
struct ListShare<'a> {
    resource_provider: Uuid<'a>,
    resources: &'a BTreeMap<&'a str, u64>,
}

#[derive(Serialize)]
struct Uuid<'a> {
    uuid: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum AllocationRequest<'a> {
    List {
        allocations: Vec<ListShare<'a>>,
    },
    Dict {
        allocations: BTreeMap<&'a str, Share<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mappings: Option<&'a BTreeMap<&'a str, BTreeSet<&'a str>>>,
    },
}

#[derive(Serialize)]
struct Capacity {
    capacity: u64,
    used: u64,
}

#[derive(Serialize)]
struct Summary<'a> {
    resources: BTreeMap<&'a str, Capacity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traits: Option<&'a BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_provider_uuid: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_provider_uuid: Option<&'a str>,
}

/// The body of `GET /allocation_candidates`.
#[derive(Serialize)]
pub struct CandidatesBody<'a> {
    allocation_requests: Vec<AllocationRequest<'a>>,
    provider_summaries: BTreeMap<&'a str, Summary<'a>>,
}

/// The response of `GET /allocation_candidates` at `v`, borrowing from the
/// snapshot and the search (serialized straight to bytes: at thousands of
/// candidates an intermediate `serde_json::Value` cost more than the search).
pub fn render_candidates<'a>(
    st: &'a State,
    v: Version,
    req: &'a Request,
    found: &'a candidates::Candidates<'a>,
) -> CandidatesBody<'a> {
    let allocation_requests = found
        .requests
        .iter()
        .map(|c| {
            if !v.at_least(12) {
                return AllocationRequest::List {
                    allocations: c
                        .allocations
                        .iter()
                        .map(|(rp, r)| ListShare {
                            resource_provider: Uuid { uuid: rp },
                            resources: r,
                        })
                        .collect(),
                };
            }
            AllocationRequest::Dict {
                allocations: c
                    .allocations
                    .iter()
                    .map(|(rp, r)| (*rp, Share { resources: r }))
                    .collect(),
                mappings: v.at_least(34).then_some(&c.mappings),
            }
        })
        .collect();
    let asked: BTreeSet<&str> = std::iter::once(&req.unsuffixed)
        .chain(&req.groups)
        .flat_map(|g| g.resources.keys().map(String::as_str))
        .collect();
    let mut provider_summaries = BTreeMap::new();
    for rp in &found.summaries {
        let Some(p) = st.providers.get(*rp) else {
            continue;
        };
        let resources = p
            .inventories
            .iter()
            .filter(|(rc, _)| v.at_least(27) || asked.contains(rc.as_str()))
            .map(|(rc, inv)| {
                (
                    rc.as_str(),
                    Capacity {
                        capacity: inv.capacity(),
                        used: st.used(rp, rc),
                    },
                )
            })
            .collect();
        provider_summaries.insert(
            *rp,
            Summary {
                resources,
                traits: v.at_least(17).then_some(&p.traits),
                parent_provider_uuid: v.at_least(29).then_some(p.parent.as_deref()),
                root_provider_uuid: v.at_least(29).then_some(p.root.as_str()),
            },
        );
    }
    CandidatesBody {
        allocation_requests,
        provider_summaries,
    }
}

pub async fn candidates(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    RawQuery(raw): RawQuery,
) -> R {
    since(v, 10)?;
    c.admit(&pl, "placement:allocation_candidates:list", None)?;
    let st = pl.snapshot();
    let q = Params::parse(raw.as_deref());
    let req = candidates_request(&st, v, &q)?;
    let found = candidates::candidates(&st, &req);
    Ok(Json(render_candidates(&st, v, &req, &found)).into_response())
}
