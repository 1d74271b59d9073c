//! The whole identity state in memory, its indexes, and role resolution.
//!
//! Every read (token validation included) works on an immutable `Arc<State>`
//! snapshot from the service's [`weft_store::Replica`], so the hot path never
//! touches the database. A write runs on a [`Tx`] over a copy of the snapshot
//! and yields the [`Change`]s to commit; the replica then moves its states
//! with [`State::apply`] (as it does for commits followed from other replicas).
//!
//! The maps are persistent (`imbl`): a copy shares every node with the
//! snapshot, so starting a `Tx` costs a few reference counts rather than a
//! copy of every record, and a write costs the nodes it changes. `apply`
//! keeps the indexes current for the records a commit touches instead of
//! rebuilding them.

use crate::model::*;
use crate::token::KeySet;
use imbl::{HashMap as PMap, OrdMap, OrdSet};
use std::collections::{BTreeSet, HashMap};
use weft_store::{Change, Row, StoreError};

/// The store's name for identity's records.
pub const SERVICE: &str = "identity";

/// Record kinds as stored.
pub mod kind {
    /// A [`Domain`].
    pub const DOMAIN: &str = "domain";
    /// A [`Project`].
    pub const PROJECT: &str = "project";
    /// A [`User`].
    pub const USER: &str = "user";
    /// A [`Group`].
    pub const GROUP: &str = "group";
    /// A [`Role`].
    pub const ROLE: &str = "role";
    /// A [`Region`].
    pub const REGION: &str = "region";
    /// A catalog [`Service`].
    pub const SERVICE: &str = "service";
    /// An [`Endpoint`].
    pub const ENDPOINT: &str = "endpoint";
    /// An [`AppCred`].
    pub const APP_CRED: &str = "app_cred";
    /// A [`Trust`].
    pub const TRUST: &str = "trust";
    /// A [`RevocationEvent`].
    pub const REVOCATION: &str = "revocation";
    /// An [`Assignment`], keyed by [`Assignment::key`].
    pub const ASSIGNMENT: &str = "assignment";
    /// A group membership, keyed `group_id|user_id`.
    pub const MEMBERSHIP: &str = "membership";
    /// An implied-role rule, keyed `prior|implied`.
    pub const IMPLIED: &str = "implied";
    /// A Fernet key: id is its index (0 staged, the highest primary), body
    /// the key as a JSON string. Shared by every replica on the database.
    pub const FERNET_KEY: &str = "fernet_key";
}

/// Every identity record at one store revision: an immutable snapshot readers share.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The store revision it reflects: caches keyed by it are current while it is.
    pub revision: u64,
    /// By id.
    pub domains: OrdMap<String, Domain>,
    /// By id.
    pub projects: OrdMap<String, Project>,
    /// By id.
    pub users: OrdMap<String, User>,
    /// By id.
    pub groups: OrdMap<String, Group>,
    /// (group_id, user_id)
    pub memberships: OrdSet<(String, String)>,
    /// By id.
    pub roles: OrdMap<String, Role>,
    /// (prior_role_id, implied_role_id)
    pub implied: OrdSet<(String, String)>,
    /// By [`Assignment::key`].
    pub assignments: OrdMap<String, Assignment>,
    /// By id.
    pub regions: OrdMap<String, Region>,
    /// By id.
    pub services: OrdMap<String, Service>,
    /// By id.
    pub endpoints: OrdMap<String, Endpoint>,
    /// By id.
    pub app_creds: OrdMap<String, AppCred>,
    /// By id.
    pub trusts: OrdMap<String, Trust>,
    /// By id.
    pub revocations: OrdMap<String, RevocationEvent>,
    /// Fernet keys by index (0 staged, the highest primary).
    pub fernet_keys: OrdMap<u64, String>,
    /// `fernet_keys`, ready to seal and open tokens.
    pub keys: KeySet,
    /// Derived lookups, so that validating a token walks no whole map.
    pub index: Index,
}

