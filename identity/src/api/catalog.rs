//! Service catalog: regions, services, endpoints.

use super::resources::get_or_404;
use super::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::service::*;
use crate::state::Tx;
use axum::extract::{Path, Query, State as St};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

type Q = Query<HashMap<String, String>>;

fn region_json(id: &Identity, r: &Region) -> Value {
    json!({"id": r.id, "description": r.description, "parent_region_id": r.parent_region_id,
           "links": self_link(id, &format!("regions/{}", r.id))})
}

fn service_json(id: &Identity, s: &Service) -> Value {
    json!({"id": s.id, "type": s.service_type, "name": s.name, "description": s.description, "enabled": s.enabled,
           "links": self_link(id, &format!("services/{}", s.id))})
}

fn endpoint_json(id: &Identity, e: &Endpoint) -> Value {
    json!({"id": e.id, "interface": e.interface, "url": e.url, "service_id": e.service_id,
           "region_id": e.region_id, "region": e.region_id, "enabled": e.enabled,
           "links": self_link(id, &format!("endpoints/{}", e.id))})
}

// ----------------------------------------------------------------- regions

#[derive(Deserialize, Clone)]
struct RegionBody {
    id: Option<String>,
    description: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    parent_region_id: Option<Option<String>>,
}

pub async fn list_regions(St(id): St<Arc<Identity>>, Auth(ctx): Auth, Query(q): Q) -> JsonResult {
    id.authorize(&ctx, "identity:list_regions", &json!({}))?;
    let state = id.snapshot();
    let items = state
        .regions
        .values()
        .filter(|r| {
            q.get("parent_region_id")
                .is_none_or(|p| r.parent_region_id.as_ref() == Some(p))
        })
        .map(|r| region_json(&id, r))
        .collect();
    Ok(axum::Json(list_body(&id, "regions", "regions", items)))
}

pub async fn get_region(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(rid): Path<String>,
) -> JsonResult {
    id.authorize(&ctx, "identity:get_region", &json!({}))?;
    let state = id.snapshot();
    let r = get_or_404(&state.regions, "region", &rid)?;
    Ok(axum::Json(json!({"region": region_json(&id, r)})))
}

async fn make_region(
    id: Arc<Identity>,
    ctx: AuthContext,
    body: Value,
    path_id: Option<String>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let sec = section(&body, "region")?;
    let b: RegionBody = typed(sec, "region")?;
    id.authorize(
        &ctx,
        "identity:create_region",
        &json!({"target": {"region": sec}}),
    )?;
    if path_id.is_some() && b.id.is_some() && path_id != b.id {
        return Err(IdentityError::bad(
            "Invalid input for field 'region.id': does not match the URL.",
        )
        .into());
    }
    let r = Region {
        id: path_id.or(b.id).unwrap_or_else(new_id),
        description: b.description.unwrap_or_default(),
        parent_region_id: b.parent_region_id.flatten(),
    };
    check_name("region.id", &r.id)?;
    let r2 = r.clone();
    id.write_async(move |tx| {
        let r2 = r2.clone();
        if tx.state.regions.contains_key(&r2.id) {
            return Err(IdentityError::conflict(format!("Duplicate ID, {}.", r2.id)));
        }
        if let Some(p) = &r2.parent_region_id {
            if !tx.state.regions.contains_key(p) {
                return Err(IdentityError::not_found("region", p));
            }
        }
        tx.put_region(r2);
        Ok(())
    })
    .await?;
    created(json!({"region": region_json(&id, &r)}))
}

pub async fn create_region(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    make_region(id, ctx, body, None).await
}

