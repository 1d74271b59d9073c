//! The whole identity state in memory, its indexes, and role resolution.
//!
//! Every read (token validation included) works on an immutable `Arc<State>`
//! snapshot, so the hot path never touches SQLite. Writes clone the snapshot,
//! change it, persist the changes in one transaction, rebuild the indexes and
//! swap the new snapshot in; `revision` counts those writes.

use crate::model::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A record kind as the storage layer names it.
pub type Kind = &'static str;

/// One persisted change: a record put (JSON body) or deleted.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Put {
        kind: Kind,
        id: String,
        body: String,
    },
    Delete {
        kind: Kind,
        id: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct State {
    pub revision: u64,
    pub domains: BTreeMap<String, Domain>,
    pub projects: BTreeMap<String, Project>,
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, Group>,
    /// (group_id, user_id)
    pub memberships: BTreeSet<(String, String)>,
    pub roles: BTreeMap<String, Role>,
    /// (prior_role_id, implied_role_id)
    pub implied: BTreeSet<(String, String)>,
    pub assignments: BTreeMap<String, Assignment>,
    pub regions: BTreeMap<String, Region>,
    pub services: BTreeMap<String, Service>,
    pub endpoints: BTreeMap<String, Endpoint>,
    pub app_creds: BTreeMap<String, AppCred>,
    pub trusts: BTreeMap<String, Trust>,
    pub revocations: BTreeMap<String, RevocationEvent>,
    pub index: Index,
}

/// Derived lookups, rebuilt after every write.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub user_groups: HashMap<String, Vec<String>>,
    /// (actor, target) -> [(role_id, inherited)]
    pub grants: HashMap<(Actor, Target), Vec<(String, bool)>>,
    /// role_id -> every role it implies, transitively (not itself).
    pub implies: HashMap<String, Vec<String>>,
    pub revoked_audit: HashSet<String>,
    pub revoke_by_user: HashMap<String, Vec<String>>,
    pub revoke_by_trust: HashMap<String, Vec<String>>,
    pub revoke_other: Vec<String>,
    pub user_by_name: HashMap<(String, String), String>,
}

/// The scope a set of roles is resolved for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Project(String),
    Domain(String),
    System,
}

macro_rules! record_ops {
    ($put:ident, $del:ident, $field:ident, $ty:ty, $kind:literal) => {
        pub fn $put(&mut self, v: $ty) {
            let body = serde_json::to_string(&v).expect("records serialize");
            self.changes.push(Change::Put {
                kind: $kind,
                id: v.id.clone(),
                body,
            });
            self.state.$field.insert(v.id.clone(), v);
        }
        pub fn $del(&mut self, id: &str) {
            if self.state.$field.remove(id).is_some() {
                self.changes.push(Change::Delete {
                    kind: $kind,
                    id: id.to_string(),
                });
            }
        }
    };
}

/// A write in progress: a private copy of the state plus the changes to persist.
pub struct Tx {
    pub state: State,
    pub changes: Vec<Change>,
}

impl Tx {
    pub fn new(state: State) -> Tx {
        Tx {
            state,
            changes: Vec::new(),
        }
    }
    record_ops!(put_domain, del_domain, domains, Domain, "domain");
    record_ops!(put_project, del_project, projects, Project, "project");
    record_ops!(put_user, del_user, users, User, "user");
    record_ops!(put_group, del_group, groups, Group, "group");
    record_ops!(put_role, del_role, roles, Role, "role");
    record_ops!(put_region, del_region, regions, Region, "region");
    record_ops!(put_service, del_service, services, Service, "service");
    record_ops!(put_endpoint, del_endpoint, endpoints, Endpoint, "endpoint");
    record_ops!(put_app_cred, del_app_cred, app_creds, AppCred, "app_cred");
    record_ops!(put_trust, del_trust, trusts, Trust, "trust");
    record_ops!(
        put_revocation,
        del_revocation,
        revocations,
        RevocationEvent,
        "revocation"
    );