/// Derived lookups, kept current by [`State::apply`] for the records each
/// commit touches (`implies`, a transitive closure over a handful of rules,
/// is recomputed when an implied-role rule changes).
#[derive(Debug, Clone, Default)]
pub struct Index {
    /// user_id -> its groups.
    pub user_groups: PMap<String, Vec<String>>,
    /// (actor, target) -> [(role_id, inherited)]
    pub grants: PMap<(Actor, Target), Vec<(String, bool)>>,
    /// role_id -> every role it implies, transitively (not itself).
    pub implies: PMap<String, Vec<String>>,
    /// audit id -> the events revoking it
    pub revoked_audit: PMap<String, Vec<String>>,
    /// user_id -> the events revoking its tokens.
    pub revoke_by_user: PMap<String, Vec<String>>,
    /// trust_id -> the events revoking its tokens.
    pub revoke_by_trust: PMap<String, Vec<String>>,
    /// Events that name neither a user, a trust nor an audit id (checked against every token).
    pub revoke_other: OrdSet<String>,
    /// (domain_id, user name) -> user_id.
    pub user_by_name: PMap<(String, String), String>,
}

/// The scope a set of roles is resolved for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// On a project.
    Project(String),
    /// On a domain.
    Domain(String),
    /// System-wide.
    System,
}

macro_rules! record_ops {
    ($put:ident, $del:ident, $field:ident, $ty:ty, $kind:expr) => {
        /// Stores the record (replacing the one with its id) and records the change.
        pub fn $put(&mut self, v: $ty) {
            let body = serde_json::to_string(&v).expect("records serialize");
            self.changes.push(Change::put($kind, v.id.clone(), body));
            self.state.$field.insert(v.id.clone(), v);
        }
        /// Deletes the record with this id, if any, and records the change.
        pub fn $del(&mut self, id: &str) {
            if self.state.$field.remove(id).is_some() {
                self.changes.push(Change::delete($kind, id));
            }
        }
    };
}

/// A write in progress: a copy of the snapshot (cheap: the maps are
/// persistent) changed in place, plus the changes to commit. Its `index`
/// is the snapshot's: lookups through it do not see this write's own changes.
pub struct Tx {
    /// The state as this write changes it.
    pub state: State,
    /// The changes to commit, in order.
    pub changes: Vec<Change>,
}

impl Tx {
    /// A write starting from `state`.
    pub fn new(state: State) -> Tx {
        Tx {
            state,
            changes: Vec::new(),
        }
    }
    record_ops!(put_domain, del_domain, domains, Domain, kind::DOMAIN);
    record_ops!(put_project, del_project, projects, Project, kind::PROJECT);
    record_ops!(put_user, del_user, users, User, kind::USER);
    record_ops!(put_group, del_group, groups, Group, kind::GROUP);
    record_ops!(put_role, del_role, roles, Role, kind::ROLE);
    record_ops!(put_region, del_region, regions, Region, kind::REGION);
    record_ops!(put_service, del_service, services, Service, kind::SERVICE);
    record_ops!(
        put_endpoint,
        del_endpoint,
        endpoints,
        Endpoint,
        kind::ENDPOINT
    );
    record_ops!(
        put_app_cred,
        del_app_cred,
        app_creds,
        AppCred,
        kind::APP_CRED
    );
    record_ops!(put_trust, del_trust, trusts, Trust, kind::TRUST);
    record_ops!(
        put_revocation,
        del_revocation,
        revocations,
        RevocationEvent,
        kind::REVOCATION
    );

