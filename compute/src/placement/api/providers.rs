//! `/resource_providers` and everything under a provider: inventories,
//! traits, aggregates, usages, allocations.

use super::{body, created_at, no_content, render, since, Base, Caller, JsonBytes, Mv, S};
use crate::placement::error::{PlacementError, PlacementResult};
use crate::placement::inventories::{self, SetInventories, SetInventory};
use crate::placement::microversion::Version;
use crate::placement::providers::{self, CreateProvider, ListFilter, UpdateProvider};
use crate::placement::query::{self, Params};
use crate::placement::service::{canonical_uuid, provider, Ctx};
use crate::placement::{aggregates, allocations as allocs, traits};
use axum::extract::{Path, RawQuery};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

type R = PlacementResult<Response>;

fn unexpected(key: &str) -> PlacementError {
    PlacementError::bad_query(format!(
        "Invalid query string parameters: Additional properties are not allowed ('{key}' was \
         unexpected)"
    ))
}

/// The filters of `GET /resource_providers` at microversion `v`.
fn list_filter(
    st: &crate::placement::State,
    v: Version,
    q: &Params,
) -> PlacementResult<ListFilter> {
    for k in q.keys() {
        let from = match k {
            "name" | "uuid" => 0,
            "member_of" => 3,
            "resources" => 4,
            "in_tree" => 14,
            "required" => 18,
            _ => return Err(unexpected(k)),
        };
        if !v.at_least(from) {
            return Err(unexpected(k));
        }
    }
    let uuid_of = |key: &str, s: &str| {
        canonical_uuid(s).ok_or_else(|| {
            PlacementError::bad_query(format!(
                "Invalid query string parameters: '{s}' is not a 'uuid' ({key})"
            ))
        })
    };
    Ok(ListFilter {
        name: q.one("name")?.map(str::to_string),
        uuid: q.one("uuid")?.map(|u| uuid_of("uuid", u)).transpose()?,
        in_tree: q
            .one("in_tree")?
            .map(|u| uuid_of("in_tree", u))
            .transpose()?,
        member_of: query::member_of(v, q.all("member_of"))?,
        // Before 1.39 a repeated `required` is one value, the last given.
        required: if q.all("required").next().is_none() {
            Default::default()
        } else if v.at_least(39) {
            query::required(st, v, "required", q.all("required"))?
        } else {
            query::required(st, v, "required", q.all("required").last())?
        },
        resources: match q.one("resources")? {
            Some(r) => query::resources(st, "resources", r)?,
            None => Default::default(),
        },
    })
}

pub async fn list(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Base(base): Base,
    RawQuery(raw): RawQuery,
) -> R {
    c.admit(&pl, "placement:resource_providers:list", None)?;
    let st = pl.snapshot();
    let q = Params::parse(raw.as_deref());
    let f = list_filter(&st, v, &q)?;
    let list: Vec<Value> = providers::list(&st, &f)
        .into_iter()
        .map(|p| render::provider(&base, p, v))
        .collect();
    Ok(Json(json!({"resource_providers": list})).into_response())
}

pub async fn create(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Base(base): Base,
    JsonBytes(b): JsonBytes,
) -> R {
    c.admit(&pl, "placement:resource_providers:create", None)?;
    let req: CreateProvider = body(&b)?;
    let p = pl
        .write_async(Ctx { version: v }, move |st, env, ctx| {
            providers::create(st, env, ctx, &req)
        })
        .await?;
    let location = render::provider_url(&base, &p.uuid);
    if v.at_least(20) {
        let mut r = Json(render::provider(&base, &p, v)).into_response();
        if let Ok(h) = axum::http::HeaderValue::from_str(&location) {
            r.headers_mut().insert(axum::http::header::LOCATION, h);
        }
        return Ok(r);
    }
    Ok(created_at(&location))
}

pub async fn show(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Base(base): Base,
    Path(uuid): Path<String>,
) -> R {
    c.admit(&pl, "placement:resource_providers:show", None)?;
    let st = pl.snapshot();
    Ok(Json(render::provider(&base, provider(&st, &uuid)?, v)).into_response())
}