    pub fn add_membership(&mut self, group_id: &str, user_id: &str) {
        let k = (group_id.to_string(), user_id.to_string());
        if self.state.memberships.insert(k) {
            self.changes.push(Change::Put {
                kind: "membership",
                id: format!("{group_id}|{user_id}"),
                body: serde_json::json!([group_id, user_id]).to_string(),
            });
        }
    }
    pub fn remove_membership(&mut self, group_id: &str, user_id: &str) {
        let k = (group_id.to_string(), user_id.to_string());
        if self.state.memberships.remove(&k) {
            self.changes.push(Change::Delete {
                kind: "membership",
                id: format!("{group_id}|{user_id}"),
            });
        }
    }
    pub fn add_implied(&mut self, prior: &str, implied: &str) {
        if self
            .state
            .implied
            .insert((prior.to_string(), implied.to_string()))
        {
            self.changes.push(Change::Put {
                kind: "implied",
                id: format!("{prior}|{implied}"),
                body: serde_json::json!([prior, implied]).to_string(),
            });
        }
    }
    pub fn remove_implied(&mut self, prior: &str, implied: &str) {
        if self
            .state
            .implied
            .remove(&(prior.to_string(), implied.to_string()))
        {
            self.changes.push(Change::Delete {
                kind: "implied",
                id: format!("{prior}|{implied}"),
            });
        }
    }
    pub fn put_assignment(&mut self, a: Assignment) {
        let key = a.key();
        let body = serde_json::to_string(&a).expect("records serialize");
        self.changes.push(Change::Put {
            kind: "assignment",
            id: key.clone(),
            body,
        });
        self.state.assignments.insert(key, a);
    }
    pub fn del_assignment(&mut self, key: &str) {
        if self.state.assignments.remove(key).is_some() {
            self.changes.push(Change::Delete {
                kind: "assignment",
                id: key.to_string(),
            });
        }
    }
}

/// A stored record could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("stored {kind} {id}: {message}")]
pub struct LoadError {
    pub kind: String,
    pub id: String,
    pub message: String,
}

impl State {
    /// Rebuild a state from stored (kind, id, body) rows.
    pub fn from_rows(
        revision: u64,
        rows: Vec<(String, String, String)>,
    ) -> Result<State, LoadError> {
        let mut s = State {
            revision,
            ..State::default()
        };
        for (kind, id, body) in rows {
            let err = |e: serde_json::Error| LoadError {
                kind: kind.clone(),
                id: id.clone(),
                message: e.to_string(),
            };
            match kind.as_str() {
                "domain" => {
                    s.domains
                        .insert(id.clone(), serde_json::from_str(&body).map_err(err)?);
                }
                "project" => {
                    s.projects
                        .insert(id.clone(), serde_json::from_str(&body).map_err(err)?);
                }
                "user" => {
                    s.users
                        .insert(id.clone(), serde_json::from_str(&body).map_err(err)?);
                }
                "group" => {
                    s.groups
                        .insert(id.clone(), serde_json::from_str(&body).map_err(err)?);
                }
                "role" => {
                    s.roles
                        .insert(id.clone(), serde_json::from_str(&body).map_err(err)?);
                }
                "region" => {
                    s.regions
                        .insert(id.clone(), serde_json::from_str(&body).map_err(err)?);
                }
                "service" => {
                    s.services
                        .insert(id.clone(), serde_json::from_str(&body).map_err(err)?);
                }
                "endpoint" => {
                    s.endpoints
                        .insert(id.clone(), serde_json::from_str(&body).map_err(err)?);
                }
                "app_cred" => {
                    s.app_creds
                        .insert(id.clone(), serde_json::from_str(&body).map_err(err)?);
                }
                "trust" => {
                    s.trusts
                        .insert(id.clone(), serde_json::from_str(&body).map_err(err)?);
                }
                "revocation" => {
                    s.revocations
                        .insert(id.clone(), serde_json::from_str(&body).map_err(err)?);
                }
                "assignment" => {
                    s.assignments
                        .insert(id.clone(), serde_json::from_str(&body).map_err(err)?);
                }
                "membership" => {
                    let (g, u): (String, String) = serde_json::from_str(&body).map_err(err)?;
                    s.memberships.insert((g, u));
                }
                "implied" => {
                    let (p, i): (String, String) = serde_json::from_str(&body).map_err(err)?;
                    s.implied.insert((p, i));
                }
                _ => {} // a kind from a newer version: ignored, kept on disk
            }
        }
        s.reindex();
        Ok(s)
    }

