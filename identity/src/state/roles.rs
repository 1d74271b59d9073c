//! Reads over the state: project trees, role resolution, revocation checks, role assignment listings.

use super::{Scope, State};
use crate::model::*;
use std::collections::BTreeSet;

impl State {
    /// The project's ancestors, nearest first (not the project itself).
    pub fn ancestors(&self, project_id: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = self
            .projects
            .get(project_id)
            .and_then(|p| p.parent_id.clone());
        while let Some(p) = cur {
            if out.contains(&p) || out.len() > 64 {
                break;
            }
            cur = self.projects.get(&p).and_then(|x| x.parent_id.clone());
            out.push(p);
        }
        out
    }

    /// Every project below `project_id`, at any depth.
    pub fn descendants(&self, project_id: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut frontier = vec![project_id.to_string()];
        while let Some(p) = frontier.pop() {
            for c in self
                .projects
                .values()
                .filter(|c| c.parent_id.as_deref() == Some(&p))
            {
                if !out.contains(&c.id) {
                    out.push(c.id.clone());
                    frontier.push(c.id.clone());
                }
            }
        }
        out
    }

    /// Groups the user belongs to.
    pub fn groups_of(&self, user_id: &str) -> &[String] {
        self.index
            .user_groups
            .get(user_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Role ids granted directly (before implication) to the user or any of
    /// their groups for `scope`, including inherited grants from above.
    pub fn direct_role_ids(&self, user_id: &str, scope: &Scope) -> BTreeSet<String> {
        let mut actors = vec![Actor::User(user_id.to_string())];
        actors.extend(
            self.groups_of(user_id)
                .iter()
                .map(|g| Actor::Group(g.clone())),
        );
        let mut out = BTreeSet::new();
        let mut take = |target: Target, want_inherited: bool| {
            for a in &actors {
                if let Some(grants) = self.index.grants.get(&(a.clone(), target.clone())) {
                    for (role, inh) in grants {
                        if *inh == want_inherited {
                            out.insert(role.clone());
                        }
                    }
                }
            }
        };
        match scope {
            Scope::System => take(Target::System, false),
            Scope::Domain(d) => take(Target::Domain(d.clone()), false),
            Scope::Project(p) => {
                take(Target::Project(p.clone()), false);
                for anc in self.ancestors(p) {
                    take(Target::Project(anc), true);
                }
                if let Some(proj) = self.projects.get(p) {
                    take(Target::Domain(proj.domain_id.clone()), true);
                }
            }
        }
        out
    }

    /// `roles` plus every role they imply.
    pub fn expand_implied(&self, roles: impl IntoIterator<Item = String>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for r in roles {
            if let Some(imp) = self.index.implies.get(&r) {
                out.extend(imp.iter().cloned());
            }
            out.insert(r);
        }
        out
    }

    /// Every role the user holds on the scope (groups, inheritance, implied
    /// roles), domain-specific roles included: what a trustor may delegate
    /// (Keystone's `get_roles_for_trustor_and_project`).
    pub fn held_role_ids(&self, user_id: &str, scope: &Scope) -> BTreeSet<String> {
        self.expand_implied(self.direct_role_ids(user_id, scope))
    }

    /// Projects where the user holds any effective role (enabled ones only):
    /// what `GET /auth/projects` and `GET /users/{id}/projects` list.
    pub fn projects_of(&self, user_id: &str) -> Vec<String> {
        self.projects
            .values()
            .filter(|p| {
                p.enabled
                    && !self
                        .effective_role_ids(user_id, &Scope::Project(p.id.clone()))
                        .is_empty()
            })
            .map(|p| p.id.clone())
            .collect()
    }

    /// Effective role ids of the user on the scope, as a token carries them:
    /// [`Self::held_role_ids`] without domain-specific roles, which only serve
    /// to imply global roles (Keystone strips them the same way).
    pub fn effective_role_ids(&self, user_id: &str, scope: &Scope) -> BTreeSet<String> {
        self.global_roles(self.held_role_ids(user_id, scope))
    }

    /// The ids among `roles` that name an existing global role (no domain_id).
    pub fn global_roles(&self, roles: impl IntoIterator<Item = String>) -> BTreeSet<String> {
        roles
            .into_iter()
            .filter(|r| self.is_global_role(r))
            .collect()
    }

    /// `role_id` names an existing role that is not domain-specific.
    pub fn is_global_role(&self, role_id: &str) -> bool {
        self.roles
            .get(role_id)
            .is_some_and(|r| r.domain_id.is_none())
    }

    /// A user by (domain, name): how password auth names users.
    pub fn user_by_name(&self, domain_id: &str, name: &str) -> Option<&User> {
        self.index
            .user_by_name
            .get(&(domain_id.to_string(), name.to_string()))
            .and_then(|id| self.users.get(id))
    }

    /// Is a token with these attributes revoked by any event?
    pub fn is_revoked(&self, t: &TokenFacts<'_>) -> bool {
        if t.audit_ids
            .iter()
            .any(|a| self.index.revoked_audit.contains_key(*a))
        {
            return true;
        }
        let check = |ids: Option<&Vec<String>>| {
            ids.into_iter().flatten().any(|id| {
                self.revocations
                    .get(id)
                    .is_some_and(|ev| event_matches(ev, t))
            })
        };
        if check(self.index.revoke_by_user.get(t.user_id)) {
            return true;
        }
        if let Some(tr) = t.trust_id {
            if check(self.index.revoke_by_trust.get(tr)) {
                return true;
            }
        }
        self.index.revoke_other.iter().any(|id| {
            self.revocations
                .get(id)
                .is_some_and(|ev| event_matches(ev, t))
        })
    }
}

/// What revocation events match against.
#[derive(Debug, Clone)]
pub struct TokenFacts<'a> {
    /// The token's user.
    pub user_id: &'a str,
    /// Its project scope.
    pub project_id: Option<&'a str>,
    /// Its domain scope.
    pub domain_id: Option<&'a str>,
    /// Its trust.
    pub trust_id: Option<&'a str>,
    /// Its audit chain.
    pub audit_ids: Vec<&'a str>,
    /// When it was issued (micros).
    pub issued_at: Micros,
}

fn event_matches(ev: &RevocationEvent, t: &TokenFacts<'_>) -> bool {
    t.issued_at <= ev.issued_before
        && ev.user_id.as_deref().is_none_or(|u| u == t.user_id)
        && ev
            .project_id
            .as_deref()
            .is_none_or(|p| Some(p) == t.project_id)
        && ev
            .domain_id
            .as_deref()
            .is_none_or(|d| Some(d) == t.domain_id)
        && ev.trust_id.as_deref().is_none_or(|x| Some(x) == t.trust_id)
        && ev
            .audit_id
            .as_deref()
            .is_none_or(|a| t.audit_ids.contains(&a))
}

/// One row of `GET /role_assignments`, with how an effective row came about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AssignmentRow {
    /// Who holds the role.
    pub actor: Actor,
    /// Where.
    pub target: Target,
    /// The role.
    pub role_id: String,
    /// Shown as `OS-INHERIT:inherited_to: projects` (only in non-effective lists).
    pub inherited: bool,
    /// The stored assignment this row comes from.
    pub source: Assignment,
    /// Effective rows: the group the user got it through.
    pub via_group: Option<String>,
    /// Effective rows: the role that implied this one.
    pub prior_role: Option<String>,
}

