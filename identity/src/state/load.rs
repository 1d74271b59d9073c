//! Loading and applying stored records: decoding, keeping the indexes current, the store's `Model`.

use super::{kind, Index, State};
use crate::model::*;
use crate::token::KeySet;
use imbl::{HashMap as PMap, OrdSet};
use std::collections::HashMap;
use weft_store::{Change, Row, StoreError};

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
