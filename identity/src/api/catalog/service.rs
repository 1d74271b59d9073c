//! Catalog services: list, show, create, update, delete.

use super::{service_json, Q};
use crate::api::resources::get_or_404;
use crate::api::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::service::*;
use axum::extract::{Path, Query, State as St};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

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