pub async fn update(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Base(base): Base,
    Path(uuid): Path<String>,
    JsonBytes(b): JsonBytes,
) -> R {
    c.admit(&pl, "placement:resource_providers:update", None)?;
    let req: UpdateProvider = body(&b)?;
    let p = pl
        .write_async(Ctx { version: v }, move |st, env, ctx| {
            providers::update(st, env, ctx, &uuid, &req)
        })
        .await?;
    Ok(Json(render::provider(&base, &p, v)).into_response())
}

pub async fn delete(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(uuid): Path<String>,
) -> R {
    c.admit(&pl, "placement:resource_providers:delete", None)?;
    pl.write_async(Ctx { version: v }, move |st, env, ctx| {
        providers::delete(st, env, ctx, &uuid)
    })
    .await?;
    Ok(no_content())
}

pub async fn inventories(axum::extract::State(pl): S, c: Caller, Path(uuid): Path<String>) -> R {
    c.admit(&pl, "placement:resource_providers:inventories:list", None)?;
    let st = pl.snapshot();
    Ok(Json(render::inventories(provider(&st, &uuid)?)).into_response())
}

pub async fn set_inventories(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(uuid): Path<String>,
    JsonBytes(b): JsonBytes,
) -> R {
    c.admit(&pl, "placement:resource_providers:inventories:update", None)?;
    let req: SetInventories = body(&b)?;
    let p = pl
        .write_async(Ctx { version: v }, move |st, env, ctx| {
            inventories::set_all(st, env, ctx, &uuid, &req)
        })
        .await?;
    Ok(Json(render::inventories(&p)).into_response())
}

pub async fn create_inventory(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Base(base): Base,
    Path(uuid): Path<String>,
    JsonBytes(b): JsonBytes,
) -> R {
    c.admit(&pl, "placement:resource_providers:inventories:create", None)?;
    let req: SetInventory = body(&b)?;
    let (rc, p) = pl
        .write_async(Ctx { version: v }, move |st, env, ctx| {
            inventories::create_one(st, env, ctx, &uuid, &req)
        })
        .await?;
    let body = render::one_inventory(&p, &rc)
        .ok_or_else(|| PlacementError::Internal("inventory vanished".into()))?;
    let location = format!("{}/inventories/{rc}", render::provider_url(&base, &p.uuid));
    let mut r = (axum::http::StatusCode::CREATED, Json(body)).into_response();
    if let Ok(h) = axum::http::HeaderValue::from_str(&location) {
        r.headers_mut().insert(axum::http::header::LOCATION, h);
    }
    Ok(r)
}

pub async fn delete_inventories(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(uuid): Path<String>,
) -> R {
    if !v.at_least(5) {
        return Err(PlacementError::MethodNotAllowed);
    }
    c.admit(&pl, "placement:resource_providers:inventories:delete", None)?;
    pl.write_async(Ctx { version: v }, move |st, env, ctx| {
        inventories::delete_all(st, env, ctx, &uuid)
    })
    .await?;
    Ok(no_content())
}

pub async fn inventory(
    axum::extract::State(pl): S,
    c: Caller,
    Path((uuid, rc)): Path<(String, String)>,
) -> R {
    c.admit(&pl, "placement:resource_providers:inventories:show", None)?;
    let st = pl.snapshot();
    let p = provider(&st, &uuid)?;
    let v = render::one_inventory(p, &rc).ok_or_else(|| {
        PlacementError::not_found(format!("No inventory of class {rc} for {uuid}"))
    })?;
    Ok(Json(v).into_response())
}

pub async fn set_inventory(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path((uuid, rc)): Path<(String, String)>,
    JsonBytes(b): JsonBytes,
) -> R {
    c.admit(&pl, "placement:resource_providers:inventories:update", None)?;
    let req: SetInventory = body(&b)?;
    let rc2 = rc.clone();
    let p = pl
        .write_async(Ctx { version: v }, move |st, env, ctx| {
            inventories::set_one(st, env, ctx, &uuid, &rc2, &req)
        })
        .await?;
    let body = render::one_inventory(&p, &rc)
        .ok_or_else(|| PlacementError::Internal("inventory vanished".into()))?;
    Ok(Json(body).into_response())
}

