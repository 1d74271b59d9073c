//! The whole placement state as plain data, the changes a write makes, and
//! the indexes (names, children, usages) kept incrementally as commits
//! apply, on every replica alike (`weft_store::Model`).

use super::model::{Consumer, Provider};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use weft_store::{Model, Row, StoreError};

/// The service's name in the store.
pub const SERVICE: &str = "placement";

/// One typed change of a write.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Write a provider whole (with inventories, traits, aggregates).
    Provider(Provider),
    /// Remove a provider.
    DeleteProvider(String),
    /// Write a consumer whole (with its allocations).
    Consumer(Consumer),
    /// Remove a consumer (it holds nothing any more).
    DeleteConsumer(String),
    /// Add a custom resource class.
    Class(String),
    /// Remove a custom resource class.
    DeleteClass(String),
    /// Add a custom trait.
    Trait(String),
    /// Remove a custom trait.
    DeleteTrait(String),
}

const PROVIDER: &str = "provider";
const CONSUMER: &str = "consumer";
const CLASS: &str = "resource_class";
const TRAIT: &str = "trait";

/// Placement's state, immutable once published.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The store revision this state is at.
    pub revision: u64,
    /// uuid -> provider.
    pub providers: BTreeMap<String, Provider>,
    /// uuid -> consumer (only consumers holding allocations are kept).
    pub consumers: BTreeMap<String, Consumer>,
    /// Custom resource classes (`CUSTOM_*`); standard ones are in `catalog`.
    pub classes: BTreeSet<String>,
    /// Custom traits (`CUSTOM_*`); standard ones are in `catalog`.
    pub traits: BTreeSet<String>,
    names: HashMap<String, String>,
    children: HashMap<String, BTreeSet<String>>,
    /// provider -> resource class -> units allocated.
    usage: HashMap<String, BTreeMap<String, u64>>,
    /// provider -> consumers with allocations against it.
    consumers_of: HashMap<String, BTreeSet<String>>,
}

/// The one place typed changes become store records.
pub fn to_store(changes: &[Change]) -> Result<Vec<weft_store::Change>, StoreError> {
    use weft_store::Change as C;
    changes
        .iter()
        .map(|c| match c {
            Change::Provider(p) => C::put_json(PROVIDER, &p.uuid, p),
            Change::DeleteProvider(id) => Ok(C::delete(PROVIDER, id)),
            Change::Consumer(x) => C::put_json(CONSUMER, &x.uuid, x),
            Change::DeleteConsumer(id) => Ok(C::delete(CONSUMER, id)),
            Change::Class(n) => Ok(C::put(CLASS, n, "{}")),
            Change::DeleteClass(n) => Ok(C::delete(CLASS, n)),
            Change::Trait(n) => Ok(C::put(TRAIT, n, "{}")),
            Change::DeleteTrait(n) => Ok(C::delete(TRAIT, n)),
        })
        .collect()
}

fn decode(c: &weft_store::Change) -> Result<Change, StoreError> {
    let bad = |kind: &str, id: &str, e: serde_json::Error| {
        StoreError::Encode(format!("placement {kind} {id}: {e}"))
    };
    Ok(match c {
        weft_store::Change::Put { kind, id, body } => match kind.as_str() {
            PROVIDER => Change::Provider(serde_json::from_str(body).map_err(|e| bad(kind, id, e))?),
            CONSUMER => Change::Consumer(serde_json::from_str(body).map_err(|e| bad(kind, id, e))?),
            CLASS => Change::Class(id.clone()),
            TRAIT => Change::Trait(id.clone()),
            _ => return Err(StoreError::Encode(format!("unknown placement kind {kind}"))),
        },
        weft_store::Change::Delete { kind, id } => match kind.as_str() {
            PROVIDER => Change::DeleteProvider(id.clone()),
            CONSUMER => Change::DeleteConsumer(id.clone()),
            CLASS => Change::DeleteClass(id.clone()),
            TRAIT => Change::DeleteTrait(id.clone()),
            _ => return Err(StoreError::Encode(format!("unknown placement kind {kind}"))),
        },
    })
}

impl Model for State {
    type Decoded = Vec<Change>;

