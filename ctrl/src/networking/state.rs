//! The whole networking state as plain data, and the changes a write makes.
//!
//! Service functions read a `State` and return the typed `Change`s they want;
//! [`to_store`] turns those into weft-store records (kind + JSON body), the
//! replica commits them in one transaction (bumping the revision), and every
//! replica applies the same commit here through [`weft_store::Model`].
//! Indexes make IP and MAC checks O(log n) and are kept incrementally.

use super::ipam;
use super::model::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use weft_store::{Model, Row, StoreError};

/// The service's name in the store.
pub const SERVICE: &str = "networking";

#[derive(Debug, Clone, PartialEq)]
/// One change a write commits: a record put whole, or a record deleted.
pub enum Change {
    /// A network put.
    Network(Network),
    /// A subnet put.
    Subnet(Subnet),
    /// A port put.
    Port(Port),
    /// A security group put.
    SecurityGroup(SecurityGroup),
    /// A security group rule put.
    Rule(SecurityGroupRule),
    /// A host agent's record put.
    Agent(AgentRecord),
    /// A record of this kind and id deleted.
    Delete(Kind, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
/// The kinds of networking records, as the store names them.
pub enum Kind {
    /// Networks.
    Network,
    /// Subnets.
    Subnet,
    /// Ports.
    Port,
    /// Security groups.
    SecurityGroup,
    /// Security group rules.
    Rule,
    /// Host agents.
    Agent,
}

impl Kind {
    /// The store's name for the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Network => "network",
            Kind::Subnet => "subnet",
            Kind::Port => "port",
            Kind::SecurityGroup => "security_group",
            Kind::Rule => "security_group_rule",
            Kind::Agent => "agent",
        }
    }

    /// The kind the store names `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "network" => Kind::Network,
            "subnet" => Kind::Subnet,
            "port" => Kind::Port,
            "security_group" => Kind::SecurityGroup,
            "security_group_rule" => Kind::Rule,
            "agent" => Kind::Agent,
            _ => return None,
        })
    }
}

impl Change {
    /// The record it changes.
    pub fn kind_id(&self) -> (Kind, &str) {
        match self {
            Change::Network(x) => (Kind::Network, &x.id),
            Change::Subnet(x) => (Kind::Subnet, &x.id),
            Change::Port(x) => (Kind::Port, &x.id),
            Change::SecurityGroup(x) => (Kind::SecurityGroup, &x.id),
            Change::Rule(x) => (Kind::Rule, &x.id),
            Change::Agent(x) => (Kind::Agent, &x.id),
            Change::Delete(k, id) => (*k, id),
        }
    }
}

#[derive(Debug, Clone, Default)]
/// Every networking record at one store revision, with derived indexes; readers share it immutable.
pub struct State {
    /// The store revision it reflects (what agents long-poll on).
    pub revision: u64,
    /// By id.
    pub networks: BTreeMap<String, Network>,
    /// By id.
    pub subnets: BTreeMap<String, Subnet>,
    /// By id.
    pub ports: BTreeMap<String, Port>,
    /// By id.
    pub security_groups: BTreeMap<String, SecurityGroup>,
    /// By id.
    pub rules: BTreeMap<String, SecurityGroupRule>,
    /// host -> its datapath agent (tunnel endpoint)
    pub agents: BTreeMap<String, AgentRecord>,
    /// subnet id -> allocated addresses
    ips: HashMap<String, BTreeSet<u128>>,
    /// (network id, mac) -> port id
    macs: HashMap<(String, String), String>,
    /// host -> port ids bound there
    bound: HashMap<String, BTreeSet<String>>,
}

/// The one place typed changes become store records.
pub fn to_store(changes: &[Change]) -> Result<Vec<weft_store::Change>, StoreError> {
    changes
        .iter()
        .map(|c| {
            let (kind, id) = c.kind_id();
            let (kind, id) = (kind.as_str(), id.to_string());
            match c {
                Change::Network(x) => weft_store::Change::put_json(kind, id, x),
                Change::Subnet(x) => weft_store::Change::put_json(kind, id, x),
                Change::Port(x) => weft_store::Change::put_json(kind, id, x),
                Change::SecurityGroup(x) => weft_store::Change::put_json(kind, id, x),
                Change::Rule(x) => weft_store::Change::put_json(kind, id, x),
                Change::Agent(x) => weft_store::Change::put_json(kind, id, x),
                Change::Delete(..) => Ok(weft_store::Change::delete(kind, id)),
            }
        })
        .collect()
}