    /// Adds the user to the group.
    pub fn add_membership(&mut self, group_id: &str, user_id: &str) {
        let k = (group_id.to_string(), user_id.to_string());
        if self.state.memberships.insert(k).is_none() {
            self.changes.push(Change::put(
                kind::MEMBERSHIP,
                format!("{group_id}|{user_id}"),
                serde_json::json!([group_id, user_id]).to_string(),
            ));
        }
    }
    /// Removes the user from the group.
    pub fn remove_membership(&mut self, group_id: &str, user_id: &str) {
        let k = (group_id.to_string(), user_id.to_string());
        if self.state.memberships.remove(&k).is_some() {
            self.changes.push(Change::delete(
                kind::MEMBERSHIP,
                format!("{group_id}|{user_id}"),
            ));
        }
    }
    /// Records that holding `prior` implies holding `implied`.
    pub fn add_implied(&mut self, prior: &str, implied: &str) {
        if self
            .state
            .implied
            .insert((prior.to_string(), implied.to_string()))
            .is_none()
        {
            self.changes.push(Change::put(
                kind::IMPLIED,
                format!("{prior}|{implied}"),
                serde_json::json!([prior, implied]).to_string(),
            ));
        }
    }
    /// Removes an implied-role rule.
    pub fn remove_implied(&mut self, prior: &str, implied: &str) {
        if self
            .state
            .implied
            .remove(&(prior.to_string(), implied.to_string()))
            .is_some()
        {
            self.changes
                .push(Change::delete(kind::IMPLIED, format!("{prior}|{implied}")));
        }
    }
    /// Stores an assignment under its key.
    pub fn put_assignment(&mut self, a: Assignment) {
        let key = a.key();
        let body = serde_json::to_string(&a).expect("records serialize");
        self.changes
            .push(Change::put(kind::ASSIGNMENT, key.clone(), body));
        self.state.assignments.insert(key, a);
    }
    /// Deletes the assignment with this key, if any.
    pub fn del_assignment(&mut self, key: &str) {
        if self.state.assignments.remove(key).is_some() {
            self.changes.push(Change::delete(kind::ASSIGNMENT, key));
        }
    }
    /// Writes Fernet key `index` (0 is the staged key).
    pub fn put_fernet_key(&mut self, index: u64, key: String) {
        let body = serde_json::to_string(&key).expect("a string serializes");
        self.changes
            .push(Change::put(kind::FERNET_KEY, index.to_string(), body));
        self.state.fernet_keys.insert(index, key);
    }
    /// Deletes the Fernet key at this index.
    pub fn del_fernet_key(&mut self, index: u64) {
        if self.state.fernet_keys.remove(&index).is_some() {
            self.changes
                .push(Change::delete(kind::FERNET_KEY, index.to_string()));
        }
    }
}

/// A stored record could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("stored {kind} {id}: {message}")]
pub struct LoadError {
    /// The record kind.
    pub kind: String,
    /// The record id.
    pub id: String,
    /// Why it does not decode.
    pub message: String,
}

impl From<LoadError> for StoreError {
    fn from(e: LoadError) -> StoreError {
        StoreError::Encode(e.to_string())
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    kind: &str,
    id: &str,
    body: &str,
) -> Result<T, LoadError> {
    serde_json::from_str(body).map_err(|e| LoadError {
        kind: kind.to_string(),
        id: id.to_string(),
        message: e.to_string(),
    })
}

/// The pair a membership or implied-role record names: its id is
/// `"{a}|{b}"`, split where the pair is one `set` holds (ids may hold `|`).
fn pair_of(set: &OrdSet<(String, String)>, id: &str) -> Option<(String, String)> {
    id.match_indices('|')
        .map(|(i, _)| (id[..i].to_string(), id[i + 1..].to_string()))
        .find(|p| set.contains(p))
}

fn multi_add<K: std::hash::Hash + Eq + Clone>(m: &mut PMap<K, Vec<String>>, k: K, v: &str) {
    let e = m.entry(k).or_default();
    if !e.iter().any(|x| x == v) {
        e.push(v.to_string());
    }
}

fn multi_remove<K: std::hash::Hash + Eq + Clone>(m: &mut PMap<K, Vec<String>>, k: &K, v: &str) {
    let empty = match m.get_mut(k) {
        Some(e) => {
            e.retain(|x| x != v);
            e.is_empty()
        }
        None => false,
    };
    if empty {
        m.remove(k);
    }
}

impl Index {
    fn add_user(&mut self, u: &User) {
        self.user_by_name
            .insert((u.domain_id.clone(), u.name.clone()), u.id.clone());
    }
    fn remove_user(&mut self, u: &User) {
        let k = (u.domain_id.clone(), u.name.clone());
        if self.user_by_name.get(&k) == Some(&u.id) {
            self.user_by_name.remove(&k);
        }
    }
    fn add_grant(&mut self, a: &Assignment) {
        let g = self
            .grants
            .entry((a.actor.clone(), a.target.clone()))
            .or_default();
        if !g.iter().any(|(r, i)| *r == a.role_id && *i == a.inherited) {
            g.push((a.role_id.clone(), a.inherited));
        }
    }
    fn remove_grant(&mut self, a: &Assignment) {
        let k = (a.actor.clone(), a.target.clone());
        let empty = match self.grants.get_mut(&k) {
            Some(g) => {
                g.retain(|(r, i)| !(*r == a.role_id && *i == a.inherited));
                g.is_empty()
            }
            None => false,
        };
        if empty {
            self.grants.remove(&k);
        }
    }
    fn add_revocation(&mut self, ev: &RevocationEvent) {
        if let Some(a) = &ev.audit_id {
            multi_add(&mut self.revoked_audit, a.clone(), &ev.id);
        } else if let Some(u) = &ev.user_id {
            multi_add(&mut self.revoke_by_user, u.clone(), &ev.id);
        } else if let Some(t) = &ev.trust_id {
            multi_add(&mut self.revoke_by_trust, t.clone(), &ev.id);
        } else {
            self.revoke_other.insert(ev.id.clone());
        }
    }
    fn remove_revocation(&mut self, ev: &RevocationEvent) {
        if let Some(a) = &ev.audit_id {
            multi_remove(&mut self.revoked_audit, a, &ev.id);
        } else if let Some(u) = &ev.user_id {
            multi_remove(&mut self.revoke_by_user, u, &ev.id);
        } else if let Some(t) = &ev.trust_id {
            multi_remove(&mut self.revoke_by_trust, t, &ev.id);
        } else {
            self.revoke_other.remove(&ev.id);
        }
    }
}

/// What a batch of changes needs recomputed beyond the per-record updates.
#[derive(Default)]
struct Touched {
    implied: bool,
    keys: bool,
}

impl State {
    /// Rebuild a state from stored (kind, id, body) rows.
    pub fn from_rows(revision: u64, rows: Vec<Row>) -> Result<State, LoadError> {
        let mut s = State {
            revision,
            ..State::default()
        };
        let mut touched = Touched::default();
        for r in rows {
            s.put_record(&r.kind, &r.id, &r.body, false, &mut touched)?;
        }
        s.reindex();
        s.rebuild_keys(revision)?;
        Ok(s)
    }