    fn from_rows(revision: u64, rows: Vec<Row>) -> Result<State, StoreError> {
        let changes = rows
            .into_iter()
            .map(|r| decode(&weft_store::Change::put(r.kind, r.id, r.body)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = State::default();
        st.apply_changes(&changes);
        st.revision = revision;
        Ok(st)
    }

    /// The whole commit decodes before any of it applies.
    fn decode(changes: &[weft_store::Change]) -> Result<Vec<Change>, StoreError> {
        changes.iter().map(decode).collect()
    }

    fn apply_decoded(&mut self, revision: u64, commit: &Vec<Change>) {
        self.apply_changes(commit);
        self.revision = revision;
    }

    fn revision(&self) -> u64 {
        self.revision
    }
}

impl State {
    /// Applies typed changes in order (the revision is the caller's to set).
    pub fn apply_changes(&mut self, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Provider(p) => {
                    self.unindex_provider(&p.uuid);
                    self.names.insert(p.name.clone(), p.uuid.clone());
                    if let Some(parent) = &p.parent {
                        self.children
                            .entry(parent.clone())
                            .or_default()
                            .insert(p.uuid.clone());
                    }
                    self.providers.insert(p.uuid.clone(), p.clone());
                }
                Change::DeleteProvider(id) => {
                    self.unindex_provider(id);
                    self.providers.remove(id);
                }
                Change::Consumer(x) => {
                    self.unindex_consumer(&x.uuid);
                    for (rp, resources) in &x.allocations {
                        let used = self.usage.entry(rp.clone()).or_default();
                        for (rc, n) in resources {
                            *used.entry(rc.clone()).or_default() += n;
                        }
                        self.consumers_of
                            .entry(rp.clone())
                            .or_default()
                            .insert(x.uuid.clone());
                    }
                    self.consumers.insert(x.uuid.clone(), x.clone());
                }
                Change::DeleteConsumer(id) => {
                    self.unindex_consumer(id);
                    self.consumers.remove(id);
                }
                Change::Class(n) => {
                    self.classes.insert(n.clone());
                }
                Change::DeleteClass(n) => {
                    self.classes.remove(n);
                }
                Change::Trait(n) => {
                    self.traits.insert(n.clone());
                }
                Change::DeleteTrait(n) => {
                    self.traits.remove(n);
                }
            }
        }
    }

    fn unindex_provider(&mut self, uuid: &str) {
        let Some(old) = self.providers.get(uuid) else {
            return;
        };
        if self.names.get(&old.name).map(String::as_str) == Some(uuid) {
            self.names.remove(&old.name);
        }
        if let Some(parent) = &old.parent {
            if let Some(set) = self.children.get_mut(parent) {
                set.remove(uuid);
                if set.is_empty() {
                    self.children.remove(parent);
                }
            }
        }
    }

    fn unindex_consumer(&mut self, uuid: &str) {
        let Some(old) = self.consumers.get(uuid) else {
            return;
        };
        for (rp, resources) in &old.allocations {
            if let Some(used) = self.usage.get_mut(rp) {
                for (rc, n) in resources {
                    if let Some(u) = used.get_mut(rc) {
                        *u = u.saturating_sub(*n);
                        if *u == 0 {
                            used.remove(rc);
                        }
                    }
                }
                if used.is_empty() {
                    self.usage.remove(rp);
                }
            }
            if let Some(set) = self.consumers_of.get_mut(rp) {
                set.remove(uuid);
                if set.is_empty() {
                    self.consumers_of.remove(rp);
                }
            }
        }
    }

    /// The provider named `name`, if any.
    pub fn provider_named(&self, name: &str) -> Option<&Provider> {
        self.names.get(name).and_then(|u| self.providers.get(u))
    }

    /// The providers nested directly under `uuid`.
    pub fn children_of(&self, uuid: &str) -> impl Iterator<Item = &str> {
        self.children
            .get(uuid)
            .into_iter()
            .flat_map(|s| s.iter().map(String::as_str))
    }

    /// Units of `rc` allocated against provider `rp`.
    pub fn used(&self, rp: &str, rc: &str) -> u64 {
        self.usage
            .get(rp)
            .and_then(|u| u.get(rc))
            .copied()
            .unwrap_or(0)
    }

    /// Every class with allocations against `rp`, with the units.
    pub fn usages_of(&self, rp: &str) -> Option<&BTreeMap<String, u64>> {
        self.usage.get(rp)
    }

    /// The consumers holding allocations against `rp`.
    pub fn consumers_of(&self, rp: &str) -> impl Iterator<Item = &Consumer> {
        self.consumers_of
            .get(rp)
            .into_iter()
            .flat_map(|s| s.iter())
            .filter_map(|c| self.consumers.get(c))
    }

    /// Whether any provider carries trait `name`.
    pub fn trait_in_use(&self, name: &str) -> bool {
        self.providers.values().any(|p| p.traits.contains(name))
    }

    /// Whether any provider has inventory of class `name`.
    pub fn class_in_use(&self, name: &str) -> bool {
        self.providers
            .values()
            .any(|p| p.inventories.contains_key(name))
    }
}
