//! Domains, projects, users, groups and group membership.

use super::auth::projects_of;
use super::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::ops;
use crate::service::*;
use crate::state::State;
use axum::extract::{Path, Query, State as St};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

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

// ---------------------------------------------------------------- domains

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

// ---------------------------------------------------------------- projects

#[derive(Deserialize, Clone)]
struct ProjectBody {
    name: Option<String>,
    domain_id: Option<String>,
    parent_id: Option<String>,
    description: Option<String>,
    enabled: Option<bool>,
    is_domain: Option<bool>,
    tags: Option<Vec<String>>,
}
const PROJECT_KEYS: &[&str] = &[
    "id",
    "name",
    "domain_id",
    "parent_id",
    "description",
    "enabled",
    "is_domain",
    "tags",
    "options",
    "links",
];

fn project_target(p: &Project) -> Value {
    json!({"id": p.id, "name": p.name, "domain_id": p.domain_id, "parent_id": p.parent_id})
}

pub async fn list_projects(St(id): St<Arc<Identity>>, Auth(ctx): Auth, Query(q): Q) -> JsonResult {
    let scope = ctx.domain_id.as_ref().map(|d| json!({"domain_id": d}));
    let filters = ["domain_id", "enabled", "name", "parent_id", "is_domain"];
    id.authorize(
        &ctx,
        "identity:list_projects",
        &list_target(scope, &q, &filters),
    )?;
    let enabled = q_bool(&q, "enabled")?;
    let state = id.snapshot();
    let tags: Vec<&str> = q
        .get("tags")
        .map(|t| t.split(',').collect())
        .unwrap_or_default();
    let items = state
        .projects
        .values()
        .filter(|p| domain_filter_ok(&ctx, &p.domain_id))
        .filter(|p| q.get("name").is_none_or(|n| *n == p.name))
        .filter(|p| q.get("domain_id").is_none_or(|d| *d == p.domain_id))
        .filter(|p| {
            q.get("parent_id").is_none_or(|x| {
                Some(x) == p.parent_id.as_ref() || (p.parent_id.is_none() && *x == p.domain_id)
            })
        })
        .filter(|p| enabled.is_none_or(|e| e == p.enabled))
        .filter(|_| q_bool(&q, "is_domain").ok().flatten() != Some(true))
        .filter(|p| tags.iter().all(|t| p.tags.iter().any(|x| x == t)))
        .map(|p| project_json(&id, p))
        .collect();
    Ok(axum::Json(list_body(&id, "projects", "projects", items)))
}

fn subtree_ids(state: &State, pid: &str) -> Value {
    let mut m = serde_json::Map::new();
    for c in state
        .projects
        .values()
        .filter(|c| c.parent_id.as_deref() == Some(pid))
    {
        let sub = subtree_ids(state, &c.id);
        m.insert(
            c.id.clone(),
            if sub.as_object().is_some_and(|o| o.is_empty()) {
                Value::Null
            } else {
                sub
            },
        );
    }
    Value::Object(m)
}

fn parents_ids(state: &State, pid: &str) -> Value {
    let mut acc = Value::Null;
    for anc in state.ancestors(pid).into_iter().rev() {
        let mut m = serde_json::Map::new();
        m.insert(anc, acc);
        acc = Value::Object(m);
    }
    acc
}

pub async fn get_project(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(pid): Path<String>,
    Query(q): Q,
) -> JsonResult {
    let state = id.snapshot();
    let p = get_or_404(&state.projects, "project", &pid)?;
    id.authorize(
        &ctx,
        "identity:get_project",
        &json!({"target": {"project": project_target(p)}}),
    )?;
    let mut v = project_json(&id, p);
    if flag(&q, "subtree_as_ids") {
        v["subtree"] = subtree_ids(&state, &pid);
    }
    if flag(&q, "parents_as_ids") {
        v["parents"] = parents_ids(&state, &pid);
    }
    if flag(&q, "subtree_as_list") {
        let list: Vec<Value> = state
            .descendants(&pid)
            .iter()
            .filter_map(|c| state.projects.get(c))
            .map(|c| json!({"project": project_json(&id, c)}))
            .collect();
        v["subtree"] = json!(list);
    }
    if flag(&q, "parents_as_list") {
        let list: Vec<Value> = state
            .ancestors(&pid)
            .iter()
            .filter_map(|c| state.projects.get(c))
            .map(|c| json!({"project": project_json(&id, c)}))
            .collect();
        v["parents"] = json!(list);
    }
    Ok(axum::Json(json!({"project": v})))
}