pub async fn delete_inventory(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path((uuid, rc)): Path<(String, String)>,
) -> R {
    c.admit(&pl, "placement:resource_providers:inventories:delete", None)?;
    pl.write_async(Ctx { version: v }, move |st, env, ctx| {
        inventories::delete_one(st, env, ctx, &uuid, &rc)
    })
    .await?;
    Ok(no_content())
}

pub async fn traits(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(uuid): Path<String>,
) -> R {
    since(v, 6)?;
    c.admit(&pl, "placement:resource_providers:traits:list", None)?;
    let st = pl.snapshot();
    Ok(Json(render::provider_traits(provider(&st, &uuid)?)).into_response())
}

pub async fn set_traits(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(uuid): Path<String>,
    JsonBytes(b): JsonBytes,
) -> R {
    since(v, 6)?;
    c.admit(&pl, "placement:resource_providers:traits:update", None)?;
    let req: traits::SetTraits = body(&b)?;
    let p = pl
        .write_async(Ctx { version: v }, move |st, env, ctx| {
            traits::set_provider(st, env, ctx, &uuid, &req)
        })
        .await?;
    Ok(Json(render::provider_traits(&p)).into_response())
}

pub async fn clear_traits(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(uuid): Path<String>,
) -> R {
    since(v, 6)?;
    c.admit(&pl, "placement:resource_providers:traits:delete", None)?;
    pl.write_async(Ctx { version: v }, move |st, env, ctx| {
        traits::clear_provider(st, env, ctx, &uuid)
    })
    .await?;
    Ok(no_content())
}

pub async fn aggregates(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(uuid): Path<String>,
) -> R {
    since(v, 1)?;
    c.admit(&pl, "placement:resource_providers:aggregates:list", None)?;
    let st = pl.snapshot();
    Ok(Json(render::provider_aggregates(provider(&st, &uuid)?, v)).into_response())
}

/// The aggregates body from 1.19.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetAggregates {
    aggregates: Vec<String>,
    resource_provider_generation: u64,
}

pub async fn set_aggregates(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(uuid): Path<String>,
    JsonBytes(b): JsonBytes,
) -> R {
    since(v, 1)?;
    c.admit(&pl, "placement:resource_providers:aggregates:update", None)?;
    // An unknown provider is a 404 before its body is read, as Placement.
    provider(&pl.snapshot(), &uuid)?;
    let (list, generation) = if v.at_least(19) {
        let r: SetAggregates = body(&b)?;
        (r.aggregates, Some(r.resource_provider_generation))
    } else {
        (body::<Vec<String>>(&b)?, None)
    };
    let p = pl
        .write_async(Ctx { version: v }, move |st, env, ctx| {
            aggregates::set(st, env, ctx, &uuid, &list, generation)
        })
        .await?;
    Ok(Json(render::provider_aggregates(&p, v)).into_response())
}

pub async fn usages(axum::extract::State(pl): S, c: Caller, Path(uuid): Path<String>) -> R {
    c.admit(&pl, "placement:resource_providers:usages", None)?;
    let st = pl.snapshot();
    let p = provider(&st, &uuid)?;
    Ok(Json(json!({
        "usages": allocs::provider_usages(&st, &uuid),
        "resource_provider_generation": p.generation,
    }))
    .into_response())
}

pub async fn allocations(axum::extract::State(pl): S, c: Caller, Path(uuid): Path<String>) -> R {
    c.admit(&pl, "placement:resource_providers:allocations:list", None)?;
    let st = pl.snapshot();
    let p = provider(&st, &uuid)?;
    let mut out = Map::new();
    for consumer in st.consumers_of(&uuid) {
        if let Some(resources) = consumer.allocations.get(&uuid) {
            out.insert(consumer.uuid.clone(), json!({"resources": resources}));
        }
    }
    Ok(Json(json!({
        "allocations": out,
        "resource_provider_generation": p.generation,
    }))
    .into_response())
}
