//! Application credentials and OS-TRUST trusts: how long workflows keep
//! working with short-lived tokens.

mod app_cred;
mod trust;

use super::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::service::*;
use crate::state::State;
pub use app_cred::{create_app_cred, delete_app_cred, get_app_cred, list_app_creds};
use axum::extract::Query;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
pub use trust::{create_trust, delete_trust, get_trust, list_trusts, trust_role, trust_roles};

type Q = Query<HashMap<String, String>>;

#[derive(Deserialize)]
struct RoleRefBody {
    id: Option<String>,
    name: Option<String>,
}

fn resolve_role(state: &State, r: &RoleRefBody, field: &str) -> ApiResult<String> {
    match (&r.id, &r.name) {
        // A client that could not look the role up (no list_roles right) sends
        // the name it was given as the id: accept a global role's name there too.
        (Some(id), _) if !state.roles.contains_key(id) => state
            .roles
            .values()
            .find(|x| &x.name == id && x.domain_id.is_none())
            .map(|x| x.id.clone())
            .ok_or_else(|| IdentityError::not_found("role", id).into()),
        (Some(id), _) => Ok(id.clone()),
        (None, Some(n)) => state
            .roles
            .values()
            .find(|x| &x.name == n && x.domain_id.is_none())
            .map(|x| x.id.clone())
            .ok_or_else(|| IdentityError::not_found("role", n).into()),
        _ => Err(IdentityError::bad(format!(
            "Invalid input for field '{field}': give id or name."
        ))
        .into()),
    }
}

fn role_brief(state: &State, rid: &str) -> Value {
    let r = state.roles.get(rid);
    json!({"id": rid, "name": r.map(|r| r.name.clone()), "domain_id": r.and_then(|r| r.domain_id.clone())})
}

fn parse_expiry(v: Option<&String>, field: &str) -> ApiResult<Option<Micros>> {
    match v {
        None => Ok(None),
        Some(s) => parse_time(s).map(Some).ok_or_else(|| {
            IdentityError::bad(format!(
                "Invalid input for field '{field}': not an ISO 8601 time."
            ))
            .into()
        }),
    }
}