    /// Applies one commit's changes (this replica's or another's), updating
    /// the indexes for the records it touches, and moves to `revision`.
    pub fn apply_changes(&mut self, revision: u64, changes: &[Change]) -> Result<(), LoadError> {
        let mut touched = Touched::default();
        for c in changes {
            match c {
                Change::Put { kind, id, body } => {
                    self.put_record(kind, id, body, true, &mut touched)?
                }
                Change::Delete { kind, id } => self.delete_record(kind, id, &mut touched),
            }
        }
        if touched.implied {
            self.rebuild_implies();
        }
        if touched.keys {
            self.rebuild_keys(revision)?;
        }
        self.revision = revision;
        Ok(())
    }

    fn put_record(
        &mut self,
        kind: &str,
        id: &str,
        body: &str,
        index: bool,
        touched: &mut Touched,
    ) -> Result<(), LoadError> {
        let id_s = id.to_string();
        match kind {
            kind::DOMAIN => {
                self.domains.insert(id_s, decode(kind, id, body)?);
            }
            kind::PROJECT => {
                self.projects.insert(id_s, decode(kind, id, body)?);
            }
            kind::USER => {
                let u: User = decode(kind, id, body)?;
                let old = self.users.insert(id_s, u.clone());
                if index {
                    if let Some(old) = old {
                        self.index.remove_user(&old);
                    }
                    self.index.add_user(&u);
                }
            }
            kind::GROUP => {
                self.groups.insert(id_s, decode(kind, id, body)?);
            }
            kind::ROLE => {
                self.roles.insert(id_s, decode(kind, id, body)?);
            }
            kind::REGION => {
                self.regions.insert(id_s, decode(kind, id, body)?);
            }
            kind::SERVICE => {
                self.services.insert(id_s, decode(kind, id, body)?);
            }
            kind::ENDPOINT => {
                self.endpoints.insert(id_s, decode(kind, id, body)?);
            }
            kind::APP_CRED => {
                self.app_creds.insert(id_s, decode(kind, id, body)?);
            }
            kind::TRUST => {
                self.trusts.insert(id_s, decode(kind, id, body)?);
            }
            kind::REVOCATION => {
                let ev: RevocationEvent = decode(kind, id, body)?;
                let old = self.revocations.insert(id_s, ev.clone());
                if index {
                    if let Some(old) = old {
                        self.index.remove_revocation(&old);
                    }
                    self.index.add_revocation(&ev);
                }
            }
            kind::ASSIGNMENT => {
                let a: Assignment = decode(kind, id, body)?;
                let old = self.assignments.insert(id_s, a.clone());
                if index {
                    if let Some(old) = old {
                        self.index.remove_grant(&old);
                    }
                    self.index.add_grant(&a);
                }
            }
            kind::MEMBERSHIP => {
                let (g, u): (String, String) = decode(kind, id, body)?;
                if index {
                    multi_add(&mut self.index.user_groups, u.clone(), &g);
                }
                self.memberships.insert((g, u));
            }
            kind::IMPLIED => {
                let (p, i): (String, String) = decode(kind, id, body)?;
                self.implied.insert((p, i));
                touched.implied = true;
            }
            kind::FERNET_KEY => {
                let n: u64 = id.parse().map_err(|_| LoadError {
                    kind: kind.to_string(),
                    id: id.to_string(),
                    message: "not a key index".into(),
                })?;
                self.fernet_keys.insert(n, decode(kind, id, body)?);
                touched.keys = true;
            }
            _ => {} // a kind from a newer version: ignored, kept in the store
        }
        Ok(())
    }

