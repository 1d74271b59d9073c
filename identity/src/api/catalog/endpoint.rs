//! Endpoints: list, show, create, update, delete.

use super::{endpoint_json, Q};
use crate::api::resources::get_or_404;
use crate::api::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::service::*;
use crate::state::Tx;
use axum::extract::{Path, Query, State as St};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

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