    pub fn reindex(&mut self) {
        let mut ix = Index::default();
        for (g, u) in &self.memberships {
            ix.user_groups.entry(u.clone()).or_default().push(g.clone());
        }
        for a in self.assignments.values() {
            ix.grants
                .entry((a.actor.clone(), a.target.clone()))
                .or_default()
                .push((a.role_id.clone(), a.inherited));
        }
        let mut direct: HashMap<&str, Vec<&str>> = HashMap::new();
        for (p, i) in &self.implied {
            direct.entry(p.as_str()).or_default().push(i.as_str());
        }
        for prior in direct.keys() {
            let mut seen: Vec<String> = Vec::new();
            let mut stack: Vec<&str> = direct[prior].clone();
            while let Some(r) = stack.pop() {
                if r == *prior || seen.iter().any(|s| s == r) {
                    continue;
                }
                seen.push(r.to_string());
                if let Some(next) = direct.get(r) {
                    stack.extend(next.iter().copied());
                }
            }
            ix.implies.insert(prior.to_string(), seen);
        }
        for ev in self.revocations.values() {
            if let Some(a) = &ev.audit_id {
                ix.revoked_audit.insert(a.clone());
            } else if let Some(u) = &ev.user_id {
                ix.revoke_by_user
                    .entry(u.clone())
                    .or_default()
                    .push(ev.id.clone());
            } else if let Some(t) = &ev.trust_id {
                ix.revoke_by_trust
                    .entry(t.clone())
                    .or_default()
                    .push(ev.id.clone());
            } else {
                ix.revoke_other.push(ev.id.clone());
            }
        }
        for u in self.users.values() {
            ix.user_by_name
                .insert((u.domain_id.clone(), u.name.clone()), u.id.clone());
        }
        self.index = ix;
    }

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
            .any(|a| self.index.revoked_audit.contains(*a))
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
    pub user_id: &'a str,
    pub project_id: Option<&'a str>,
    pub domain_id: Option<&'a str>,
    pub trust_id: Option<&'a str>,
    pub audit_ids: Vec<&'a str>,
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
    pub actor: Actor,
    pub target: Target,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn project(id: &str, domain: &str, parent: Option<&str>) -> Project {
        Project {
            id: id.into(),
            name: id.into(),
            domain_id: domain.into(),
            parent_id: parent.map(String::from),
            description: String::new(),
            enabled: true,
            tags: vec![],
            extra: Default::default(),
        }
    }

    fn role(id: &str, domain_id: Option<&str>) -> Role {
        Role {
            id: id.into(),
            name: id.into(),
            domain_id: domain_id.map(Into::into),
            description: None,
            options: Default::default(),
        }
    }

    fn grant(actor: Actor, target: Target, role: &str, inherited: bool) -> Assignment {
        Assignment {
            actor,
            target,
            role_id: role.into(),
            inherited,
        }
    }

    /// d1: top -> mid -> leaf, plus other; roles admin -> member -> reader, auditor.
    fn world(assignments: Vec<Assignment>, members: &[(&str, &str)]) -> State {
        let mut s = State::default();
        for p in [
            project("top", "d1", None),
            project("mid", "d1", Some("top")),
            project("leaf", "d1", Some("mid")),
            project("other", "d1", None),
        ] {
            s.projects.insert(p.id.clone(), p);
        }
        for r in ["admin", "member", "reader", "auditor"] {
            s.roles.insert(r.into(), role(r, None));
        }
        s.implied.insert(("admin".into(), "member".into()));
        s.implied.insert(("member".into(), "reader".into()));
        for a in assignments {
            s.assignments.insert(a.key(), a);
        }
        for (g, u) in members {
            s.memberships.insert((g.to_string(), u.to_string()));
        }
        s.reindex();
        s
    }

    fn roles(s: &State, user: &str, scope: Scope) -> Vec<String> {
        s.effective_role_ids(user, &scope).into_iter().collect()
    }

    fn u(x: &str) -> Actor {
        Actor::User(x.into())
    }
    fn g(x: &str) -> Actor {
        Actor::Group(x.into())
    }
    fn p(x: &str) -> Target {
        Target::Project(x.into())
    }

    #[test]
    fn direct_and_implied() {
        let s = world(vec![grant(u("alice"), p("top"), "admin", false)], &[]);
        assert_eq!(
            roles(&s, "alice", Scope::Project("top".into())),
            ["admin", "member", "reader"]
        );
        assert!(
            roles(&s, "alice", Scope::Project("mid".into())).is_empty(),
            "not inherited"
        );
        assert!(roles(&s, "bob", Scope::Project("top".into())).is_empty());
    }

    #[test]
    fn groups_count_for_members_only() {
        let s = world(
            vec![grant(g("ops"), p("other"), "member", false)],
            &[("ops", "alice")],
        );
        assert_eq!(
            roles(&s, "alice", Scope::Project("other".into())),
            ["member", "reader"]
        );
        assert!(roles(&s, "bob", Scope::Project("other".into())).is_empty());
    }

