//! The JSON documents of the OpenStack metadata API, shaped as Nova renders them
//! (`nova/api/metadata/base.py`'s `meta_data.json` and `netutils.get_network_metadata`'s
//! `network_data.json`), so cloud-init's OpenStack datasource reads them unchanged.

use super::{InstanceMetadata, PortMetadata};
use serde_json::{json, Value};

/// The host name: the instance's, else its name, else its uuid (never empty: cloud-init
/// would set an empty host name).
pub(super) fn hostname(i: &InstanceMetadata) -> String {
    [&i.hostname, &i.name, &i.uuid]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default()
}

/// The availability zone, `nova` when none is set (Nova's default zone).
pub(super) fn availability_zone(i: &InstanceMetadata) -> String {
    if i.availability_zone.is_empty() {
        "nova".into()
    } else {
        i.availability_zone.clone()
    }
}

/// `meta_data.json`.
pub(super) fn meta_data(i: &InstanceMetadata) -> Vec<u8> {
    let keys: Vec<Value> = i
        .public_keys
        .iter()
        .map(|(name, data)| json!({"name": name, "type": "ssh", "data": data}))
        .collect();
    let doc = json!({
        "uuid": i.uuid,
        "name": if i.name.is_empty() { hostname(i) } else { i.name.clone() },
        "hostname": hostname(i),
        "availability_zone": availability_zone(i),
        "project_id": i.project_id,
        "launch_index": i.launch_index,
        "public_keys": i.public_keys,
        "keys": keys,
        "meta": i.meta,
        "devices": [],
        "dedicated_cpus": [],
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// `network_data.json`: one link (the port), its IPv4 network with routes and DNS, and the
/// DNS services, as Nova derives them from the port and its subnet.
pub(super) fn network_data(m: &PortMetadata) -> Vec<u8> {
    let link = json!({
        "id": m.port_name,
        "vif_id": m.port_name,
        "type": "ovs",
        "mtu": m.mtu,
        "ethernet_mac_address": m.mac.map(|a| a.to_string()),
    });
    let dns: Vec<Value> = m
        .dhcp
        .iter()
        .flat_map(|d| d.dns.iter())
        .map(|a| json!({"type": "dns", "address": a.to_string()}))
        .collect();
    let network = match &m.dhcp {
        Some(d) => {
            let routes: Vec<Value> = d
                .routes
                .iter()
                .filter(|(dst, _)| dst.addr() != super::METADATA_IP)
                .map(|(dst, via)| {
                    json!({
                        "network": dst.network().to_string(),
                        "netmask": dst.netmask().to_string(),
                        "gateway": via.to_string(),
                    })
                })
                .collect();
            json!({
                "id": "network0",
                "type": "ipv4_dhcp",
                "link": m.port_name,
                "ip_address": d.address.addr().to_string(),
                "netmask": d.address.netmask().to_string(),
                "routes": routes,
                "network_id": m.network,
                "services": dns,
            })
        }
        None => json!({
            "id": "network0",
            "type": "ipv4",
            "link": m.port_name,
            "ip_address": m.local_ipv4.to_string(),
            "netmask": "255.255.255.255",
            "routes": [],
            "network_id": m.network,
            "services": [],
        }),
    };
    let doc = json!({"links": [link], "networks": [network], "services": dns});
    serde_json::to_vec(&doc).unwrap_or_default()
}
