//! Roles, implied roles, grants (project/domain/system, OS-INHERIT) and
//! `GET /role_assignments`.

use super::resources::{get_or_404, user_target};
use super::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::ops;
use crate::service::*;
use crate::state::State;
use axum::extract::{Path, Query, State as St};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

type Q = Query<HashMap<String, String>>;

pub fn role_json(id: &Identity, r: &Role) -> Value {
    let mut v = json!({
        "id": r.id, "name": r.name, "domain_id": r.domain_id, "options": r.options,
        "links": self_link(id, &format!("roles/{}", r.id)),
    });
    if let Some(d) = &r.description {
        v["description"] = json!(d);
    }
    v
}

fn role_ref(id: &Identity, r: &Role) -> Value {
    json!({"id": r.id, "name": r.name, "links": self_link(id, &format!("roles/{}", r.id))})
}

fn role_target(r: &Role) -> Value {
    json!({"id": r.id, "name": r.name, "domain_id": r.domain_id})
}

#[derive(Deserialize, Clone)]
struct RoleBody {
    name: Option<String>,
    domain_id: Option<String>,
    description: Option<String>,
    options: Option<serde_json::Map<String, Value>>,
}

pub async fn list_roles(St(id): St<Arc<Identity>>, Auth(ctx): Auth, Query(q): Q) -> JsonResult {
    let domain = q.get("domain_id").cloned();
    let action = if domain.is_some() {
        "identity:list_domain_roles"
    } else {
        "identity:list_roles"
    };
    id.authorize(&ctx, action, &json!({"target": {"domain_id": domain}}))?;
    let state = id.snapshot();
    let items = state
        .roles
        .values()
        .filter(|r| r.domain_id == domain)
        .filter(|r| q.get("name").is_none_or(|n| *n == r.name))
        .map(|r| role_json(&id, r))
        .collect();
    Ok(axum::Json(list_body(&id, "roles", "roles", items)))
}

pub async fn get_role(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(rid): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let r = get_or_404(&state.roles, "role", &rid)?;
    let action = if r.domain_id.is_some() {
        "identity:get_domain_role"
    } else {
        "identity:get_role"
    };
    id.authorize(&ctx, action, &json!({"target": {"role": role_target(r)}}))?;
    Ok(axum::Json(json!({"role": role_json(&id, r)})))
}

pub async fn create_role(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let sec = section(&body, "role")?;
    let b: RoleBody = typed(sec, "role")?;
    let name = b
        .name
        .ok_or_else(|| IdentityError::bad("Invalid input for field 'role.name': missing."))?;
    check_name("role.name", &name)?;
    let action = if b.domain_id.is_some() {
        "identity:create_domain_role"
    } else {
        "identity:create_role"
    };
    id.authorize(
        &ctx,
        action,
        &json!({"target": {"role": {"name": name, "domain_id": b.domain_id}}}),
    )?;
    if let Some(d) = &b.domain_id {
        get_or_404(&id.snapshot().domains, "domain", d)?;
    }
    let r = Role {
        id: new_id(),
        name,
        domain_id: b.domain_id,
        description: b.description,
        options: b.options.unwrap_or_default(),
    };
    let r2 = r.clone();
    id.write_async(move |tx| {
        let r2 = r2.clone();
        if tx
            .state
            .roles
            .values()
            .any(|x| x.domain_id == r2.domain_id && x.name.eq_ignore_ascii_case(&r2.name))
        {
            return Err(IdentityError::conflict(format!(
                "Conflict occurred attempting to store role - Duplicate entry found with name {}.",
                r2.name
            )));
        }
        tx.put_role(r2);
        Ok(())
    })
    .await?;
    created(json!({"role": role_json(&id, &r)}))
}