    fn delete_record(&mut self, kind: &str, id: &str, touched: &mut Touched) {
        match kind {
            kind::DOMAIN => {
                self.domains.remove(id);
            }
            kind::PROJECT => {
                self.projects.remove(id);
            }
            kind::USER => {
                if let Some(u) = self.users.remove(id) {
                    self.index.remove_user(&u);
                }
            }
            kind::GROUP => {
                self.groups.remove(id);
            }
            kind::ROLE => {
                self.roles.remove(id);
            }
            kind::REGION => {
                self.regions.remove(id);
            }
            kind::SERVICE => {
                self.services.remove(id);
            }
            kind::ENDPOINT => {
                self.endpoints.remove(id);
            }
            kind::APP_CRED => {
                self.app_creds.remove(id);
            }
            kind::TRUST => {
                self.trusts.remove(id);
            }
            kind::REVOCATION => {
                if let Some(ev) = self.revocations.remove(id) {
                    self.index.remove_revocation(&ev);
                }
            }
            kind::ASSIGNMENT => {
                if let Some(a) = self.assignments.remove(id) {
                    self.index.remove_grant(&a);
                }
            }
            kind::MEMBERSHIP => {
                if let Some((g, u)) = pair_of(&self.memberships, id) {
                    multi_remove(&mut self.index.user_groups, &u, &g);
                    self.memberships.remove(&(g, u));
                }
            }
            kind::IMPLIED => {
                if let Some(pair) = pair_of(&self.implied, id) {
                    self.implied.remove(&pair);
                    touched.implied = true;
                }
            }
            kind::FERNET_KEY => {
                if let Ok(n) = id.parse::<u64>() {
                    self.fernet_keys.remove(&n);
                    touched.keys = true;
                }
            }
            _ => {}
        }
    }

    fn rebuild_keys(&mut self, generation: u64) -> Result<(), LoadError> {
        self.keys = KeySet::new(&self.fernet_keys, generation).map_err(|message| LoadError {
            kind: kind::FERNET_KEY.into(),
            id: String::new(),
            message,
        })?;
        Ok(())
    }

    fn rebuild_implies(&mut self) {
        let mut direct: HashMap<&str, Vec<&str>> = HashMap::new();
        for (p, i) in &self.implied {
            direct.entry(p.as_str()).or_default().push(i.as_str());
        }
        let mut implies = PMap::new();
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
            implies.insert(prior.to_string(), seen);
        }
        self.index.implies = implies;
    }

