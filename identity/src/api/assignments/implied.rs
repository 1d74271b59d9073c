//! Implied roles (role inference rules).

use super::role::{role_ref, role_target};
use crate::api::resources::get_or_404;
use crate::api::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::service::*;
use crate::state::State;
use axum::extract::{Path, State as St};
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;

fn inference_json(id: &Identity, state: &State, prior: &Role) -> Value {
    let implies: Vec<Value> = state
        .implied
        .iter()
        .filter(|(p, _)| *p == prior.id)
        .filter_map(|(_, i)| state.roles.get(i))
        .map(|r| role_ref(id, r))
        .collect();
    json!({"prior_role": role_ref(id, prior), "implies": implies})
}

pub async fn list_implied(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(rid): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let prior = get_or_404(&state.roles, "role", &rid)?;
    id.authorize(
        &ctx,
        "identity:list_implied_roles",
        &json!({"target": {"role": role_target(prior)}}),
    )?;
    Ok(axum::Json(json!({
        "role_inference": inference_json(&id, &state, prior),
        "links": self_link(&id, &format!("roles/{rid}/implies")),
    })))
}

pub async fn role_inferences(St(id): St<Arc<Identity>>, Auth(ctx): Auth) -> JsonResult {
    id.authorize(&ctx, "identity:list_role_inference_rules", &json!({}))?;
    let state = id.snapshot();
    let mut priors: Vec<&String> = state.implied.iter().map(|(p, _)| p).collect();
    priors.dedup();
    let items: Vec<Value> = priors
        .into_iter()
        .filter_map(|p| state.roles.get(p))
        .map(|p| inference_json(&id, &state, p))
        .collect();
    Ok(axum::Json(
        json!({"role_inferences": items, "links": self_link(&id, "role_inferences")}),
    ))
}

fn one_inference(id: &Identity, state: &State, prior: &str, implied: &str) -> ApiResult<Value> {
    let p = get_or_404(&state.roles, "role", prior)?;
    let i = get_or_404(&state.roles, "role", implied)?;
    Ok(json!({
        "role_inference": {"prior_role": role_ref(id, p), "implies": role_ref(id, i)},
        "links": self_link(id, &format!("roles/{prior}/implies/{implied}")),
    }))
}

pub async fn create_implied(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path((prior, implied)): Path<(String, String)>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let state = id.snapshot();
    let body = one_inference(&id, &state, &prior, &implied)?;
    id.authorize(
        &ctx,
        "identity:create_implied_role",
        &json!({"target": {"prior_role_id": prior, "implied_role_id": implied}}),
    )?;
    if state
        .roles
        .get(&implied)
        .is_some_and(|r| r.name == "admin" && r.domain_id.is_none())
    {
        return Err(IdentityError::Forbidden("admin may not be an implied role.".into()).into());
    }
    if prior == implied || state.expand_implied([implied.clone()]).contains(&prior) {
        return Err(IdentityError::Forbidden("That implication would make a cycle.".into()).into());
    }
    id.write_async(move |tx| {
        tx.add_implied(&prior, &implied);
        Ok(())
    })
    .await?;
    created(body)
}

pub async fn get_implied(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path((prior, implied)): Path<(String, String)>,
) -> JsonResult {
    let state = id.snapshot();
    let body = one_inference(&id, &state, &prior, &implied)?;
    id.authorize(
        &ctx,
        "identity:get_implied_role",
        &json!({"target": {"prior_role_id": prior, "implied_role_id": implied}}),
    )?;
    if !state.implied.contains(&(prior.clone(), implied.clone())) {
        return Err(
            IdentityError::not_found("implied role", format!("{prior} implies {implied}")).into(),
        );
    }
    Ok(axum::Json(body))
}

pub async fn check_implied(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path((prior, implied)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let state = id.snapshot();
    one_inference(&id, &state, &prior, &implied)?;
    id.authorize(
        &ctx,
        "identity:check_implied_role",
        &json!({"target": {"prior_role_id": prior, "implied_role_id": implied}}),
    )?;
    if !state.implied.contains(&(prior.clone(), implied.clone())) {
        return Err(
            IdentityError::not_found("implied role", format!("{prior} implies {implied}")).into(),
        );
    }
    Ok(NO_CONTENT)
}

pub async fn delete_implied(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path((prior, implied)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let state = id.snapshot();
    one_inference(&id, &state, &prior, &implied)?;
    id.authorize(
        &ctx,
        "identity:delete_implied_role",
        &json!({"target": {"prior_role_id": prior, "implied_role_id": implied}}),
    )?;
    id.write_async(move |tx| {
        if !tx.state.implied.contains(&(prior.clone(), implied.clone())) {
            return Err(IdentityError::not_found(
                "implied role",
                format!("{prior} implies {implied}"),
            ));
        }
        tx.remove_implied(&prior, &implied);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}
