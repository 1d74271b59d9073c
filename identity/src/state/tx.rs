//! Writes: a `Tx` over a copy of the snapshot, recording the changes to commit.

use super::{kind, State};
use crate::model::*;
use weft_store::Change;

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
