//! `/allocations` (by consumer, and `POST` for several at once) and `/usages`.

use super::{body, no_content, since, Caller, JsonBytes, Mv, S};
use crate::placement::allocations::{self as allocs, Allocs, ConsumerWrite};
use crate::placement::error::{Code, PlacementError, PlacementResult};
use crate::placement::microversion::Version;
use crate::placement::query::Params;
use crate::placement::schema::{self, py};
use crate::placement::service::{canonical_uuid, Ctx};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

type R = PlacementResult<Response>;

/// The consumer of a `/allocations/{consumer}` path in its stored form: a
/// dashless (or upper-case) uuid names the same consumer, as Placement's
/// UUID field reads it; anything else stays as given, to be refused.
fn consumer_id(path: String) -> String {
    canonical_uuid(&path).unwrap_or(path)
}

pub async fn show(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(consumer): Path<String>,
) -> R {
    let consumer = consumer_id(consumer);
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
pub(super) struct DictBody {
    allocations: BTreeMap<String, DictItem>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    consumer_generation: Option<Option<u64>>,
    #[serde(default)]
    consumer_type: Option<String>,
    /// 1.34: what candidates said; checked, not kept.
    #[serde(default)]
    mappings: Option<Value>,
}

fn required_field(name: &str) -> PlacementError {
    schema::required(name, &[])
}

/// From 1.8 the body names who the consumer is for: both ids, each 1 to
/// 255 characters (Placement's schema).
fn check_owner(v: Version, project_id: Option<&str>, user_id: Option<&str>) -> PlacementResult<()> {
    if !v.at_least(8) {
        return Ok(());
    }
    for (key, id) in [("project_id", project_id), ("user_id", user_id)] {
        let id = id.ok_or_else(|| required_field(key))?;
        if let Some(e) = schema::length(id, 1, 255, &[key]) {
            return Err(e);
        }
    }
    Ok(())
}

/// `mappings` as Placement's schema takes it: not before 1.34, then a
/// non-empty object of request group suffix -> list of provider uuids.
fn check_mappings(v: Version, mappings: Option<&Value>) -> PlacementResult<()> {
    let Some(m) = mappings else { return Ok(()) };
    if !v.at_least(34) {
        return Err(PlacementError::bad(
            "JSON does not validate: Additional properties are not allowed ('mappings' was \
             unexpected)",
        ));
    }
    let bad = |what: String| {
        Err(PlacementError::bad(format!(
            "JSON does not validate: {what}"
        )))
    };
    let Some(groups) = m.as_object() else {
        return bad(format!("{} is not of type 'object'", py(m)));
    };
    if groups.is_empty() {
        return bad("{} does not have enough properties".into());
    }
    for providers in groups.values() {
        let Some(list) = providers.as_array() else {
            return bad(format!("{} is not of type 'array'", py(providers)));
        };
        if let Some(x) = list.iter().find(|x| !x.is_string()) {
            return bad(format!("{} is not of type 'string'", py(x)));
        }
    }
    Ok(())
}

/// One consumer's dict-form body; `allow_empty`: `POST /allocations`, where
/// `{}` has always meant "this consumer holds nothing now".
pub(super) fn dict_write(
    v: Version,
    consumer: String,
    b: DictBody,
    allow_empty: bool,
) -> PlacementResult<ConsumerWrite> {
    check_owner(v, b.project_id.as_deref(), b.user_id.as_deref())?;
    if v.at_least(28) && b.consumer_generation.is_none() {
        return Err(required_field("consumer_generation"));
    }
    check_mappings(v, b.mappings.as_ref())?;
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
                "JSON does not validate: '{rc}' does not match any of the regexes: \
                 '^[A-Z0-9_]+$'\n\nFailed validating 'additionalProperties' in schema \
                 (resources)"
            )));
        }
        let rp = canonical_uuid(&rp).ok_or_else(|| {
            PlacementError::bad(format!(
                "JSON does not validate: '{rp}' does not match any of the regexes: \
                 '^[0-9a-fA-F-]{{36}}$'\n\nFailed validating 'additionalProperties' in \
                 schema['properties']['allocations']"
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
        return Err(schema::invalid(
            "[] is too short",
            "minItems",
            &["allocations"],
        ));
    }
    check_owner(v, l.project_id.as_deref(), l.user_id.as_deref())?;
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
    let consumer = consumer_id(consumer);
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
        return Err(PlacementError::not_found(
            "The resource could not be found.",
        ));
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
    let consumer = consumer_id(consumer);
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
    // Placement's query schema: both ids are 1 to 255 characters.
    for key in ["project_id", "user_id"] {
        if let Some(id) = q.one(key)? {
            let rule = match id.chars().count() {
                0 => Some(("is too short", "minLength")),
                256.. => Some(("is too long", "maxLength")),
                _ => None,
            };
            if let Some((said, validator)) = rule {
                return Err(PlacementError::bad_query(format!(
                    "Invalid query string parameters: '{id}' {said}\n\nFailed validating \
                     '{validator}' in schema['properties']['{key}']"
                )));
            }
        }
    }
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
