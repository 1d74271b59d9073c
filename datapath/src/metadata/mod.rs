//! The metadata service at 169.254.169.254, answered inside the switch: no proxy, no agent
//! process, no namespace. A guest's TCP connection to 169.254.169.254:80 ends in a small TCP/IP
//! stack (smoltcp) that the switch keeps for the guest's port, and the HTTP server behind it
//! answers from the port's own data, as Nova's metadata API and its EC2 flavour would.
//!
//! ```text
//!  VM port rx --pipeline: classify -> port_security -> metadata stage (IPv4 to 169.254.169.254,
//!               or ARP for it; the port has PortMetadata) --> Verdict::Metadata (not forwarded)
//!          I/O shell --Worker::answer_metadata(in_port, frame, now)--> MetadataServer
//!                    --> the port's smoltcp Interface (MAC SERVER_MAC, IP 169.254.169.254)
//!                    --> TCP :80 sockets --> http::respond(request, PortMetadata)
//!                    --> reply frames, sent out of the same port only
//! ```
//!
//! The instance is the port the frame came in on: nothing in the request (no header, no
//! address a guest could forge) picks the data, so a guest only ever reads its own. A port
//! with no instance ([`PortConfig::metadata`] None: no device_id yet) gets 404 for every path.
//!
//! The hot path pays one compare: the flow key carries a bit "IPv4 destination (or ARP
//! target) is 169.254.169.254", computed once per key; the metadata stage tests it.
//!
//! Non-goals: no IPv6 metadata address (fe80::a9fe:a9fe), no vendor data beyond `{}`, no
//! password or console endpoints; stacks are driven by the guest's own frames only (no timer
//! thread): a reply lost in a full batch is recovered by the guest's retransmission.
//!
//! [`PortConfig::metadata`]: crate::config::PortConfig::metadata

pub mod http;
mod render;
mod stack;

pub use stack::{MetadataServer, MetadataStats};

use crate::dhcp::PortDhcp;
use crate::mac::MacAddr;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub use crate::dhcp::METADATA_IP;

pub use crate::config::InstanceMetadata;

/// Largest user data accepted, decoded: Nova's limit (65535 bytes of base64, ~48 KiB).
pub const MAX_USER_DATA: usize = 65_535;

impl InstanceMetadata {
    /// Checks what the config cannot type: a uuid, base64 user data within Nova's limit.
    pub fn validate(&self) -> Result<(), String> {
        if self.uuid.is_empty() {
            return Err("uuid: must not be empty".into());
        }
        if let Some(u) = &self.user_data {
            if u.len() > MAX_USER_DATA {
                return Err(format!(
                    "user_data: {} bytes of base64, more than {MAX_USER_DATA}",
                    u.len()
                ));
            }
            decode_user_data(u).map_err(|e| format!("user_data: not base64: {e}"))?;
        }
        Ok(())
    }

    /// The decoded user data (None: none, or not base64, which validation refuses).
    pub fn user_data_bytes(&self) -> Option<Vec<u8>> {
        self.user_data
            .as_deref()
            .and_then(|u| decode_user_data(u).ok())
    }
}

fn decode_user_data(u: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(u.trim())
}

/// What the metadata service serves on one VM port: compiled by the snapshot for every VM
/// port with a fixed IPv4 address (the TCP connection is terminated on all of them; the
/// answers need an instance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMetadata {
    /// The switch port's name (the tap), Nova's `links[].id`.
    pub port_name: String,
    /// The port's MAC.
    pub mac: Option<MacAddr>,
    /// The port's first fixed IPv4 address: EC2 `local-ipv4`.
    pub local_ipv4: Ipv4Addr,
    /// The network's MTU, if known.
    pub mtu: Option<u32>,
    /// The port's DHCP data (subnet, routes, DNS) for `network_data.json`.
    pub dhcp: Option<PortDhcp>,
    /// The network's name in the switch (Neutron's network id when the agent wrote it).
    pub network: String,
    /// The instance; None: every path is 404.
    pub instance: Option<Arc<InstanceMetadata>>,
}

impl PortMetadata {
    /// The port's metadata data, or None when it has no fixed IPv4 address to serve.
    pub(crate) fn for_port(
        p: &crate::config::PortConfig,
        mtu: Option<u32>,
        dhcp: Option<&PortDhcp>,
    ) -> Option<PortMetadata> {
        let local_ipv4 = dhcp.map(|d| d.address.addr()).or_else(|| {
            p.fixed_ips.iter().find_map(|ip| match ip {
                std::net::IpAddr::V4(a) => Some(*a),
                std::net::IpAddr::V6(_) => None,
            })
        })?;
        Some(PortMetadata {
            port_name: p.name.clone(),
            mac: p.mac,
            local_ipv4,
            mtu,
            dhcp: dhcp.cloned(),
            network: p.network.clone(),
            instance: p.metadata.clone().map(Arc::new),
        })
    }
}

#[cfg(test)]
mod tests;
