//! Grants: a role for a user or group on a project, a domain or the system, OS-INHERIT included.

use super::role::{role_json, role_target};
use crate::api::resources::{get_or_404, user_target};
use crate::api::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::service::*;
use crate::state::State;
use axum::extract::{Path, State as St};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

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