    /// Rebuilds every index from the records (at load; `apply` keeps them
    /// current afterwards).
    pub fn reindex(&mut self) {
        self.index = Index::default();
        for (g, u) in &self.memberships {
            multi_add(&mut self.index.user_groups, u.clone(), g);
        }
        for a in self.assignments.values() {
            self.index.add_grant(a);
        }
        self.rebuild_implies();
        for ev in self.revocations.values() {
            self.index.add_revocation(ev);
        }
        for u in self.users.values() {
            self.index.add_user(u);
        }
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

impl weft_store::Model for State {
    fn from_rows(revision: u64, rows: Vec<Row>) -> Result<State, StoreError> {
        Ok(State::from_rows(revision, rows)?)
    }
    /// Identity decodes as it applies (`apply_changes`): its commits are
    /// rare next to its reads, so the commit is checked whole here (every
    /// body parses as JSON) and kept as records.
    type Decoded = Vec<Change>;
    fn decode(changes: &[Change]) -> Result<Vec<Change>, StoreError> {
        Ok(changes.to_vec())
    }
    fn apply_decoded(&mut self, revision: u64, changes: &Vec<Change>) {
        if let Err(e) = self.apply_changes(revision, changes) {
            // Records this build wrote always load; a foreign record is
            // skipped rather than stopping the replica.
            tracing::error!(error = %e, revision, "identity: a committed record did not apply");
            self.revision = revision;
        }
    }
    fn apply(&mut self, revision: u64, changes: &[Change]) -> Result<(), StoreError> {
        Ok(self.apply_changes(revision, changes)?)
    }
    fn revision(&self) -> u64 {
        self.revision
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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

    /// The indexes as sets, whatever order their lists were built in.
    fn index_view(s: &State) -> Vec<String> {
        fn sorted<K: std::fmt::Debug>(m: &PMap<K, Vec<String>>) -> Vec<String> {
            let mut v: Vec<String> = m
                .iter()
                .map(|(k, l)| {
                    let mut l = l.clone();
                    l.sort();
                    format!("{k:?}={l:?}")
                })
                .collect();
            v.sort();
            v
        }
        let mut grants: Vec<String> = s
            .index
            .grants
            .iter()
            .map(|(k, l)| {
                let mut l = l.clone();
                l.sort();
                format!("{k:?}={l:?}")
            })
            .collect();
        grants.sort();
        let mut by_name: Vec<String> = s
            .index
            .user_by_name
            .iter()
            .map(|(k, v)| format!("{k:?}={v}"))
            .collect();
        by_name.sort();
        let mut out = vec![format!("{:?}", s.index.revoke_other)];
        for part in [
            sorted(&s.index.user_groups),
            grants,
            sorted(&s.index.implies),
            sorted(&s.index.revoked_audit),
            sorted(&s.index.revoke_by_user),
            sorted(&s.index.revoke_by_trust),
            by_name,
        ] {
            out.push(part.join(";"));
        }
        out
    }

    fn user(id: &str, name: &str) -> User {
        User {
            id: id.into(),
            name: name.into(),
            domain_id: "d1".into(),
            enabled: true,
            password_hash: None,
            password_created_at: None,
            password_expires_at: None,
            default_project_id: None,
            description: None,
            options: Default::default(),
            extra: Default::default(),
        }
    }

    #[test]
    fn apply_keeps_the_indexes_equal_to_a_rebuild() {
        // Commits touching every indexed kind, with renames, re-puts,
        // deletes and two revocations of one audit id; after each, the
        // incrementally kept state must match one rebuilt from the records.
        type Step = Box<dyn Fn(&mut Tx)>;
        let ev = |id: &str, user: Option<&str>, trust: Option<&str>, audit: Option<&str>| {
            RevocationEvent {
                id: id.into(),
                user_id: user.map(Into::into),
                trust_id: trust.map(Into::into),
                audit_id: audit.map(Into::into),
                issued_before: 10,
                ..Default::default()
            }
        };
        let steps: Vec<Step> = vec![
            Box::new(|tx| {
                tx.put_user(user("u1", "alice"));
                tx.put_user(user("u2", "bob"));
                tx.add_membership("g1", "u1");
                tx.add_membership("g|2", "u1");
                tx.add_implied("admin", "member");
                tx.add_implied("member", "reader");
                tx.put_assignment(grant(u("u1"), p("top"), "admin", false));
                tx.put_assignment(grant(g("g1"), p("top"), "member", true));
            }),
            Box::new(move |tx| {
                tx.put_user(user("u1", "alice2")); // renamed
                tx.remove_membership("g|2", "u1");
                tx.add_membership("g1", "u2");
                tx.put_revocation(ev("e1", Some("u1"), None, None));
                tx.put_revocation(ev("e2", None, Some("t1"), None));
                tx.put_revocation(ev("e3", None, None, Some("A")));
                tx.put_revocation(ev("e4", None, None, Some("A")));
                tx.put_revocation(ev("e5", None, None, None));
            }),
            Box::new(|tx| {
                tx.del_assignment(&grant(u("u1"), p("top"), "admin", false).key());
                tx.put_assignment(grant(u("u1"), p("top"), "admin", true));
                tx.remove_implied("member", "reader");
                tx.add_implied("reader", "admin");
                tx.del_revocation("e3");
                tx.del_revocation("e5");
            }),
            Box::new(|tx| {
                tx.del_user("u2");
                tx.put_user(user("u3", "bob"));
                tx.del_revocation("e1");
                tx.put_fernet_key(0, crate::token::generate_key());
                tx.put_fernet_key(1, crate::token::generate_key());
            }),
            Box::new(|tx| {
                tx.del_fernet_key(1);
                tx.remove_membership("g1", "u1");
                tx.del_revocation("e4");
            }),
        ];
        let mut live = State::default();
        let mut records: BTreeMap<(String, String), String> = BTreeMap::new();
        for (n, step) in steps.iter().enumerate() {
            let mut tx = Tx::new(live.clone());
            step(&mut tx);
            let rev = n as u64 + 1;
            for c in &tx.changes {
                match c {
                    Change::Put { kind, id, body } => {
                        records.insert((kind.clone(), id.clone()), body.clone());
                    }
                    Change::Delete { kind, id } => {
                        records.remove(&(kind.clone(), id.clone()));
                    }
                }
            }
            live.apply_changes(rev, &tx.changes).unwrap();
            let rows = records
                .iter()
                .map(|((kind, id), body)| Row {
                    kind: kind.clone(),
                    id: id.clone(),
                    body: body.clone(),
                })
                .collect();
            let rebuilt = State::from_rows(rev, rows).unwrap();
            assert_eq!(live.revision, rev);
            assert_eq!(index_view(&live), index_view(&rebuilt), "after step {n}");
            assert_eq!(live.memberships, rebuilt.memberships, "after step {n}");
            assert_eq!(live.keys.indexes(), rebuilt.keys.indexes());
        }
        // Spot checks of what the steps left.
        assert!(live.user_by_name("d1", "alice").is_none(), "renamed away");
        assert_eq!(live.user_by_name("d1", "alice2").unwrap().id, "u1");
        assert_eq!(live.user_by_name("d1", "bob").unwrap().id, "u3");
        assert!(live.groups_of("u1").is_empty());
        assert!(live.index.revoked_audit.is_empty(), "both A events gone");
        assert_eq!(live.keys.indexes(), [0]);
        assert_eq!(
            live.keys.generation, 5,
            "the key set moved at the last commit"
        );
        // reader -> admin -> member (member -> reader was removed)
        let mut implied = live.index.implies.get("reader").unwrap().clone();
        implied.sort();
        assert_eq!(implied, ["admin", "member"]);
        assert!(!live.index.implies.contains_key("member"));
    }

    #[test]
    fn one_of_two_audit_events_pruned_keeps_the_token_revoked() {
        let mut s = State::default();
        let ev = |id: &str| RevocationEvent {
            id: id.into(),
            audit_id: Some("A".into()),
            issued_before: 100,
            ..Default::default()
        };
        let mut tx = Tx::new(s.clone());
        tx.put_revocation(ev("e1"));
        tx.put_revocation(ev("e2"));
        s.apply_changes(1, &tx.changes).unwrap();
        let mut tx = Tx::new(s.clone());
        tx.del_revocation("e1");
        s.apply_changes(2, &tx.changes).unwrap();
        let facts = TokenFacts {
            user_id: "bob",
            project_id: None,
            domain_id: None,
            trust_id: None,
            audit_ids: vec!["A"],
            issued_at: 5,
        };
        assert!(s.is_revoked(&facts));
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
