//! `GET /role_assignments`: stored or effective assignments, filtered.

use super::Q;
use crate::api::resources::get_or_404;
use crate::api::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::service::*;
use crate::state::State;
use axum::extract::{Query, State as St};
use serde_json::{json, Value};
use std::sync::Arc;

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