fn decode_put(kind: &str, id: &str, body: &str) -> Result<Change, StoreError> {
    let k = Kind::parse(kind)
        .ok_or_else(|| StoreError::Encode(format!("unknown networking kind {kind} ({id})")))?;
    let bad = |e: serde_json::Error| StoreError::Encode(format!("{kind} {id}: {e}"));
    Ok(match k {
        Kind::Network => Change::Network(serde_json::from_str(body).map_err(bad)?),
        Kind::Subnet => Change::Subnet(serde_json::from_str(body).map_err(bad)?),
        Kind::Port => Change::Port(serde_json::from_str(body).map_err(bad)?),
        Kind::SecurityGroup => Change::SecurityGroup(serde_json::from_str(body).map_err(bad)?),
        Kind::Rule => Change::Rule(serde_json::from_str(body).map_err(bad)?),
        Kind::Agent => Change::Agent(serde_json::from_str(body).map_err(bad)?),
    })
}

/// A store record back into a typed change.
pub fn from_store(c: &weft_store::Change) -> Result<Change, StoreError> {
    match c {
        weft_store::Change::Put { kind, id, body } => decode_put(kind, id, body),
        weft_store::Change::Delete { kind, id } => {
            let k = Kind::parse(kind).ok_or_else(|| {
                StoreError::Encode(format!("unknown networking kind {kind} ({id})"))
            })?;
            Ok(Change::Delete(k, id.clone()))
        }
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

    /// The whole commit is decoded before any of it applies, so a bad
    /// record leaves the state untouched.
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
                Change::Network(n) => {
                    self.networks.insert(n.id.clone(), n.clone());
                }
                Change::Subnet(s) => {
                    self.ips.entry(s.id.clone()).or_default();
                    self.subnets.insert(s.id.clone(), s.clone());
                }
                Change::Port(p) => {
                    self.unindex_port(&p.id);
                    self.index_port(p);
                    self.ports.insert(p.id.clone(), p.clone());
                }
                Change::SecurityGroup(g) => {
                    self.security_groups.insert(g.id.clone(), g.clone());
                }
                Change::Rule(r) => {
                    self.rules.insert(r.id.clone(), r.clone());
                }
                Change::Agent(a) => {
                    self.agents.insert(a.id.clone(), a.clone());
                }
                Change::Delete(kind, id) => match kind {
                    Kind::Network => {
                        self.networks.remove(id);
                    }
                    Kind::Subnet => {
                        self.subnets.remove(id);
                        self.ips.remove(id);
                    }
                    Kind::Port => {
                        self.unindex_port(id);
                        self.ports.remove(id);
                    }
                    Kind::SecurityGroup => {
                        self.security_groups.remove(id);
                    }
                    Kind::Rule => {
                        self.rules.remove(id);
                    }
                    Kind::Agent => {
                        self.agents.remove(id);
                    }
                },
            }
        }
    }

    fn index_port(&mut self, p: &Port) {
        for f in &p.fixed_ips {
            if let Some((_, v)) = ipam::parse_ip(&f.ip_address) {
                self.ips.entry(f.subnet_id.clone()).or_default().insert(v);
            }
        }
        self.macs.insert(
            (p.network_id.clone(), p.mac_address.to_lowercase()),
            p.id.clone(),
        );
        if !p.binding_host_id.is_empty() {
            self.bound
                .entry(p.binding_host_id.clone())
                .or_default()
                .insert(p.id.clone());
        }
    }

    fn unindex_port(&mut self, id: &str) {
        let Some(old) = self.ports.get(id) else {
            return;
        };
        for f in &old.fixed_ips {
            if let (Some(set), Some((_, v))) = (
                self.ips.get_mut(&f.subnet_id),
                ipam::parse_ip(&f.ip_address),
            ) {
                set.remove(&v);
            }
        }
        let key = (old.network_id.clone(), old.mac_address.to_lowercase());
        if self.macs.get(&key).map(String::as_str) == Some(id) {
            self.macs.remove(&key);
        }
        if let Some(set) = self.bound.get_mut(&old.binding_host_id) {
            set.remove(id);
        }
    }

    /// Addresses allocated in the subnet (for IPAM).
    pub fn taken_ips(&self, subnet_id: &str) -> Option<&BTreeSet<u128>> {
        self.ips.get(subnet_id)
    }

    /// The port on the network that has this MAC, if any.
    pub fn mac_owner(&self, network_id: &str, mac: &str) -> Option<&str> {
        self.macs
            .get(&(network_id.to_string(), mac.to_lowercase()))
            .map(String::as_str)
    }

    /// Ports bound to the host (`binding:host_id`).
    pub fn ports_on_host(&self, host: &str) -> impl Iterator<Item = &Port> {
        self.bound
            .get(host)
            .into_iter()
            .flat_map(|s| s.iter())
            .filter_map(|id| self.ports.get(id))
    }

    /// The network's subnets.
    pub fn subnets_of(&self, network_id: &str) -> impl Iterator<Item = &Subnet> {
        let nid = network_id.to_string();
        self.subnets.values().filter(move |s| s.network_id == nid)
    }

    /// The group's rules.
    pub fn rules_of(&self, sg_id: &str) -> Vec<&SecurityGroupRule> {
        self.rules
            .values()
            .filter(|r| r.security_group_id == sg_id)
            .collect()
    }
}
