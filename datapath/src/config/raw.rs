//! Parsing: TOML text -> raw typed structs. Every value keeps its span so that validation can
//! name the line; a syntax error, an unknown key or a wrong type is reported here with the file,
//! the line and the table it falls in.

use super::error::{ConfigError, Ctx};
use serde::Deserialize;
use toml::Spanned;

/// Parses the text of `cx` into raw structs (no semantic checks).
pub(super) fn parse(cx: &Ctx<'_>) -> Result<RawFile, ConfigError> {
    toml::from_str(cx.text).map_err(|e| {
        let span = e.span();
        let table = span
            .as_ref()
            .map(|s| cx.table_at(s.start))
            .unwrap_or_default();
        cx.err(span, table, e.message().trim().to_string())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub switch: Option<RawSwitch>,
    #[serde(default)]
    pub physnet: Vec<RawPhysnet>,
    #[serde(default)]
    pub network: Vec<RawNetwork>,
    #[serde(default)]
    pub port: Vec<RawPort>,
    pub tunnel: Option<RawTunnel>,
    #[serde(default)]
    pub tunnel_peer: Vec<RawTunnelPeer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnel {
    pub local_ip: Spanned<String>,
    pub udp_port: Option<Spanned<i64>>,
    #[serde(default)]
    pub remote_ips: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnelPeer {
    pub ip: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSwitch {
    pub control_socket: Option<Spanned<String>>,
    pub mac_aging_secs: Option<Spanned<i64>>,
    pub workers: Option<Spanned<i64>>,
    pub mac_table_size: Option<Spanned<i64>>,
    pub worker_nice: Option<Spanned<i64>>,
    pub busy_poll_us: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPhysnet {
    pub name: Spanned<String>,
    pub interface: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub network_type: Spanned<String>,
    pub physnet: Option<Spanned<String>>,
    pub segmentation_id: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPort {
    pub name: Spanned<String>,
    pub kind: Option<Spanned<String>>,
    pub network: Spanned<String>,
    pub mac: Option<Spanned<String>>,
    #[serde(default)]
    pub fixed_ips: Vec<Spanned<String>>,
    pub port_security: Option<Spanned<bool>>,
    #[serde(default)]
    pub allowed_address_pairs: Vec<RawPair>,
    pub mtu: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPair {
    pub mac: Option<Spanned<String>>,
    pub ip_address: Spanned<String>,
}