    #[test]
    fn inheritance_reaches_the_subtree_not_the_target() {
        let s = world(
            vec![
                grant(u("alice"), p("top"), "reader", true),
                grant(g("ops"), Target::Domain("d1".into()), "member", true),
            ],
            &[("ops", "bob")],
        );
        assert!(roles(&s, "alice", Scope::Project("top".into())).is_empty());
        assert_eq!(roles(&s, "alice", Scope::Project("mid".into())), ["reader"]);
        assert_eq!(
            roles(&s, "alice", Scope::Project("leaf".into())),
            ["reader"]
        );
        assert!(roles(&s, "alice", Scope::Project("other".into())).is_empty());
        // domain-inherited: every project in the domain, not the domain itself
        for proj in ["top", "mid", "leaf", "other"] {
            assert_eq!(
                roles(&s, "bob", Scope::Project(proj.into())),
                ["member", "reader"],
                "{proj}"
            );
        }
        assert!(roles(&s, "bob", Scope::Domain("d1".into())).is_empty());
    }

    #[test]
    fn scopes_are_separate() {
        let s = world(
            vec![
                grant(u("alice"), Target::System, "reader", false),
                grant(u("alice"), Target::Domain("d1".into()), "admin", false),
            ],
            &[],
        );
        assert_eq!(roles(&s, "alice", Scope::System), ["reader"]);
        assert_eq!(
            roles(&s, "alice", Scope::Domain("d1".into())),
            ["admin", "member", "reader"]
        );
        assert!(
            roles(&s, "alice", Scope::Project("top".into())).is_empty(),
            "domain grant is not inherited"
        );
    }

    #[test]
    fn implication_cycles_terminate() {
        let mut s = world(vec![grant(u("alice"), p("top"), "reader", false)], &[]);
        s.implied.insert(("reader".into(), "admin".into()));
        s.reindex();
        assert_eq!(
            roles(&s, "alice", Scope::Project("top".into())),
            ["admin", "member", "reader"]
        );
    }

    #[test]
    fn effective_rows_expand_groups_inheritance_and_implications() {
        let s = world(
            vec![grant(g("ops"), p("mid"), "member", true)],
            &[("ops", "alice"), ("ops", "bob")],
        );
        let rows = s.assignment_rows(true);
        // 2 users x 1 project below mid (leaf) x {member, reader}
        assert_eq!(rows.len(), 4);
        assert!(rows
            .iter()
            .all(|r| r.target == p("leaf") && r.via_group.as_deref() == Some("ops")));
        assert_eq!(
            rows.iter()
                .filter(|r| r.prior_role.as_deref() == Some("member"))
                .count(),
            2
        );
        let raw = s.assignment_rows(false);
        assert_eq!(raw.len(), 1);
        assert!(raw[0].inherited);
    }

    #[test]
    fn domain_specific_roles_only_imply() {
        let mut s = world(vec![grant(u("alice"), p("top"), "d1-ops", false)], &[]);
        s.roles.insert("d1-ops".into(), role("d1-ops", Some("d1")));
        s.reindex();
        // alone it gives nothing effective, but a trustor still holds it
        assert!(roles(&s, "alice", Scope::Project("top".into())).is_empty());
        assert!(s.assignment_rows(true).is_empty());
        assert_eq!(s.assignment_rows(false).len(), 1);
        assert!(s
            .held_role_ids("alice", &Scope::Project("top".into()))
            .contains("d1-ops"));
        // implying member: member and reader are effective, d1-ops is not
        s.implied.insert(("d1-ops".into(), "member".into()));
        s.reindex();
        assert_eq!(
            roles(&s, "alice", Scope::Project("top".into())),
            ["member", "reader"]
        );
        let rows = s.assignment_rows(true);
        assert_eq!(rows.len(), 2);
        assert!(rows
            .iter()
            .all(|r| r.prior_role.as_deref() == Some("d1-ops")));
    }

    #[test]
    fn revocation_events_match_by_field_and_time() {
        let mut s = world(vec![], &[]);
        let ev = RevocationEvent {
            id: "e1".into(),
            user_id: Some("alice".into()),
            issued_before: 100,
            ..Default::default()
        };
        s.revocations.insert(ev.id.clone(), ev);
        let ev = RevocationEvent {
            id: "e2".into(),
            audit_id: Some("A".into()),
            issued_before: 100,
            ..Default::default()
        };
        s.revocations.insert(ev.id.clone(), ev);
        s.reindex();
        let facts = |user: &'static str, audit: &'static str, at| TokenFacts {
            user_id: user,
            project_id: None,
            domain_id: None,
            trust_id: None,
            audit_ids: vec![audit],
            issued_at: at,
        };
        assert!(s.is_revoked(&facts("alice", "x", 99)));
        assert!(
            !s.is_revoked(&facts("alice", "x", 101)),
            "issued after the event"
        );
        assert!(!s.is_revoked(&facts("bob", "x", 99)));
        assert!(
            s.is_revoked(&facts("bob", "A", 500)),
            "audit events match any time"
        );
    }
}