pub async fn update_role(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(rid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> JsonResult {
    let b: RoleBody = typed(section(&body, "role")?, "role")?;
    {
        let state = id.snapshot();
        let r = get_or_404(&state.roles, "role", &rid)?;
        id.authorize(
            &ctx,
            "identity:update_role",
            &json!({"target": {"role": role_target(r)}}),
        )?;
        if b.domain_id.is_some() && b.domain_id != r.domain_id {
            return Err(IdentityError::bad(
                "Invalid input for field 'role.domain_id': cannot change.",
            )
            .into());
        }
    }
    if let Some(n) = &b.name {
        check_name("role.name", n)?;
    }
    let r = id
        .write_async(move |tx| {
            let b = b.clone();
            let mut r = tx
                .state
                .roles
                .get(&rid)
                .cloned()
                .ok_or_else(|| IdentityError::not_found("role", &rid))?;
            if let Some(n) = b.name {
                if tx.state.roles.values().any(|x| {
                    x.id != rid && x.domain_id == r.domain_id && x.name.eq_ignore_ascii_case(&n)
                }) {
                    return Err(IdentityError::conflict(format!(
                        "Duplicate entry found with name {n}."
                    )));
                }
                r.name = n;
            }
            if let Some(d) = b.description {
                r.description = Some(d);
            }
            if let Some(o) = b.options {
                r.options.extend(o);
            }
            tx.put_role(r.clone());
            Ok(r)
        })
        .await?;
    Ok(axum::Json(json!({"role": role_json(&id, &r)})))
}

pub async fn delete_role(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(rid): Path<String>,
) -> ApiResult<StatusCode> {
    {
        let state = id.snapshot();
        let r = get_or_404(&state.roles, "role", &rid)?;
        id.authorize(
            &ctx,
            "identity:delete_role",
            &json!({"target": {"role": role_target(r)}}),
        )?;
    }
    id.write_async(move |tx| {
        ops::delete_role(tx, &rid);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}

// ------------------------------------------------------------ implied roles

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

// ------------------------------------------------------------------ grants

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Create,
    Check,
    Revoke,
}

/// Check the pieces of a grant exist and build the assignment and its policy target.
fn grant_parts(
    state: &State,
    tk: &str,
    tid: &str,
    ak: &str,
    aid: &str,
    rid: Option<&str>,
    inherited: bool,
) -> ApiResult<(Actor, Target, Value)> {
    let mut t = json!({});
    let target = match tk {
        "projects" => {
            let p = get_or_404(&state.projects, "project", tid)?;
            t["project"] = json!({"id": p.id, "domain_id": p.domain_id, "name": p.name});
            Target::Project(tid.into())
        }
        "domains" => {
            let d = get_or_404(&state.domains, "domain", tid)?;
            t["domain"] = json!({"id": d.id, "name": d.name});
            Target::Domain(tid.into())
        }
        _ => Target::System,
    };
    let actor = if ak == "users" {
        let u = get_or_404(&state.users, "user", aid)?;
        t["user"] = user_target(u);
        Actor::User(aid.into())
    } else {
        let g = get_or_404(&state.groups, "group", aid)?;
        t["group"] = json!({"id": g.id, "name": g.name, "domain_id": g.domain_id});
        Actor::Group(aid.into())
    };
    if let Some(rid) = rid {
        let r = get_or_404(&state.roles, "role", rid)?;
        t["role"] = role_target(r);
    }
    if inherited && target == Target::System {
        return Err(IdentityError::bad("System grants cannot be inherited.").into());
    }
    Ok((actor, target, json!({"target": t})))
}

fn grant_action(op: Op, tk: &str, ak: &str) -> String {
    let verb = match op {
        Op::Create => "create",
        Op::Check => "check",
        Op::Revoke => "revoke",
    };
    if tk == "system" {
        let who = if ak == "users" { "user" } else { "group" };
        format!("identity:{verb}_system_grant_for_{who}")
    } else {
        format!("identity:{verb}_grant")
    }
}

#[allow(clippy::too_many_arguments)]
async fn grant_op(
    id: Arc<Identity>,
    ctx: AuthContext,
    tk: &'static str,
    ak: &'static str,
    inherited: bool,
    op: Op,
    tid: String,
    aid: String,
    rid: String,
) -> ApiResult<StatusCode> {
    let state = id.snapshot();
    let (actor, target, t) = grant_parts(&state, tk, &tid, ak, &aid, Some(&rid), inherited)?;
    id.authorize(&ctx, &grant_action(op, tk, ak), &t)?;
    let a = Assignment {
        actor,
        target,
        role_id: rid,
        inherited,
    };
    let key = a.key();
    match op {
        Op::Create => {
            id.write_async(move |tx| {
                let a = a.clone();
                tx.put_assignment(a);
                Ok(())
            })
            .await?
        }
        Op::Check => {
            if !state.assignments.contains_key(&key) {
                return Err(IdentityError::not_found("role assignment", key).into());
            }
        }
        Op::Revoke => {
            id.write_async(move |tx| {
                let key = key.clone();
                if !tx.state.assignments.contains_key(&key) {
                    return Err(IdentityError::not_found("role assignment", key));
                }
                tx.del_assignment(&key);
                Ok(())
            })
            .await?
        }
    }
    Ok(NO_CONTENT)
}

async fn grant_list(
    id: Arc<Identity>,
    ctx: AuthContext,
    tk: &'static str,
    ak: &'static str,
    inherited: bool,
    tid: String,
    aid: String,
) -> JsonResult {
    let state = id.snapshot();
    let (actor, target, t) = grant_parts(&state, tk, &tid, ak, &aid, None, inherited)?;
    let action = if tk == "system" {
        format!(
            "identity:list_system_grants_for_{}",
            if ak == "users" { "user" } else { "group" }
        )
    } else {
        "identity:list_grants".to_string()
    };
    id.authorize(&ctx, &action, &t)?;
    let items = state
        .assignments
        .values()
        .filter(|a| a.actor == actor && a.target == target && a.inherited == inherited)
        .filter_map(|a| state.roles.get(&a.role_id))
        .map(|r| role_json(&id, r))
        .collect();
    let path = if tk == "system" {
        format!("system/{ak}/{aid}/roles")
    } else {
        format!("{tk}/{tid}/{ak}/{aid}/roles")
    };
    Ok(axum::Json(list_body(&id, "roles", &path, items)))
}

type S = Arc<Identity>;
type R = Router<S>;

fn add_grant_routes(mut r: R, tk: &'static str, ak: &'static str, inherited: bool) -> R {
    let (base, suffix) = match (tk, inherited) {
        ("system", _) => (format!("/system/{ak}/{{aid}}/roles"), String::new()),
        (_, false) => (format!("/{tk}/{{tid}}/{ak}/{{aid}}/roles"), String::new()),
        (_, true) => (
            format!("/OS-INHERIT/{tk}/{{tid}}/{ak}/{{aid}}/roles"),
            "/inherited_to_projects".to_string(),
        ),
    };
    let one = format!("{base}/{{rid}}{suffix}");
    let list = format!("{base}{suffix}");
    if tk == "system" {
        let op = move |op: Op| {
            move |St(id): St<S>, Auth(ctx): Auth, Path((aid, rid)): Path<(String, String)>| {
                grant_op(id, ctx, tk, ak, false, op, "all".into(), aid, rid)
            }
        };
        r = r
            .route(
                &one,
                axum::routing::put(op(Op::Create))
                    .head(op(Op::Check))
                    .get(op(Op::Check))
                    .delete(op(Op::Revoke)),
            )
            .route(
                &list,
                get(
                    move |St(id): St<S>, Auth(ctx): Auth, Path(aid): Path<String>| {
                        grant_list(id, ctx, tk, ak, false, "all".into(), aid)
                    },
                ),
            );
    } else {
        let op = move |op: Op| {
            move |St(id): St<S>,
                  Auth(ctx): Auth,
                  Path((tid, aid, rid)): Path<(String, String, String)>| {
                grant_op(id, ctx, tk, ak, inherited, op, tid, aid, rid)
            }
        };
        r = r
            .route(
                &one,
                axum::routing::put(op(Op::Create))
                    .head(op(Op::Check))
                    .get(op(Op::Check))
                    .delete(op(Op::Revoke)),
            )
            .route(
                &list,
                get(
                    move |St(id): St<S>,
                          Auth(ctx): Auth,
                          Path((tid, aid)): Path<(String, String)>| {
                        grant_list(id, ctx, tk, ak, inherited, tid, aid)
                    },
                ),
            );
    }
    r
}

/// Grants on projects, domains and system, plain and OS-INHERIT.
pub fn grant_routes(mut r: R) -> R {
    for ak in ["users", "groups"] {
        for tk in ["projects", "domains"] {
            r = add_grant_routes(r, tk, ak, false);
            r = add_grant_routes(r, tk, ak, true);
        }
        r = add_grant_routes(r, "system", ak, false);
    }
    r
}

// -------------------------------------------------------- role_assignments

fn domain_ref(state: &State, did: &str) -> Value {
    json!({"id": did, "name": state.domains.get(did).map(|d| d.name.clone())})
}

fn row_json(id: &Identity, state: &State, row: &crate::state::AssignmentRow, names: bool) -> Value {
    let base = id.v3_url();
    let mut v = json!({});
    let (actor_path, actor_key, aid) = match &row.actor {
        Actor::User(u) => ("users", "user", u),
        Actor::Group(g) => ("groups", "group", g),
    };
    let mut actor = json!({"id": aid});
    if names {
        match &row.actor {
            Actor::User(u) => {
                if let Some(u) = state.users.get(u) {
                    actor["name"] = json!(u.name);
                    actor["domain"] = domain_ref(state, &u.domain_id);
                }
            }
            Actor::Group(g) => {
                if let Some(g) = state.groups.get(g) {
                    actor["name"] = json!(g.name);
                    actor["domain"] = domain_ref(state, &g.domain_id);
                }
            }
        }
    }
    v[actor_key] = actor;
    let mut role = json!({"id": row.role_id});
    if names {
        if let Some(r) = state.roles.get(&row.role_id) {
            role["name"] = json!(r.name);
            if let Some(d) = &r.domain_id {
                role["domain"] = domain_ref(state, d);
            }
        }
    }
    v["role"] = role;
    let mut scope = match &row.target {
        Target::Project(p) => {
            let mut x = json!({"id": p});
            if names {
                if let Some(p) = state.projects.get(p) {
                    x["name"] = json!(p.name);
                    x["domain"] = domain_ref(state, &p.domain_id);
                }
            }
            json!({"project": x})
        }
        Target::Domain(d) => {
            let mut x = json!({"id": d});
            if names {
                x["name"] = json!(state.domains.get(d).map(|d| d.name.clone()));
            }
            json!({"domain": x})
        }
        Target::System => json!({"system": {"all": true}}),
    };
    if row.inherited {
        scope["OS-INHERIT:inherited_to"] = json!("projects");
    }
    v["scope"] = scope;
    // The link names the stored assignment the row comes from.
    let src = &row.source;
    let (sak, said) = match &src.actor {
        Actor::User(u) => ("users", u),
        Actor::Group(g) => ("groups", g),
    };
    let assignment = match (&src.target, src.inherited) {
        (Target::System, _) => format!("{base}/system/{sak}/{said}/roles/{}", src.role_id),
        (Target::Project(p), false) => {
            format!("{base}/projects/{p}/{sak}/{said}/roles/{}", src.role_id)
        }
        (Target::Domain(d), false) => {
            format!("{base}/domains/{d}/{sak}/{said}/roles/{}", src.role_id)
        }
        (Target::Project(p), true) => format!(
            "{base}/OS-INHERIT/projects/{p}/{sak}/{said}/roles/{}/inherited_to_projects",
            src.role_id
        ),
        (Target::Domain(d), true) => format!(
            "{base}/OS-INHERIT/domains/{d}/{sak}/{said}/roles/{}/inherited_to_projects",
            src.role_id
        ),
    };
    let mut links = json!({"assignment": assignment});
    if let Some(g) = &row.via_group {
        links["membership"] = json!(format!("{base}/groups/{g}/{actor_path}/{aid}"));
    }
    if let Some(p) = &row.prior_role {
        links["prior_role"] = json!(format!("{base}/roles/{p}"));
    }
    v["links"] = links;
    v
}

pub async fn role_assignments(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Query(q): Q,
) -> JsonResult {
    let effective = q.contains_key("effective") && flag(&q, "effective");
    let names = flag(&q, "include_names");
    let subtree = flag(&q, "include_subtree");
    let user = q.get("user.id");
    let group = q.get("group.id");
    let project = q.get("scope.project.id");
    let domain = q.get("scope.domain.id");
    let system = q.get("scope.system");
    let role = q.get("role.id");
    let inherited_only = q
        .get("scope.OS-INHERIT:inherited_to")
        .is_some_and(|v| v == "projects");
    if effective && group.is_some() {
        return Err(IdentityError::bad(
            "Combining effective and group filter will always result in an empty list.",
        )
        .into());
    }
    if user.is_some() && group.is_some() {
        return Err(IdentityError::bad("Specify a user or a group, not both.").into());
    }
    if [project.is_some(), domain.is_some(), system.is_some()]
        .iter()
        .filter(|x| **x)
        .count()
        > 1
    {
        return Err(IdentityError::bad(
            "Specify one of scope.project.id, scope.domain.id and scope.system.",
        )
        .into());
    }
    if subtree && project.is_none() {
        return Err(IdentityError::bad(
            "scope.project.id needs to be specified if include_subtree is also specified.",
        )
        .into());
    }
    let state = id.snapshot();
    // Keystone's filters for both actions, under `filter_attr`.
    let filters = [
        "group.id",
        "role.id",
        "scope.domain.id",
        "scope.project.id",
        "scope.OS-INHERIT:inherited_to",
        "user.id",
        "scope.system",
    ];
    let mut target = list_target(None, &q, &filters);
    if subtree {
        let p = get_or_404(
            &state.projects,
            "project",
            project.map(String::as_str).unwrap_or(""),
        )?;
        target["target"] = json!({"project": {"id": p.id, "domain_id": p.domain_id}});
        id.authorize(&ctx, "identity:list_role_assignments_for_tree", &target)?;
    } else {
        let dom = domain
            .cloned()
            .or_else(|| {
                project
                    .and_then(|p| state.projects.get(p))
                    .map(|p| p.domain_id.clone())
            })
            .or_else(|| ctx.domain_id.clone());
        target["target"] = json!({"domain_id": dom});
        id.authorize(&ctx, "identity:list_role_assignments", &target)?;
    }
    let projects: Option<Vec<String>> = project.map(|p| {
        let mut v = vec![p.clone()];
        if subtree {
            v.extend(state.descendants(p));
        }
        v
    });
    let items: Vec<Value> = state
        .assignment_rows(effective)
        .iter()
        .filter(|r| user.is_none_or(|u| r.actor == Actor::User(u.clone())))
        .filter(|r| group.is_none_or(|g| r.actor == Actor::Group(g.clone())))
        .filter(|r| role.is_none_or(|x| r.role_id == *x))
        .filter(|r| match &projects {
            Some(ps) => matches!(&r.target, Target::Project(p) if ps.contains(p)),
            None => true,
        })
        .filter(|r| domain.is_none_or(|d| r.target == Target::Domain(d.clone())))
        .filter(|r| system.is_none() || r.target == Target::System)
        .filter(|r| !inherited_only || r.inherited)
        // A domain-scoped caller sees the assignments within their domain.
        .filter(|r| {
            ctx.system_scope
                || ctx.domain_id.as_ref().is_none_or(|d| match &r.target {
                    Target::Domain(x) => x == d,
                    Target::Project(p) => state.projects.get(p).is_some_and(|p| &p.domain_id == d),
                    Target::System => false,
                })
        })
        .map(|r| row_json(&id, &state, r, names))
        .collect();
    Ok(axum::Json(
        json!({"role_assignments": items, "links": self_link(&id, "role_assignments")}),
    ))
}
