//! Domains: list, show, create, update, delete.

use super::{check_tags, domain_filter_ok, domain_json, get_or_404, q_bool, Q};
use crate::api::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::ops;
use crate::service::*;
use axum::extract::{Path, Query, State as St};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize, Clone)]
struct DomainBody {
    name: Option<String>,
    description: Option<String>,
    enabled: Option<bool>,
    tags: Option<Vec<String>>,
    explicit_domain_id: Option<String>,
}
const DOMAIN_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "enabled",
    "tags",
    "explicit_domain_id",
    "options",
    "links",
];

pub async fn list_domains(St(id): St<Arc<Identity>>, Auth(ctx): Auth, Query(q): Q) -> JsonResult {
    // Keystone's list filters and the target a domain-scoped caller adds.
    let scope = ctx.domain_id.as_ref().map(|d| json!({"domain": {"id": d}}));
    let target = list_target(scope, &q, &["name", "enabled"]);
    id.authorize(&ctx, "identity:list_domains", &target)?;
    let enabled = q_bool(&q, "enabled")?;
    let state = id.snapshot();
    let items = state
        .domains
        .values()
        // A domain-scoped caller sees their own domain only (as Keystone).
        .filter(|d| domain_filter_ok(&ctx, &d.id))
        .filter(|d| q.get("name").is_none_or(|n| *n == d.name))
        .filter(|d| enabled.is_none_or(|e| e == d.enabled))
        .map(|d| domain_json(&id, d))
        .collect();
    Ok(axum::Json(list_body(&id, "domains", "domains", items)))
}

pub async fn get_domain(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(did): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let d = get_or_404(&state.domains, "domain", &did)?;
    id.authorize(
        &ctx,
        "identity:get_domain",
        &json!({"target": {"domain": {"id": d.id, "name": d.name}}}),
    )?;
    Ok(axum::Json(json!({"domain": domain_json(&id, d)})))
}

pub async fn create_domain(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let sec = section(&body, "domain")?;
    let b: DomainBody = typed(sec, "domain")?;
    id.authorize(
        &ctx,
        "identity:create_domain",
        &json!({"target": {"domain": sec}}),
    )?;
    let name = b
        .name
        .ok_or_else(|| IdentityError::bad("Invalid input for field 'domain.name': missing."))?;
    check_resource_name("domain.name", &name)?;
    let tags = b.tags.unwrap_or_default();
    check_tags(&tags)?;
    let d = Domain {
        id: b.explicit_domain_id.unwrap_or_else(new_id),
        name,
        description: b.description.unwrap_or_default(),
        enabled: b.enabled.unwrap_or(true),
        tags,
        extra: extras(sec, DOMAIN_KEYS),
    };
    let d2 = d.clone();
    id.write_async(move |tx| {
        let d2 = d2.clone();
        if tx.state.domains.values().any(|x| x.name.eq_ignore_ascii_case(&d2.name)) || tx.state.domains.contains_key(&d2.id) {
            return Err(IdentityError::conflict(format!("Conflict occurred attempting to store domain - Duplicate entry found with name {}.", d2.name)));
        }
        tx.put_domain(d2);
        Ok(())
    }).await?;
    created(json!({"domain": domain_json(&id, &d)}))
}

pub async fn update_domain(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(did): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> JsonResult {
    let sec = section(&body, "domain")?;
    let b: DomainBody = typed(sec, "domain")?;
    if sec
        .get("id")
        .is_some_and(|v| v.as_str() != Some(did.as_str()))
    {
        return Err(IdentityError::bad(
            "Invalid input for field 'domain.id': cannot change the id.",
        )
        .into());
    }
    {
        let state = id.snapshot();
        let d = get_or_404(&state.domains, "domain", &did)?;
        id.authorize(
            &ctx,
            "identity:update_domain",
            &json!({"target": {"domain": {"id": d.id, "name": d.name}}}),
        )?;
    }
    if let Some(n) = &b.name {
        check_resource_name("domain.name", n)?;
    }
    if let Some(t) = &b.tags {
        check_tags(t)?;
    }
    let ex = extras(sec, DOMAIN_KEYS);
    let d = id
        .write_async(move |tx| {
            let b = b.clone();
            let ex = ex.clone();
            let mut d = tx
                .state
                .domains
                .get(&did)
                .cloned()
                .ok_or_else(|| IdentityError::not_found("domain", &did))?;
            if let Some(n) = b.name {
                if tx
                    .state
                    .domains
                    .values()
                    .any(|x| x.id != did && x.name.eq_ignore_ascii_case(&n))
                {
                    return Err(IdentityError::conflict(format!(
                        "Duplicate entry found with name {n}."
                    )));
                }
                d.name = n;
            }
            if let Some(x) = b.description {
                d.description = x;
            }
            if let Some(e) = b.enabled {
                d.enabled = e;
            }
            if let Some(t) = b.tags {
                d.tags = t;
            }
            d.extra.extend(ex);
            tx.put_domain(d.clone());
            Ok(d)
        })
        .await?;
    Ok(axum::Json(json!({"domain": domain_json(&id, &d)})))
}

pub async fn delete_domain(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(did): Path<String>,
) -> ApiResult<StatusCode> {
    {
        let state = id.snapshot();
        let d = get_or_404(&state.domains, "domain", &did)?;
        id.authorize(
            &ctx,
            "identity:delete_domain",
            &json!({"target": {"domain": {"id": d.id, "name": d.name}}}),
        )?;
        if d.enabled {
            return Err(IdentityError::Forbidden(
                "Cannot delete a domain that is enabled, please disable it first.".into(),
            )
            .into());
        }
        if did == DEFAULT_DOMAIN_ID {
            return Err(
                IdentityError::Forbidden("The default domain cannot be deleted.".into()).into(),
            );
        }
    }
    let now = now_micros();
    id.write_async(move |tx| {
        ops::delete_domain(tx, &did, now);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}
