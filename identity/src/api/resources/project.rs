//! Projects: list (with subtree and parents), show, create, update, delete.

use super::{check_tags, default_domain, domain_filter_ok, get_or_404, project_json, q_bool, Q};
use crate::api::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::ops;
use crate::service::*;
use crate::state::State;
use axum::extract::{Path, Query, State as St};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

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