pub async fn create_project(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let sec = section(&body, "project")?;
    let b: ProjectBody = typed(sec, "project")?;
    if b.is_domain == Some(true) {
        return Err(IdentityError::bad("Invalid input for field 'project.is_domain': projects acting as domains are not supported.").into());
    }
    let name = b
        .name
        .clone()
        .ok_or_else(|| IdentityError::bad("Invalid input for field 'project.name': missing."))?;
    check_resource_name("project.name", &name)?;
    let tags = b.tags.clone().unwrap_or_default();
    check_tags(&tags)?;
    let state = id.snapshot();
    // A parent that is a domain means "top level in that domain".
    let parent = match &b.parent_id {
        Some(p) if state.domains.contains_key(p) => None,
        Some(p) => Some(
            state
                .projects
                .get(p)
                .ok_or_else(|| IdentityError::not_found("project", p))?
                .clone(),
        ),
        None => None,
    };
    let domain_id = b
        .domain_id
        .clone()
        .or_else(|| parent.as_ref().map(|p| p.domain_id.clone()))
        .or_else(|| {
            b.parent_id
                .clone()
                .filter(|p| state.domains.contains_key(p))
        })
        .unwrap_or_else(|| default_domain(&ctx));
    if !state.domains.contains_key(&domain_id) {
        return Err(IdentityError::not_found("domain", &domain_id).into());
    }
    if parent.as_ref().is_some_and(|p| p.domain_id != domain_id) {
        return Err(IdentityError::bad(
            "Invalid input for field 'project.parent_id': the parent is in another domain.",
        )
        .into());
    }
    let p = Project {
        id: new_id(),
        name,
        domain_id,
        parent_id: parent.map(|p| p.id),
        description: b.description.unwrap_or_default(),
        enabled: b.enabled.unwrap_or(true),
        tags,
        extra: extras(sec, PROJECT_KEYS),
    };
    id.authorize(
        &ctx,
        "identity:create_project",
        &json!({"target": {"project": project_target(&p)}}),
    )?;
    let p2 = p.clone();
    id.write_async(move |tx| {
        let p2 = p2.clone();
        if tx.state.projects.values().any(|x| x.domain_id == p2.domain_id && x.name == p2.name) {
            return Err(IdentityError::conflict(format!("Conflict occurred attempting to store project - it is not permitted to have two projects with the same name in the same domain : {}.", p2.name)));
        }
        tx.put_project(p2);
        Ok(())
    }).await?;
    created(json!({"project": project_json(&id, &p)}))
}

