//! The compute API's state as plain data, and the changes a write makes.
//!
//! Service functions read a [`State`] and return typed [`Change`]s; the
//! replica commits them through weft-store (service `compute`, record kinds
//! `flavor`, `flavor_access`, `keypair`, `server`, `host`, `server_group`,
//! `quota`, `instance_action`, `host_request`, `deleted_server`,
//! `migration`) and every replica applies the same commit
//! here.

use super::model::action::InstanceAction;
use super::model::aggregate::Aggregate;
use super::model::group::ServerGroup;
use super::model::host::ComputeHost;
use super::model::host_request::HostRequest;
use super::model::migration::MigrationRecord;
use super::model::server::Server;
use super::model::{Flavor, Keypair};
use std::collections::{BTreeMap, BTreeSet};
use weft_store::{Model, Row, StoreError};

/// The service's name in the store.
pub const SERVICE: &str = "compute";

/// One change of a write.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A flavor written whole.
    Flavor(Flavor),
    /// A flavor removed (its access entries go by their own changes).
    DeleteFlavor(String),
    /// A project given access to a private flavor: (flavor id, project id).
    Access(String, String),
    /// That access taken away.
    DeleteAccess(String, String),
    /// A key pair written whole.
    Keypair(Keypair),
    /// A key pair removed: (user id, name).
    DeleteKeypair(String, String),
    /// A server written whole.
    Server(Box<Server>),
    /// A server gone (after its teardown).
    DeleteServer(String),
    /// A compute host's record (registration, heartbeat, enable/disable).
    Host(ComputeHost),
    /// A compute host removed (`openstack compute service delete`).
    DeleteHost(String),
    /// A server group written whole.
    Group(ServerGroup),
    /// A server group removed.
    DeleteGroup(String),
    /// A project's quota overrides (resource -> limit, -1 unlimited).
    Quota(String, BTreeMap<String, i64>),
    /// A project's overrides removed (back to the defaults).
    DeleteQuota(String),
    /// An instance action written whole (with its events).
    Action(Box<InstanceAction>),
    /// A host aggregate written whole (hosts and metadata included).
    Aggregate(Aggregate),
    /// A host aggregate removed.
    DeleteAggregate(u64),
    /// A question to a remote host, or its answer.
    HostRequest(Box<HostRequest>),
    /// That question gone (answered and read, or given up).
    DeleteHostRequest(String),
    /// A deleted server's tombstone ([`crate::compute::servers::tombstone`]).
    Tombstone(Box<Server>),
    /// A tombstone purged.
    DeleteTombstone(String),
    /// A migration record written whole ([`crate::compute::migrations`]).
    Migration(Box<MigrationRecord>),
}

/// Flavors, flavor access and key pairs, at a store revision.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The store revision this state is at.
    pub revision: u64,
    /// Flavors by id.
    pub flavors: BTreeMap<String, Flavor>,
    /// (flavor id, project id) pairs of private flavors' access lists.
    pub flavor_access: BTreeSet<(String, String)>,
    /// Key pairs by (user id, name).
    pub keypairs: BTreeMap<(String, String), Keypair>,
    /// Servers by id.
    pub servers: BTreeMap<String, Server>,
    /// Compute hosts by name.
    pub hosts: BTreeMap<String, ComputeHost>,
    /// Server groups by id.
    pub groups: BTreeMap<String, ServerGroup>,
    /// Quota overrides by project (resources without one take the default).
    pub quotas: BTreeMap<String, BTreeMap<String, i64>>,
    /// Instance actions by (server id, request id).
    pub actions: BTreeMap<(String, String), InstanceAction>,
    /// Host aggregates by id.
    pub aggregates: BTreeMap<u64, Aggregate>,
    /// Questions to remote hosts by id ([`HostRequest`]).
    pub host_requests: BTreeMap<String, HostRequest>,
    /// Deleted servers' tombstones by id (status DELETED).
    pub deleted: BTreeMap<String, Server>,
    /// Migration records by uuid.
    pub migrations: BTreeMap<String, MigrationRecord>,
}

/// A two-part key as one store id. The first part (a flavor or user id)
/// never contains `/`; a key pair name might, so it goes last and the id is
/// split at the first `/`.
fn pair_key(a: &str, b: &str) -> String {
    format!("{a}/{b}")
}

fn split_pair(id: &str) -> Result<(String, String), StoreError> {
    id.split_once('/')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .ok_or_else(|| StoreError::Encode(format!("bad compute key {id}")))
}