pub async fn put_region(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(rid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    make_region(id, ctx, body, Some(rid)).await
}

pub async fn update_region(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(rid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> JsonResult {
    let b: RegionBody = typed(section(&body, "region")?, "region")?;
    id.authorize(&ctx, "identity:update_region", &json!({}))?;
    let r = id.write_async(move |tx| {
        let b = b.clone();
        let mut r = tx.state.regions.get(&rid).cloned().ok_or_else(|| IdentityError::not_found("region", &rid))?;
        if let Some(d) = b.description {
            r.description = d;
        }
        if let Some(p) = b.parent_region_id {
            if let Some(p) = &p {
                if !tx.state.regions.contains_key(p) {
                    return Err(IdentityError::not_found("region", p));
                }
                // Walking up from the new parent must not reach this region.
                let mut cur = Some(p.clone());
                while let Some(c) = cur {
                    if c == rid {
                        return Err(IdentityError::bad("Invalid input for field 'region.parent_region_id': would make a cycle."));
                    }
                    cur = tx.state.regions.get(&c).and_then(|x| x.parent_region_id.clone());
                }
            }
            r.parent_region_id = p;
        }
        tx.put_region(r.clone());
        Ok(r)
    }).await?;
    Ok(axum::Json(json!({"region": region_json(&id, &r)})))
}

pub async fn delete_region(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(rid): Path<String>,
) -> ApiResult<StatusCode> {
    id.authorize(&ctx, "identity:delete_region", &json!({}))?;
    id.write_async(move |tx| {
        get_or_404(&tx.state.regions, "region", &rid).map_err(|e| e.0)?;
        if tx
            .state
            .regions
            .values()
            .any(|r| r.parent_region_id.as_deref() == Some(&rid))
        {
            return Err(IdentityError::Forbidden(
                "Cannot delete a region that has child regions.".into(),
            ));
        }
        tx.del_region(&rid);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}

// ---------------------------------------------------------------- services

#[derive(Deserialize, Clone)]
struct ServiceBody {
    #[serde(rename = "type")]
    service_type: Option<String>,
    name: Option<String>,
    description: Option<String>,
    enabled: Option<bool>,
}

pub async fn list_services(St(id): St<Arc<Identity>>, Auth(ctx): Auth, Query(q): Q) -> JsonResult {
    id.authorize(&ctx, "identity:list_services", &json!({}))?;
    let state = id.snapshot();
    let items = state
        .services
        .values()
        .filter(|s| q.get("type").is_none_or(|t| *t == s.service_type))
        .filter(|s| q.get("name").is_none_or(|n| Some(n) == s.name.as_ref()))
        .map(|s| service_json(&id, s))
        .collect();
    Ok(axum::Json(list_body(&id, "services", "services", items)))
}

pub async fn get_service(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(sid): Path<String>,
) -> JsonResult {
    id.authorize(&ctx, "identity:get_service", &json!({}))?;
    let state = id.snapshot();
    Ok(axum::Json(
        json!({"service": service_json(&id, get_or_404(&state.services, "service", &sid)?)}),
    ))
}

pub async fn create_service(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let b: ServiceBody = typed(section(&body, "service")?, "service")?;
    id.authorize(&ctx, "identity:create_service", &json!({}))?;
    let t = b
        .service_type
        .ok_or_else(|| IdentityError::bad("Invalid input for field 'service.type': missing."))?;
    check_name("service.type", &t)?;
    let s = Service {
        id: new_id(),
        service_type: t,
        name: b.name,
        description: b.description,
        enabled: b.enabled.unwrap_or(true),
    };
    let s2 = s.clone();
    id.write_async(move |tx| {
        let s2 = s2.clone();
        tx.put_service(s2);
        Ok(())
    })
    .await?;
    created(json!({"service": service_json(&id, &s)}))
}

pub async fn update_service(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(sid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> JsonResult {
    let b: ServiceBody = typed(section(&body, "service")?, "service")?;
    id.authorize(&ctx, "identity:update_service", &json!({}))?;
    let s = id
        .write_async(move |tx| {
            let b = b.clone();
            let mut s = tx
                .state
                .services
                .get(&sid)
                .cloned()
                .ok_or_else(|| IdentityError::not_found("service", &sid))?;
            if let Some(t) = b.service_type {
                s.service_type = t;
            }
            if b.name.is_some() {
                s.name = b.name;
            }
            if b.description.is_some() {
                s.description = b.description;
            }
            if let Some(e) = b.enabled {
                s.enabled = e;
            }
            tx.put_service(s.clone());
            Ok(s)
        })
        .await?;
    Ok(axum::Json(json!({"service": service_json(&id, &s)})))
}

pub async fn delete_service(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(sid): Path<String>,
) -> ApiResult<StatusCode> {
    id.authorize(&ctx, "identity:delete_service", &json!({}))?;
    id.write_async(move |tx| {
        get_or_404(&tx.state.services, "service", &sid).map_err(|e| e.0)?;
        let eps: Vec<String> = tx
            .state
            .endpoints
            .values()
            .filter(|e| e.service_id == sid)
            .map(|e| e.id.clone())
            .collect();
        for e in eps {
            tx.del_endpoint(&e);
        }
        tx.del_service(&sid);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}

// --------------------------------------------------------------- endpoints

#[derive(Deserialize, Clone)]
struct EndpointBody {
    interface: Option<String>,
    url: Option<String>,
    service_id: Option<String>,
    region_id: Option<String>,
    region: Option<String>,
    enabled: Option<bool>,
}

fn check_interface(i: &str) -> ApiResult<()> {
    if !matches!(i, "public" | "internal" | "admin") {
        return Err(IdentityError::bad(
            "Invalid input for field 'endpoint.interface': must be public, internal or admin.",
        )
        .into());
    }
    Ok(())
}

fn check_url(u: &str) -> ApiResult<()> {
    if u.trim().is_empty() || u.len() > 225 {
        return Err(IdentityError::bad(
            "Invalid input for field 'endpoint.url': must be 1 to 225 characters.",
        )
        .into());
    }
    Ok(())
}

/// The region an endpoint names. `region_id` must name an existing region
/// (400 otherwise). The legacy `region` attribute, used only when `region_id`
/// is absent, creates the region when it does not exist yet: Keystone keeps
/// this for clients that still write endpoints the v2 way (tempest does).
fn endpoint_region(
    tx: &mut Tx,
    region_id: Option<String>,
    legacy_region: Option<String>,
) -> Result<Option<String>, IdentityError> {
    match (region_id, legacy_region) {
        (Some(r), _) => {
            if !tx.state.regions.contains_key(&r) {
                return Err(IdentityError::bad(format!(
                    "Invalid input for field 'endpoint.region_id': no region {r}."
                )));
            }
            Ok(Some(r))
        }
        (None, Some(r)) => {
            if !tx.state.regions.contains_key(&r) {
                tx.put_region(Region {
                    id: r.clone(),
                    description: String::new(),
                    parent_region_id: None,
                });
            }
            Ok(Some(r))
        }
        (None, None) => Ok(None),
    }
}

pub async fn list_endpoints(St(id): St<Arc<Identity>>, Auth(ctx): Auth, Query(q): Q) -> JsonResult {
    id.authorize(&ctx, "identity:list_endpoints", &json!({}))?;
    let state = id.snapshot();
    let items = state
        .endpoints
        .values()
        .filter(|e| q.get("service_id").is_none_or(|s| *s == e.service_id))
        .filter(|e| q.get("interface").is_none_or(|i| *i == e.interface))
        .filter(|e| {
            q.get("region_id")
                .is_none_or(|r| Some(r) == e.region_id.as_ref())
        })
        .map(|e| endpoint_json(&id, e))
        .collect();
    Ok(axum::Json(list_body(&id, "endpoints", "endpoints", items)))
}

pub async fn get_endpoint(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(eid): Path<String>,
) -> JsonResult {
    id.authorize(&ctx, "identity:get_endpoint", &json!({}))?;
    let state = id.snapshot();
    Ok(axum::Json(
        json!({"endpoint": endpoint_json(&id, get_or_404(&state.endpoints, "endpoint", &eid)?)}),
    ))
}

pub async fn create_endpoint(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let b: EndpointBody = typed(section(&body, "endpoint")?, "endpoint")?;
    id.authorize(&ctx, "identity:create_endpoint", &json!({}))?;
    let interface = b.interface.ok_or_else(|| {
        IdentityError::bad("Invalid input for field 'endpoint.interface': missing.")
    })?;
    check_interface(&interface)?;
    let url = b
        .url
        .ok_or_else(|| IdentityError::bad("Invalid input for field 'endpoint.url': missing."))?;
    check_url(&url)?;
    let service_id = b.service_id.ok_or_else(|| {
        IdentityError::bad("Invalid input for field 'endpoint.service_id': missing.")
    })?;
    let e = Endpoint {
        id: new_id(),
        service_id,
        interface,
        url,
        region_id: None,
        enabled: b.enabled.unwrap_or(true),
    };
    let (region_id, legacy_region) = (b.region_id, b.region);
    if let Some(r) = legacy_region.as_deref().filter(|_| region_id.is_none()) {
        check_name("endpoint.region", r)?;
    }
    let e = id
        .write_async(move |tx| {
            let mut e = e.clone();
            let legacy_region = legacy_region.clone();
            let region_id = region_id.clone();
            if !tx.state.services.contains_key(&e.service_id) {
                return Err(IdentityError::bad(format!(
                    "Invalid input for field 'endpoint.service_id': no service {}.",
                    e.service_id
                )));
            }
            e.region_id = endpoint_region(tx, region_id, legacy_region)?;
            tx.put_endpoint(e.clone());
            Ok(e)
        })
        .await?;
    created(json!({"endpoint": endpoint_json(&id, &e)}))
}

pub async fn update_endpoint(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(eid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> JsonResult {
    let b: EndpointBody = typed(section(&body, "endpoint")?, "endpoint")?;
    id.authorize(&ctx, "identity:update_endpoint", &json!({}))?;
    if let Some(i) = &b.interface {
        check_interface(i)?;
    }
    if let Some(u) = &b.url {
        check_url(u)?;
    }
    if let Some(r) = b.region.as_deref().filter(|_| b.region_id.is_none()) {
        check_name("endpoint.region", r)?;
    }
    let e = id
        .write_async(move |tx| {
            let b = b.clone();
            let mut e = tx
                .state
                .endpoints
                .get(&eid)
                .cloned()
                .ok_or_else(|| IdentityError::not_found("endpoint", &eid))?;
            if let Some(s) = b.service_id {
                if !tx.state.services.contains_key(&s) {
                    return Err(IdentityError::bad(format!(
                        "Invalid input for field 'endpoint.service_id': no service {s}."
                    )));
                }
                e.service_id = s;
            }
            if let Some(r) = endpoint_region(tx, b.region_id, b.region)? {
                e.region_id = Some(r);
            }
            if let Some(i) = b.interface {
                e.interface = i;
            }
            if let Some(u) = b.url {
                e.url = u;
            }
            if let Some(en) = b.enabled {
                e.enabled = en;
            }
            tx.put_endpoint(e.clone());
            Ok(e)
        })
        .await?;
    Ok(axum::Json(json!({"endpoint": endpoint_json(&id, &e)})))
}

pub async fn delete_endpoint(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(eid): Path<String>,
) -> ApiResult<StatusCode> {
    id.authorize(&ctx, "identity:delete_endpoint", &json!({}))?;
    id.write_async(move |tx| {
        get_or_404(&tx.state.endpoints, "endpoint", &eid).map_err(|e| e.0)?;
        tx.del_endpoint(&eid);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}
