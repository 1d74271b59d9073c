//! os-interface: a server's virtual interfaces (Nova's
//! `interfaceAttachment`s). The ports themselves are the networking
//! service's: list and show read them there (through [`crate::compute::Lookups`]);
//! attach and detach are done by the server's host (its [`crate::compute::build::Spawner`]),
//! which binds the port to itself, so the switch wires the tap, and
//! hot-plugs or unplugs the NIC. Here: the body, the state rules and the
//! `addresses` the server shows afterwards.

use super::record::{vm_state, Server};
use crate::compute::body::{self, only, str_field};
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::service::{Env, Write};
use crate::compute::state::{Change, State};
use serde_json::{json, Value};

/// One virtual interface of a server, as networking has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vif {
    /// The port.
    pub port_id: String,
    /// Its network.
    pub net_id: String,
    /// The network's name (the key of the server's `addresses`).
    pub network_name: String,
    /// The port's MAC.
    pub mac_addr: String,
    /// (address, subnet id).
    pub fixed_ips: Vec<(String, String)>,
    /// The port's status (ACTIVE once the switch wired it).
    pub port_state: String,
}

impl Vif {
    /// `interfaceAttachment` as Nova renders it.
    pub fn view(&self) -> Value {
        json!({
            "port_id": self.port_id,
            "net_id": self.net_id,
            "mac_addr": self.mac_addr,
            "port_state": self.port_state,
            "fixed_ips": self.fixed_ips.iter()
                .map(|(ip, subnet)| json!({"ip_address": ip, "subnet_id": subnet}))
                .collect::<Vec<_>>(),
        })
    }
}

/// What an attach asks for: a port, or a network to make one on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attach {
    /// An existing port.
    pub port_id: Option<String>,
    /// A network to create a port on.
    pub net_id: Option<String>,
    /// The address wanted on `net_id`.
    pub fixed_ip: Option<String>,
}

/// Reads `{"interfaceAttachment": {...}}` as Nova's schema does.
pub fn parse_attach(b: &[u8]) -> ComputeResult<Attach> {
    let top = body::object(b)?;
    let m = body::wrapped(&top, "interfaceAttachment")?;
    only(m, &["port_id", "net_id", "fixed_ips", "tag"])?;
    let mut a = Attach {
        port_id: str_field(m, "port_id", 36)?.filter(|s| !s.is_empty()),
        net_id: str_field(m, "net_id", 36)?.filter(|s| !s.is_empty()),
        fixed_ip: None,
    };
    if let Some(v) = m.get("fixed_ips") {
        let list = v
            .as_array()
            .filter(|l| l.len() == 1)
            .ok_or_else(|| body::invalid("fixed_ips", v, "is not a list of one address"))?;
        let ip = list[0]
            .get("ip_address")
            .and_then(Value::as_str)
            .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
            .ok_or_else(|| body::invalid("fixed_ips", v, "is not a valid IP address"))?;
        a.fixed_ip = Some(ip.to_string());
    }
    if a.port_id.is_some() && a.net_id.is_some() {
        return Err(ComputeError::BadRequest(
            "Must not input both network_id and port_id".into(),
        ));
    }
    if a.fixed_ip.is_some() && a.net_id.is_none() {
        return Err(ComputeError::BadRequest(
            "Must input network_id when request IP address".into(),
        ));
    }
    Ok(a)
}

/// The vm_states Nova attaches and detaches in.
pub const ATTACH_FROM: &[&str] = &[vm_state::ACTIVE, "paused", vm_state::STOPPED];

/// The server's `addresses` with `vif` added; a port the host made for it
/// (`created`) is deleted with the server, as boot-time ones are.
pub fn attached(st: &State, env: &mut Env, id: &str, vif: &Vif, created: bool) -> Write<()> {
    let Some(s) = st.servers.get(id) else {
        return Ok(((), vec![]));
    };
    let mut s: Server = s.clone();
    let list = s.addresses.entry(vif.network_name.clone()).or_default();
    list.retain(|(_, _, mac)| mac != &vif.mac_addr);
    for (ip, _) in &vif.fixed_ips {
        let v = if ip.contains(':') { 6 } else { 4 };
        list.push((ip.clone(), v, vif.mac_addr.clone()));
    }
    if list.is_empty() {
        s.addresses.remove(&vif.network_name);
    }
    if created && !s.created_ports.contains(&vif.port_id) {
        s.created_ports.push(vif.port_id.clone());
    }
    s.updated = env.now.clone();
    Ok(((), vec![Change::Server(Box::new(s))]))
}

/// The server's `addresses` without port `port_id` (of MAC `mac`).
pub fn detached(st: &State, env: &mut Env, id: &str, port_id: &str, mac: &str) -> Write<()> {
    let Some(s) = st.servers.get(id) else {
        return Ok(((), vec![]));
    };
    let mut s: Server = s.clone();
    for list in s.addresses.values_mut() {
        list.retain(|(_, _, m)| m != mac);
    }
    s.addresses.retain(|_, l| !l.is_empty());
    s.created_ports.retain(|p| p != port_id);
    s.updated = env.now.clone();
    Ok(((), vec![Change::Server(Box::new(s))]))
}