/// The one place typed changes become store records.
pub fn to_store(changes: &[Change]) -> Result<Vec<weft_store::Change>, StoreError> {
    changes
        .iter()
        .map(|c| match c {
            Change::Flavor(f) => weft_store::Change::put_json("flavor", &f.id, f),
            Change::DeleteFlavor(id) => Ok(weft_store::Change::delete("flavor", id)),
            Change::Access(f, p) => {
                weft_store::Change::put_json("flavor_access", pair_key(f, p), &())
            }
            Change::DeleteAccess(f, p) => {
                Ok(weft_store::Change::delete("flavor_access", pair_key(f, p)))
            }
            Change::Keypair(k) => {
                weft_store::Change::put_json("keypair", pair_key(&k.user_id, &k.name), k)
            }
            Change::DeleteKeypair(u, n) => {
                Ok(weft_store::Change::delete("keypair", pair_key(u, n)))
            }
            Change::Server(sv) => weft_store::Change::put_json("server", &sv.id, sv),
            Change::DeleteServer(id) => Ok(weft_store::Change::delete("server", id)),
            Change::Host(h) => weft_store::Change::put_json("host", &h.name, h),
            Change::DeleteHost(n) => Ok(weft_store::Change::delete("host", n)),
            Change::Group(g) => weft_store::Change::put_json("server_group", &g.id, g),
            Change::DeleteGroup(id) => Ok(weft_store::Change::delete("server_group", id)),
            Change::Quota(p, q) => weft_store::Change::put_json("quota", p, q),
            Change::DeleteQuota(p) => Ok(weft_store::Change::delete("quota", p)),
            Change::Action(a) => weft_store::Change::put_json(
                "instance_action",
                pair_key(&a.server_id, &a.request_id),
                a,
            ),
            Change::Aggregate(a) => weft_store::Change::put_json("aggregate", a.id.to_string(), a),
            Change::DeleteAggregate(id) => {
                Ok(weft_store::Change::delete("aggregate", id.to_string()))
            }
            Change::HostRequest(r) => weft_store::Change::put_json("host_request", &r.id, r),
            Change::DeleteHostRequest(id) => Ok(weft_store::Change::delete("host_request", id)),
            Change::Tombstone(t) => weft_store::Change::put_json("deleted_server", &t.id, t),
            Change::DeleteTombstone(id) => Ok(weft_store::Change::delete("deleted_server", id)),
            Change::Migration(m) => weft_store::Change::put_json("migration", &m.uuid, m),
        })
        .collect()
}

fn decode_put(kind: &str, id: &str, body: &str) -> Result<Change, StoreError> {
    let bad = |e: serde_json::Error| StoreError::Encode(format!("compute {kind} {id}: {e}"));
    match kind {
        "flavor" => Ok(Change::Flavor(serde_json::from_str(body).map_err(bad)?)),
        "flavor_access" => {
            let (f, p) = split_pair(id)?;
            Ok(Change::Access(f, p))
        }
        "keypair" => Ok(Change::Keypair(serde_json::from_str(body).map_err(bad)?)),
        "server" => Ok(Change::Server(Box::new(
            serde_json::from_str(body).map_err(bad)?,
        ))),
        "host" => Ok(Change::Host(serde_json::from_str(body).map_err(bad)?)),
        "server_group" => Ok(Change::Group(serde_json::from_str(body).map_err(bad)?)),
        "quota" => Ok(Change::Quota(
            id.to_string(),
            serde_json::from_str(body).map_err(bad)?,
        )),
        "instance_action" => Ok(Change::Action(Box::new(
            serde_json::from_str(body).map_err(bad)?,
        ))),
        "aggregate" => Ok(Change::Aggregate(serde_json::from_str(body).map_err(bad)?)),
        "host_request" => Ok(Change::HostRequest(Box::new(
            serde_json::from_str(body).map_err(bad)?,
        ))),
        "deleted_server" => Ok(Change::Tombstone(Box::new(
            serde_json::from_str(body).map_err(bad)?,
        ))),
        "migration" => Ok(Change::Migration(Box::new(
            serde_json::from_str(body).map_err(bad)?,
        ))),
        _ => Err(StoreError::Encode(format!(
            "unknown compute kind {kind} ({id})"
        ))),
    }
}

