//! The whole networking state as plain data, and the changes a write makes.
//!
//! Service functions read a `State` and return the `Change`s they want;
//! storage commits those in one transaction (bumping the revision), then
//! the same changes are applied here. Indexes make IP and MAC checks O(log n).

use super::ipam;
use super::model::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Network(Network),
    Subnet(Subnet),
    Port(Port),
    SecurityGroup(SecurityGroup),
    Rule(SecurityGroupRule),
    Agent(AgentRecord),
    Delete(Kind, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Network,
    Subnet,
    Port,
    SecurityGroup,
    Rule,
    Agent,
}

impl Kind {
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
pub struct State {
    pub revision: u64,
    pub networks: BTreeMap<String, Network>,
    pub subnets: BTreeMap<String, Subnet>,
    pub ports: BTreeMap<String, Port>,
    pub security_groups: BTreeMap<String, SecurityGroup>,
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

impl State {
    pub fn apply(&mut self, changes: &[Change]) {
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

    pub fn taken_ips(&self, subnet_id: &str) -> Option<&BTreeSet<u128>> {
        self.ips.get(subnet_id)
    }

    pub fn mac_owner(&self, network_id: &str, mac: &str) -> Option<&str> {
        self.macs
            .get(&(network_id.to_string(), mac.to_lowercase()))
            .map(String::as_str)
    }

    pub fn ports_on_host(&self, host: &str) -> impl Iterator<Item = &Port> {
        self.bound
            .get(host)
            .into_iter()
            .flat_map(|s| s.iter())
            .filter_map(|id| self.ports.get(id))
    }

    pub fn subnets_of(&self, network_id: &str) -> impl Iterator<Item = &Subnet> {
        let nid = network_id.to_string();
        self.subnets.values().filter(move |s| s.network_id == nid)
    }

    pub fn rules_of(&self, sg_id: &str) -> Vec<&SecurityGroupRule> {
        self.rules
            .values()
            .filter(|r| r.security_group_id == sg_id)
            .collect()
    }
}