pub async fn update_project(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(pid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> JsonResult {
    let sec = section(&body, "project")?;
    let b: ProjectBody = typed(sec, "project")?;
    {
        let state = id.snapshot();
        let p = get_or_404(&state.projects, "project", &pid)?;
        id.authorize(
            &ctx,
            "identity:update_project",
            &json!({"target": {"project": project_target(p)}}),
        )?;
        if b.domain_id.as_ref().is_some_and(|d| *d != p.domain_id) {
            return Err(IdentityError::bad(
                "Invalid input for field 'project.domain_id': a project cannot move domains.",
            )
            .into());
        }
        if b.parent_id
            .as_ref()
            .is_some_and(|x| Some(x) != p.parent_id.as_ref() && *x != p.domain_id)
        {
            return Err(IdentityError::Forbidden(
                "Updating the parent of a project is not allowed.".into(),
            )
            .into());
        }
        if b.is_domain == Some(true) {
            return Err(IdentityError::bad(
                "Invalid input for field 'project.is_domain': cannot change.",
            )
            .into());
        }
    }
    if let Some(n) = &b.name {
        check_resource_name("project.name", n)?;
    }
    if let Some(t) = &b.tags {
        check_tags(t)?;
    }
    let ex = extras(sec, PROJECT_KEYS);
    let p = id
        .write_async(move |tx| {
            let b = b.clone();
            let ex = ex.clone();
            let mut p = tx
                .state
                .projects
                .get(&pid)
                .cloned()
                .ok_or_else(|| IdentityError::not_found("project", &pid))?;
            if let Some(n) = b.name {
                if tx
                    .state
                    .projects
                    .values()
                    .any(|x| x.id != pid && x.domain_id == p.domain_id && x.name == n)
                {
                    return Err(IdentityError::conflict(format!(
                        "Duplicate entry found with name {n}."
                    )));
                }
                p.name = n;
            }
            if let Some(d) = b.description {
                p.description = d;
            }
            if let Some(e) = b.enabled {
                p.enabled = e;
            }
            if let Some(t) = b.tags {
                p.tags = t;
            }
            p.extra.extend(ex);
            tx.put_project(p.clone());
            Ok(p)
        })
        .await?;
    Ok(axum::Json(json!({"project": project_json(&id, &p)})))
}

pub async fn delete_project(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(pid): Path<String>,
) -> ApiResult<StatusCode> {
    {
        let state = id.snapshot();
        let p = get_or_404(&state.projects, "project", &pid)?;
        id.authorize(
            &ctx,
            "identity:delete_project",
            &json!({"target": {"project": project_target(p)}}),
        )?;
        if state
            .projects
            .values()
            .any(|c| c.parent_id.as_deref() == Some(&pid))
        {
            return Err(IdentityError::Forbidden(
                "Cannot delete the project since it has children.".into(),
            )
            .into());
        }
    }
    let now = now_micros();
    id.write_async(move |tx| {
        ops::delete_project(tx, &pid, now);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}

// ---------------------------------------------------------------- users

#[derive(Deserialize, Clone)]
struct UserBody {
    name: Option<String>,
    domain_id: Option<String>,
    password: Option<String>,
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    default_project_id: Option<Option<String>>,
    description: Option<String>,
    options: Option<serde_json::Map<String, Value>>,
}
const USER_KEYS: &[&str] = &[
    "id",
    "name",
    "domain_id",
    "password",
    "enabled",
    "default_project_id",
    "description",
    "options",
    "links",
    "password_expires_at",
];

pub async fn list_users(St(id): St<Arc<Identity>>, Auth(ctx): Auth, Query(q): Q) -> JsonResult {
    let scope = ctx.domain_id.as_ref().map(|d| json!({"domain_id": d}));
    let filters = [
        "domain_id",
        "enabled",
        "idp_id",
        "name",
        "protocol_id",
        "unique_id",
        "password_expires_at",
    ];
    id.authorize(
        &ctx,
        "identity:list_users",
        &list_target(scope, &q, &filters),
    )?;
    let enabled = q_bool(&q, "enabled")?;
    let state = id.snapshot();
    let items = state
        .users
        .values()
        .filter(|u| domain_filter_ok(&ctx, &u.domain_id))
        .filter(|u| q.get("name").is_none_or(|n| *n == u.name))
        .filter(|u| q.get("domain_id").is_none_or(|d| *d == u.domain_id))
        .filter(|u| enabled.is_none_or(|e| e == u.enabled))
        .map(|u| user_json(&id, u))
        .collect();
    Ok(axum::Json(list_body(&id, "users", "users", items)))
}

pub async fn get_user(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(uid): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let u = get_or_404(&state.users, "user", &uid)?;
    id.authorize(
        &ctx,
        "identity:get_user",
        &json!({"target": {"user": user_target(u)}}),
    )?;
    Ok(axum::Json(json!({"user": user_json(&id, u)})))
}

pub async fn create_user(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let sec = section(&body, "user")?;
    let b: UserBody = typed(sec, "user")?;
    let name = b
        .name
        .ok_or_else(|| IdentityError::bad("Invalid input for field 'user.name': missing."))?;
    check_name("user.name", &name)?;
    let domain_id = b.domain_id.unwrap_or_else(|| default_domain(&ctx));
    id.authorize(
        &ctx,
        "identity:create_user",
        &json!({"target": {"user": {"name": name, "domain_id": domain_id}}}),
    )?;
    let state = id.snapshot();
    if !state.domains.contains_key(&domain_id) {
        return Err(IdentityError::not_found("domain", &domain_id).into());
    }
    let default_project_id = b.default_project_id.flatten();
    if let Some(p) = &default_project_id {
        if !state.projects.contains_key(p) {
            return Err(IdentityError::not_found("project", p).into());
        }
    }
    let now = now_micros();
    let ex = extras(sec, USER_KEYS);
    let id2 = id.clone();
    let u = blocking(move || {
        let hash = b.password.as_deref().map(|p| id2.hash_password(p)).transpose()?;
        let u = User {
            id: new_id(),
            name,
            domain_id,
            enabled: b.enabled.unwrap_or(true),
            password_created_at: hash.as_ref().map(|_| now),
            password_hash: hash,
            password_expires_at: None,
            default_project_id,
            description: b.description,
            options: b.options.unwrap_or_default(),
            extra: ex,
        };
        id2.write(|tx| {
            if tx.state.user_by_name(&u.domain_id, &u.name).is_some() {
                return Err(IdentityError::conflict(format!("Conflict occurred attempting to store user - Duplicate entry found with name {} at domain ID {}.", u.name, u.domain_id)));
            }
            tx.put_user(u.clone());
            Ok(())
        })?;
        Ok(u)
    })
    .await?;
    created(json!({"user": user_json(&id, &u)}))
}

pub async fn update_user(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> JsonResult {
    let sec = section(&body, "user")?;
    let b: UserBody = typed(sec, "user")?;
    {
        let state = id.snapshot();
        let u = get_or_404(&state.users, "user", &uid)?;
        id.authorize(
            &ctx,
            "identity:update_user",
            &json!({"target": {"user": user_target(u)}}),
        )?;
        if b.domain_id.as_ref().is_some_and(|d| *d != u.domain_id) {
            return Err(IdentityError::bad(
                "Invalid input for field 'user.domain_id': a user cannot move domains.",
            )
            .into());
        }
        if let Some(Some(p)) = &b.default_project_id {
            if !state.projects.contains_key(p) {
                return Err(IdentityError::not_found("project", p).into());
            }
        }
    }
    if let Some(n) = &b.name {
        check_name("user.name", n)?;
    }
    let ex = extras(sec, USER_KEYS);
    let id2 = id.clone();
    let u = blocking(move || {
        let hash = b
            .password
            .as_deref()
            .map(|p| id2.hash_password(p))
            .transpose()?;
        let now = now_micros();
        id2.write(|tx| {
            let b = b.clone();
            let ex = ex.clone();
            let hash = hash.clone();
            let mut u = tx
                .state
                .users
                .get(&uid)
                .cloned()
                .ok_or_else(|| IdentityError::not_found("user", &uid))?;
            let mut revoke = false;
            if let Some(n) = b.name {
                if tx
                    .state
                    .users
                    .values()
                    .any(|x| x.id != uid && x.domain_id == u.domain_id && x.name == n)
                {
                    return Err(IdentityError::conflict(format!(
                        "Duplicate entry found with name {n}."
                    )));
                }
                u.name = n;
            }
            if let Some(e) = b.enabled {
                revoke |= u.enabled && !e;
                u.enabled = e;
            }
            if let Some(h) = hash {
                u.password_hash = Some(h);
                u.password_created_at = Some(now);
                u.password_expires_at = None;
                revoke = true;
            }
            if let Some(p) = b.default_project_id {
                u.default_project_id = p;
            }
            if let Some(d) = b.description {
                u.description = Some(d);
            }
            if let Some(o) = b.options {
                u.options.extend(o);
            }
            u.extra.extend(ex);
            tx.put_user(u.clone());
            if revoke {
                ops::revoke_user(tx, &u.id, now);
            }
            Ok(u)
        })
    })
    .await?;
    Ok(axum::Json(json!({"user": user_json(&id, &u)})))
}

pub async fn delete_user(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(uid): Path<String>,
) -> ApiResult<StatusCode> {
    {
        let state = id.snapshot();
        let u = get_or_404(&state.users, "user", &uid)?;
        id.authorize(
            &ctx,
            "identity:delete_user",
            &json!({"target": {"user": user_target(u)}}),
        )?;
    }
    let now = now_micros();
    id.write_async(move |tx| {
        ops::delete_user(tx, &uid, now);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}

#[derive(Deserialize)]
struct PasswordChange {
    password: String,
    original_password: String,
}

/// `POST /users/{id}/password`: needs the original password, not a token
/// (so a user with an expired password can still change it).
pub async fn change_password(
    St(id): St<Arc<Identity>>,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<StatusCode> {
    let b: PasswordChange = typed(section(&body, "user")?, "user")?;
    let id2 = id.clone();
    blocking(move || {
        let state = id2.snapshot();
        let u = state.users.get(&uid).ok_or_else(|| {
            IdentityError::Unauthorized("The request you have made requires authentication.".into())
        })?;
        let ok = u
            .password_hash
            .as_deref()
            .is_some_and(|h| bcrypt::verify(&b.original_password, h).unwrap_or(false));
        if !ok || !u.enabled {
            return Err(IdentityError::Unauthorized(
                "The request you have made requires authentication.".into(),
            ));
        }
        let hash = id2.hash_password(&b.password)?;
        let now = now_micros();
        id2.write(|tx| {
            let hash = hash.clone();
            let mut u = tx
                .state
                .users
                .get(&uid)
                .cloned()
                .ok_or_else(|| IdentityError::not_found("user", &uid))?;
            u.password_hash = Some(hash);
            u.password_created_at = Some(now);
            u.password_expires_at = None;
            tx.put_user(u);
            ops::revoke_user(tx, &uid, now);
            Ok(())
        })
    })
    .await?;
    Ok(NO_CONTENT)
}

pub async fn user_groups(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(uid): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let u = get_or_404(&state.users, "user", &uid)?;
    id.authorize(
        &ctx,
        "identity:list_groups_for_user",
        &json!({"target": {"user": user_target(u)}}),
    )?;
    let items = state
        .groups_of(&uid)
        .iter()
        .filter_map(|g| state.groups.get(g))
        .map(|g| group_json(&id, g))
        .collect();
    Ok(axum::Json(list_body(
        &id,
        "groups",
        &format!("users/{uid}/groups"),
        items,
    )))
}

pub async fn user_projects(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(uid): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let u = get_or_404(&state.users, "user", &uid)?;
    id.authorize(
        &ctx,
        "identity:list_user_projects",
        &json!({"target": {"user": user_target(u)}}),
    )?;
    let items = projects_of(&state, &uid)
        .iter()
        .filter_map(|p| state.projects.get(p))
        .map(|p| project_json(&id, p))
        .collect();
    Ok(axum::Json(list_body(
        &id,
        "projects",
        &format!("users/{uid}/projects"),
        items,
    )))
}

// ---------------------------------------------------------------- groups

#[derive(Deserialize, Clone)]
struct GroupBody {
    name: Option<String>,
    domain_id: Option<String>,
    description: Option<String>,
}
const GROUP_KEYS: &[&str] = &["id", "name", "domain_id", "description", "links"];

fn group_target(g: &Group) -> Value {
    json!({"id": g.id, "name": g.name, "domain_id": g.domain_id})
}

pub async fn list_groups(St(id): St<Arc<Identity>>, Auth(ctx): Auth, Query(q): Q) -> JsonResult {
    let scope = ctx
        .domain_id
        .as_ref()
        .map(|d| json!({"group": {"domain_id": d}}));
    let target = list_target(scope, &q, &["domain_id", "name"]);
    id.authorize(&ctx, "identity:list_groups", &target)?;
    let state = id.snapshot();
    let items = state
        .groups
        .values()
        .filter(|g| domain_filter_ok(&ctx, &g.domain_id))
        .filter(|g| q.get("name").is_none_or(|n| *n == g.name))
        .filter(|g| q.get("domain_id").is_none_or(|d| *d == g.domain_id))
        .map(|g| group_json(&id, g))
        .collect();
    Ok(axum::Json(list_body(&id, "groups", "groups", items)))
}

pub async fn get_group(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(gid): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let g = get_or_404(&state.groups, "group", &gid)?;
    id.authorize(
        &ctx,
        "identity:get_group",
        &json!({"target": {"group": group_target(g)}}),
    )?;
    Ok(axum::Json(json!({"group": group_json(&id, g)})))
}

pub async fn create_group(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let sec = section(&body, "group")?;
    let b: GroupBody = typed(sec, "group")?;
    let name = b
        .name
        .ok_or_else(|| IdentityError::bad("Invalid input for field 'group.name': missing."))?;
    check_name("group.name", &name)?;
    let domain_id = b.domain_id.unwrap_or_else(|| default_domain(&ctx));
    id.authorize(
        &ctx,
        "identity:create_group",
        &json!({"target": {"group": {"name": name, "domain_id": domain_id}}}),
    )?;
    if !id.snapshot().domains.contains_key(&domain_id) {
        return Err(IdentityError::not_found("domain", &domain_id).into());
    }
    let g = Group {
        id: new_id(),
        name,
        domain_id,
        description: b.description.unwrap_or_default(),
        extra: extras(sec, GROUP_KEYS),
    };
    let g2 = g.clone();
    id.write_async(move |tx| {
        let g2 = g2.clone();
        if tx
            .state
            .groups
            .values()
            .any(|x| x.domain_id == g2.domain_id && x.name == g2.name)
        {
            return Err(IdentityError::conflict(format!(
                "Conflict occurred attempting to store group - Duplicate entry found with name {}.",
                g2.name
            )));
        }
        tx.put_group(g2);
        Ok(())
    })
    .await?;
    created(json!({"group": group_json(&id, &g)}))
}

pub async fn update_group(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(gid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> JsonResult {
    let sec = section(&body, "group")?;
    let b: GroupBody = typed(sec, "group")?;
    {
        let state = id.snapshot();
        let g = get_or_404(&state.groups, "group", &gid)?;
        id.authorize(
            &ctx,
            "identity:update_group",
            &json!({"target": {"group": group_target(g)}}),
        )?;
        if b.domain_id.as_ref().is_some_and(|d| *d != g.domain_id) {
            return Err(IdentityError::bad(
                "Invalid input for field 'group.domain_id': a group cannot move domains.",
            )
            .into());
        }
    }
    if let Some(n) = &b.name {
        check_name("group.name", n)?;
    }
    let ex = extras(sec, GROUP_KEYS);
    let g = id
        .write_async(move |tx| {
            let b = b.clone();
            let ex = ex.clone();
            let mut g = tx
                .state
                .groups
                .get(&gid)
                .cloned()
                .ok_or_else(|| IdentityError::not_found("group", &gid))?;
            if let Some(n) = b.name {
                if tx
                    .state
                    .groups
                    .values()
                    .any(|x| x.id != gid && x.domain_id == g.domain_id && x.name == n)
                {
                    return Err(IdentityError::conflict(format!(
                        "Duplicate entry found with name {n}."
                    )));
                }
                g.name = n;
            }
            if let Some(d) = b.description {
                g.description = d;
            }
            g.extra.extend(ex);
            tx.put_group(g.clone());
            Ok(g)
        })
        .await?;
    Ok(axum::Json(json!({"group": group_json(&id, &g)})))
}

pub async fn delete_group(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(gid): Path<String>,
) -> ApiResult<StatusCode> {
    {
        let state = id.snapshot();
        let g = get_or_404(&state.groups, "group", &gid)?;
        id.authorize(
            &ctx,
            "identity:delete_group",
            &json!({"target": {"group": group_target(g)}}),
        )?;
    }
    id.write_async(move |tx| {
        ops::delete_group(tx, &gid);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}

pub async fn group_users(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(gid): Path<String>,
    Query(q): Q,
) -> JsonResult {
    let state = id.snapshot();
    let g = get_or_404(&state.groups, "group", &gid)?;
    id.authorize(
        &ctx,
        "identity:list_users_in_group",
        &json!({"target": {"group": group_target(g)}}),
    )?;
    let items = state
        .memberships
        .iter()
        .filter(|(g, _)| *g == gid)
        .filter_map(|(_, u)| state.users.get(u))
        .filter(|u| q.get("name").is_none_or(|n| *n == u.name))
        .map(|u| user_json(&id, u))
        .collect();
    Ok(axum::Json(list_body(
        &id,
        "users",
        &format!("groups/{gid}/users"),
        items,
    )))
}

fn member_target(state: &State, gid: &str, uid: &str) -> ApiResult<Value> {
    let g = get_or_404(&state.groups, "group", gid)?;
    let u = get_or_404(&state.users, "user", uid)?;
    Ok(json!({"target": {"group": group_target(g), "user": user_target(u)}}))
}

pub async fn add_member(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path((gid, uid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let t = member_target(&id.snapshot(), &gid, &uid)?;
    id.authorize(&ctx, "identity:add_user_to_group", &t)?;
    id.write_async(move |tx| {
        tx.add_membership(&gid, &uid);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}

pub async fn check_member(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path((gid, uid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let state = id.snapshot();
    let t = member_target(&state, &gid, &uid)?;
    id.authorize(&ctx, "identity:check_user_in_group", &t)?;
    if state.memberships.contains(&(gid.clone(), uid.clone())) {
        Ok(NO_CONTENT)
    } else {
        Err(IdentityError::not_found("membership", format!("user {uid} in group {gid}")).into())
    }
}

pub async fn remove_member(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path((gid, uid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let t = member_target(&id.snapshot(), &gid, &uid)?;
    id.authorize(&ctx, "identity:remove_user_from_group", &t)?;
    id.write_async(move |tx| {
        if !tx.state.memberships.contains(&(gid.clone(), uid.clone())) {
            return Err(IdentityError::not_found(
                "membership",
                format!("user {uid} in group {gid}"),
            ));
        }
        tx.remove_membership(&gid, &uid);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}
