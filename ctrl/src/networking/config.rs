//! What the operator configures: which segments exist and which tenants may draw.
//! Mirrors ML2's `network_vlan_ranges`, `flat_networks`, `vni_ranges` and
//! `tenant_network_types`.

use serde::{Deserialize, Serialize};

/// `physnet` or `physnet:min:max` (a physnet without a range allows admin
/// provider networks on it but gives tenants nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanRange {
    /// The physnet (`[[physnet]]` name on the hosts).
    pub physnet: String,
    /// The VLAN ids tenant networks may take on it; None: provider networks only.
    pub range: Option<(u32, u32)>,
}

impl VlanRange {
    /// Parses `physnet` or `physnet:min:max`, as Neutron's `network_vlan_ranges`.
    pub fn parse(s: &str) -> Result<VlanRange, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad = || format!("network_vlan_ranges entry '{s}' is not physnet[:min:max]");
        match parts.as_slice() {
            [p] if !p.is_empty() => Ok(VlanRange {
                physnet: p.to_string(),
                range: None,
            }),
            [p, a, b] if !p.is_empty() => {
                let a: u32 = a.parse().map_err(|_| bad())?;
                let b: u32 = b.parse().map_err(|_| bad())?;
                if a == 0 || b > 4094 || a > b {
                    return Err(bad());
                }
                Ok(VlanRange {
                    physnet: p.to_string(),
                    range: Some((a, b)),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// `min:max` tunnel id range.
pub fn parse_id_range(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("range '{s}' is not min:max");
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let a: u32 = a.trim().parse().map_err(|_| bad())?;
    let b: u32 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || a > b || b > MAX_VNI {
        return Err(bad());
    }
    Ok((a, b))
}

/// The largest VXLAN/Geneve network identifier (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
/// The networking service's settings (Neutron's ML2 options), as read from TOML.
pub struct NetConfig {
    /// Types tenant networks draw from, in order of preference (devstack: vxlan).
    pub tenant_network_types: Vec<String>,
    /// `physnet:100:199` entries.
    pub network_vlan_ranges: Vec<String>,
    /// Physnets on which flat networks may be created; `*` allows any.
    pub flat_networks: Vec<String>,
    /// `min:max` VNI ranges tenant vxlan networks are drawn from.
    pub vni_ranges: Vec<String>,
    /// `min:max` VNI ranges tenant geneve networks are drawn from.
    pub geneve_vni_ranges: Vec<String>,
    /// MTU of the physical networks; overlay networks subtract their header.
    pub global_physnet_mtu: u32,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            tenant_network_types: vec!["vxlan".into()],
            network_vlan_ranges: vec!["physnet".into()],
            flat_networks: vec!["*".into()],
            vni_ranges: vec!["1000:2000".into()],
            geneve_vni_ranges: vec!["1:1000".into()],
            global_physnet_mtu: 1500,
        }
    }
}

/// The configuration checked and parsed once.
#[derive(Debug, Clone)]
pub struct Segments {
    /// Network types tenant networks get, in order of preference.
    pub tenant_types: Vec<String>,
    /// VLAN ranges per physnet.
    pub vlan: Vec<VlanRange>,
    /// Physnets flat networks may use (`*`: any).
    pub flat: Vec<String>,
    /// Tenant VNI ranges for vxlan.
    pub vxlan: Vec<(u32, u32)>,
    /// Tenant VNI ranges for geneve.
    pub geneve: Vec<(u32, u32)>,
    /// The MTU of the physical networks; tunnelled networks get it less their overhead.
    pub physnet_mtu: u32,
}

/// The `provider:network_type` values weft knows.
pub const NETWORK_TYPES: [&str; 5] = ["flat", "vlan", "vxlan", "geneve", "local"];

impl Segments {
    /// Checks and parses the config's ranges: a bad range fails the start, not a later create.
    pub fn from_config(c: &NetConfig) -> Result<Segments, String> {
        for t in &c.tenant_network_types {
            if !NETWORK_TYPES.contains(&t.as_str()) {
                return Err(format!("tenant_network_types: unknown type '{t}'"));
            }
        }
        Ok(Segments {
            tenant_types: c.tenant_network_types.clone(),
            vlan: c
                .network_vlan_ranges
                .iter()
                .map(|s| VlanRange::parse(s))
                .collect::<Result<_, _>>()?,
            flat: c.flat_networks.clone(),
            vxlan: c
                .vni_ranges
                .iter()
                .map(|s| parse_id_range(s))
                .collect::<Result<_, _>>()?,
            geneve: c
                .geneve_vni_ranges
                .iter()
                .map(|s| parse_id_range(s))
                .collect::<Result<_, _>>()?,
            physnet_mtu: c.global_physnet_mtu,
        })
    }

    /// Whether the physnet is in `network_vlan_ranges` (a vlan network may use it).
    pub fn vlan_physnet_known(&self, physnet: &str) -> bool {
        self.vlan.iter().any(|r| r.physnet == physnet)
    }

    /// Whether a flat network may use the physnet.
    pub fn flat_allowed(&self, physnet: &str) -> bool {
        self.flat.iter().any(|p| p == "*" || p == physnet)
    }

    /// The largest MTU a network of this type can carry.
    pub fn max_mtu(&self, network_type: &str) -> u32 {
        match network_type {
            "vxlan" => self.physnet_mtu.saturating_sub(50),
            "geneve" => self.physnet_mtu.saturating_sub(58),
            _ => self.physnet_mtu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges() {
        assert_eq!(
            VlanRange::parse("physnet:100:199").unwrap(),
            VlanRange {
                physnet: "physnet".into(),
                range: Some((100, 199))
            }
        );
        assert_eq!(VlanRange::parse("p").unwrap().range, None);
        assert!(VlanRange::parse("p:200:100").is_err());
        assert!(VlanRange::parse("p:1:5000").is_err());
        assert_eq!(parse_id_range("1000:2000").unwrap(), (1000, 2000));
        assert!(parse_id_range("x").is_err());
        let s = Segments::from_config(&NetConfig::default()).unwrap();
        assert_eq!(s.max_mtu("vxlan"), 1450);
        assert!(s.flat_allowed("anything"));
    }
}
