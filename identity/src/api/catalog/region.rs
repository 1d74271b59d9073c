//! Regions: list, show, create (POST or PUT with an id), update, delete.

use super::{region_json, Q};
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
