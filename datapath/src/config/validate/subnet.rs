//! `[[subnet]]`: network reference, prefix, gateway, DNS servers and host routes, each of
//! the subnet's IP version.

use super::{ConfigError, Ctx, Names};
use crate::config::raw::RawSubnet;
use crate::config::SubnetConfig;
use ipnet::IpNet;
use std::net::IpAddr;
use toml::Spanned;

/// Checks every `[[subnet]]` against the networks already validated.
pub(super) fn subnets(
    cx: &Ctx<'_>,
    raw: Vec<RawSubnet>,
    names: &Names,
) -> Result<Vec<SubnetConfig>, ConfigError> {
    let mut out: Vec<SubnetConfig> = Vec::new();
    for s in raw {
        let obj = format!("subnet {:?}", s.cidr.get_ref());
        if !names.networks.contains(s.network.get_ref()) {
            return Err(cx.err(
                Some(s.network.span()),
                format!("{obj}: network"),
                format!("unknown network {:?}", s.network.get_ref()),
            ));
        }
        let cidr: IpNet = s.cidr.get_ref().parse().map_err(|_| {
            cx.err(
                Some(s.cidr.span()),
                format!("{obj}: cidr"),
                format!("invalid CIDR {:?}", s.cidr.get_ref()),
            )
        })?;
        let cidr = cidr.trunc();
        if let Some(other) = out
            .iter()
            .find(|o| o.network == *s.network.get_ref() && o.cidr == cidr)
        {
            return Err(cx.err(
                Some(s.cidr.span()),
                format!("{obj}: cidr"),
                format!(
                    "duplicate subnet {} on network {:?}",
                    other.cidr, other.network
                ),
            ));
        }
        let v4 = cidr.addr().is_ipv4();
        let addr = |v: &Spanned<String>, field: &str| -> Result<IpAddr, ConfigError> {
            let a: IpAddr = v.get_ref().parse().map_err(|_| {
                cx.err(
                    Some(v.span()),
                    format!("{obj}: {field}"),
                    format!("invalid IP address {:?}", v.get_ref()),
                )
            })?;
            if a.is_ipv4() != v4 {
                return Err(cx.err(
                    Some(v.span()),
                    format!("{obj}: {field}"),
                    format!("{a} is not of the subnet's IP version"),
                ));
            }
            Ok(a)
        };
        let gateway_ip = s
            .gateway_ip
            .as_ref()
            .map(|g| addr(g, "gateway_ip"))
            .transpose()?;
        if let (Some(g), Some(raw)) = (gateway_ip, &s.gateway_ip) {
            if !cidr.contains(&g) {
                return Err(cx.err(
                    Some(raw.span()),
                    format!("{obj}: gateway_ip"),
                    format!("{g} is outside {cidr}"),
                ));
            }
        }
        let dns_nameservers = s
            .dns_nameservers
            .iter()
            .map(|d| addr(d, "dns_nameservers"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut host_routes = Vec::new();
        for r in &s.host_routes {
            let dest: IpNet = r.destination.get_ref().parse().map_err(|_| {
                cx.err(
                    Some(r.destination.span()),
                    format!("{obj}: host_routes: destination"),
                    format!("invalid CIDR {:?}", r.destination.get_ref()),
                )
            })?;
            if dest.addr().is_ipv4() != v4 {
                return Err(cx.err(
                    Some(r.destination.span()),
                    format!("{obj}: host_routes: destination"),
                    format!("{dest} is not of the subnet's IP version"),
                ));
            }
            host_routes.push((dest.trunc(), addr(&r.nexthop, "host_routes: nexthop")?));
        }
        out.push(SubnetConfig {
            network: s.network.into_inner(),
            cidr,
            gateway_ip,
            dns_nameservers,
            host_routes,
            enable_dhcp: s.enable_dhcp.map(Spanned::into_inner).unwrap_or(true),
        });
    }
    Ok(out)
}
