//! Domains, projects, users, groups and group membership: the JSON views and
//! checks they share here, each resource's handlers in its own file.

mod domain;
mod group;
mod project;
mod user;

use super::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::service::*;
use axum::extract::Query;
pub use domain::{create_domain, delete_domain, get_domain, list_domains, update_domain};
pub use group::{
    add_member, check_member, create_group, delete_group, get_group, group_users, list_groups,
    remove_member, update_group,
};
pub use project::{create_project, delete_project, get_project, list_projects, update_project};
use serde_json::{json, Value};
use std::collections::HashMap;
pub use user::{
    change_password, create_user, delete_user, get_user, list_users, update_user, user_groups,
    user_projects,
};

type Q = Query<HashMap<String, String>>;

pub fn domain_json(id: &Identity, d: &Domain) -> Value {
    let mut v = json!({
        "id": d.id, "name": d.name, "description": d.description, "enabled": d.enabled,
        "tags": d.tags, "options": {}, "links": self_link(id, &format!("domains/{}", d.id)),
    });
    merge_extra(&mut v, &d.extra);
    v
}

pub fn project_json(id: &Identity, p: &Project) -> Value {
    let mut v = json!({
        "id": p.id, "name": p.name, "domain_id": p.domain_id,
        "parent_id": p.parent_id.clone().unwrap_or_else(|| p.domain_id.clone()),
        "description": p.description, "enabled": p.enabled, "is_domain": false,
        "tags": p.tags, "options": {}, "links": self_link(id, &format!("projects/{}", p.id)),
    });
    merge_extra(&mut v, &p.extra);
    v
}

pub fn user_json(id: &Identity, u: &User) -> Value {
    let mut v = json!({
        "id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled,
        "password_expires_at": u.password_expires_at.map(fmt_time),
        "options": u.options, "links": self_link(id, &format!("users/{}", u.id)),
    });
    if let Some(p) = &u.default_project_id {
        v["default_project_id"] = json!(p);
    }
    if let Some(d) = &u.description {
        v["description"] = json!(d);
    }
    merge_extra(&mut v, &u.extra);
    v
}

pub fn group_json(id: &Identity, g: &Group) -> Value {
    let mut v = json!({
        "id": g.id, "name": g.name, "domain_id": g.domain_id, "description": g.description,
        "links": self_link(id, &format!("groups/{}", g.id)),
    });
    merge_extra(&mut v, &g.extra);
    v
}

fn merge_extra(v: &mut Value, extra: &serde_json::Map<String, Value>) {
    if let Some(o) = v.as_object_mut() {
        for (k, x) in extra {
            o.entry(k.clone()).or_insert_with(|| x.clone());
        }
    }
}

/// The policy target for one user (what `%(target.user.*)s` matches).
pub fn user_target(u: &User) -> Value {
    json!({"id": u.id, "name": u.name, "domain_id": u.domain_id, "enabled": u.enabled})
}

/// The domain new objects go to when the request names none: the caller's.
fn default_domain(ctx: &AuthContext) -> String {
    ctx.domain_id
        .clone()
        .or_else(|| ctx.project_domain_id.clone())
        .unwrap_or_else(|| DEFAULT_DOMAIN_ID.to_string())
}

fn domain_filter_ok(ctx: &AuthContext, domain_id: &str) -> bool {
    ctx.system_scope || ctx.domain_id.as_deref().is_none_or(|d| d == domain_id)
}

fn q_bool(q: &HashMap<String, String>, key: &str) -> ApiResult<Option<bool>> {
    match q.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v == "true" || v == "1" || v.is_empty() => Ok(Some(true)),
        Some(v) if v == "false" || v == "0" => Ok(Some(false)),
        Some(_) => Err(IdentityError::bad(format!(
            "Invalid input for field '{key}': expected true or false."
        ))
        .into()),
    }
}

pub(crate) fn get_or_404<'a, T>(
    map: &'a imbl::OrdMap<String, T>,
    kind: &'static str,
    id: &str,
) -> ApiResult<&'a T> {
    map.get(id)
        .ok_or_else(|| IdentityError::not_found(kind, id).into())
}

fn check_tags(tags: &[String]) -> ApiResult<()> {
    if tags.len() > 80
        || tags
            .iter()
            .any(|t| t.is_empty() || t.len() > 255 || t.contains('/') || t.contains(','))
    {
        return Err(IdentityError::bad(
            "Invalid input for field 'tags': each tag is 1-255 characters without '/' or ','.",
        )
        .into());
    }
    Ok(())
}