impl State {
    /// Every stored assignment, or (when `effective`) what they amount to per user:
    /// group grants expanded to members, inherited grants to the projects below,
    /// implied roles added, then domain-specific roles left out (they only
    /// imply other roles; Keystone's `_strip_domain_roles`).
    pub fn assignment_rows(&self, effective: bool) -> Vec<AssignmentRow> {
        let mut out = BTreeSet::new();
        for a in self.assignments.values() {
            if !effective {
                out.insert(AssignmentRow {
                    actor: a.actor.clone(),
                    target: a.target.clone(),
                    role_id: a.role_id.clone(),
                    inherited: a.inherited,
                    source: a.clone(),
                    via_group: None,
                    prior_role: None,
                });
                continue;
            }
            let actors: Vec<(Actor, Option<String>)> = match &a.actor {
                Actor::User(u) => vec![(Actor::User(u.clone()), None)],
                Actor::Group(g) => self
                    .memberships
                    .iter()
                    .filter(|(mg, _)| mg == g)
                    .map(|(_, u)| (Actor::User(u.clone()), Some(g.clone())))
                    .collect(),
            };
            let targets: Vec<Target> = match (&a.target, a.inherited) {
                (t, false) => vec![t.clone()],
                (Target::Project(p), true) => self
                    .descendants(p)
                    .into_iter()
                    .map(Target::Project)
                    .collect(),
                (Target::Domain(d), true) => self
                    .projects
                    .values()
                    .filter(|p| &p.domain_id == d)
                    .map(|p| Target::Project(p.id.clone()))
                    .collect(),
                (Target::System, true) => vec![],
            };
            let mut roles = vec![(a.role_id.clone(), None)];
            if let Some(imp) = self.index.implies.get(&a.role_id) {
                roles.extend(imp.iter().map(|r| (r.clone(), Some(a.role_id.clone()))));
            }
            for (actor, via) in &actors {
                for t in &targets {
                    for (r, prior) in &roles {
                        if !self.is_global_role(r) {
                            continue;
                        }
                        out.insert(AssignmentRow {
                            actor: actor.clone(),
                            target: t.clone(),
                            role_id: r.clone(),
                            inherited: false,
                            source: a.clone(),
                            via_group: via.clone(),
                            prior_role: prior.clone(),
                        });
                    }
                }
            }
        }
        out.into_iter().collect()
    }
}