fn from_store(c: &weft_store::Change) -> Result<Change, StoreError> {
    match c {
        weft_store::Change::Put { kind, id, body } => decode_put(kind, id, body),
        weft_store::Change::Delete { kind, id } => match kind.as_str() {
            "flavor" => Ok(Change::DeleteFlavor(id.clone())),
            "flavor_access" => {
                let (f, p) = split_pair(id)?;
                Ok(Change::DeleteAccess(f, p))
            }
            "keypair" => {
                let (u, n) = split_pair(id)?;
                Ok(Change::DeleteKeypair(u, n))
            }
            "server" => Ok(Change::DeleteServer(id.clone())),
            "host" => Ok(Change::DeleteHost(id.clone())),
            "server_group" => Ok(Change::DeleteGroup(id.clone())),
            "quota" => Ok(Change::DeleteQuota(id.clone())),
            "aggregate" => id
                .parse()
                .map(Change::DeleteAggregate)
                .map_err(|_| StoreError::Encode(format!("bad aggregate id {id}"))),
            "host_request" => Ok(Change::DeleteHostRequest(id.clone())),
            "deleted_server" => Ok(Change::DeleteTombstone(id.clone())),
            _ => Err(StoreError::Encode(format!(
                "unknown compute kind {kind} ({id})"
            ))),
        },
    }
}

impl Model for State {
    fn from_rows(revision: u64, rows: Vec<Row>) -> Result<State, StoreError> {
        let changes = rows
            .iter()
            .map(|r| decode_put(&r.kind, &r.id, &r.body))
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = State::default();
        st.apply_changes(&changes);
        st.revision = revision;
        Ok(st)
    }

    type Decoded = Vec<Change>;

    fn decode(changes: &[weft_store::Change]) -> Result<Vec<Change>, StoreError> {
        changes.iter().map(from_store).collect()
    }

    fn apply_decoded(&mut self, revision: u64, typed: &Vec<Change>) {
        self.apply_changes(typed);
        self.revision = revision;
    }

    fn revision(&self) -> u64 {
        self.revision
    }
}

impl State {
    /// Applies typed changes (the revision is the caller's to set).
    pub fn apply_changes(&mut self, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Flavor(f) => {
                    self.flavors.insert(f.id.clone(), f.clone());
                }
                Change::DeleteFlavor(id) => {
                    self.flavors.remove(id);
                }
                Change::Access(f, p) => {
                    self.flavor_access.insert((f.clone(), p.clone()));
                }
                Change::DeleteAccess(f, p) => {
                    self.flavor_access.remove(&(f.clone(), p.clone()));
                }
                Change::Keypair(k) => {
                    self.keypairs
                        .insert((k.user_id.clone(), k.name.clone()), k.clone());
                }
                Change::DeleteKeypair(u, n) => {
                    self.keypairs.remove(&(u.clone(), n.clone()));
                }
                Change::Server(sv) => {
                    self.servers.insert(sv.id.clone(), (**sv).clone());
                }
                Change::DeleteServer(id) => {
                    self.servers.remove(id);
                }
                Change::Host(h) => {
                    self.hosts.insert(h.name.clone(), h.clone());
                }
                Change::DeleteHost(n) => {
                    self.hosts.remove(n);
                }
                Change::Group(g) => {
                    self.groups.insert(g.id.clone(), g.clone());
                }
                Change::DeleteGroup(id) => {
                    self.groups.remove(id);
                }
                Change::Quota(p, q) => {
                    self.quotas.insert(p.clone(), q.clone());
                }
                Change::DeleteQuota(p) => {
                    self.quotas.remove(p);
                }
                Change::Action(a) => {
                    self.actions
                        .insert((a.server_id.clone(), a.request_id.clone()), (**a).clone());
                }
                Change::Aggregate(a) => {
                    self.aggregates.insert(a.id, a.clone());
                }
                Change::DeleteAggregate(id) => {
                    self.aggregates.remove(id);
                }
                Change::HostRequest(r) => {
                    self.host_requests.insert(r.id.clone(), (**r).clone());
                }
                Change::DeleteHostRequest(id) => {
                    self.host_requests.remove(id);
                }
                Change::Tombstone(t) => {
                    self.deleted.insert(t.id.clone(), (**t).clone());
                }
                Change::DeleteTombstone(id) => {
                    self.deleted.remove(id);
                }
                Change::Migration(m) => {
                    self.migrations.insert(m.uuid.clone(), (**m).clone());
                }
            }
        }
    }

    /// The projects with access to flavor `id`.
    pub fn access_of<'a>(&'a self, id: &str) -> impl Iterator<Item = &'a str> + 'a {
        let lo = (id.to_string(), String::new());
        let id = id.to_string();
        self.flavor_access
            .range(lo..)
            .take_while(move |(f, _)| *f == id)
            .map(|(_, p)| p.as_str())
    }

    /// One user's key pairs, by name.
    pub fn keypairs_of<'a>(&'a self, user: &str) -> impl Iterator<Item = &'a Keypair> + 'a {
        let lo = (user.to_string(), String::new());
        let user = user.to_string();
        self.keypairs
            .range(lo..)
            .take_while(move |((u, _), _)| *u == user)
            .map(|(_, k)| k)
    }
}
