//! IP address management as plain arithmetic: CIDRs, pools and allocation.
//!
//! Addresses of both families are held as `u128` with their version beside
//! them, so pool and range logic is written once.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A parsed network prefix (`10.0.0.0/24`, `2001:db8::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub version: u8,
    pub network: u128,
    pub prefix: u8,
}

/// An inclusive address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub start: u128,
    pub end: u128,
}

pub fn ip_to_u128(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(a) => (4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}

pub fn u128_to_ip(version: u8, v: u128) -> IpAddr {
    if version == 4 {
        // Only ever called with values that came from a v4 address.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(v).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

pub fn parse_ip(s: &str) -> Option<(u8, u128)> {
    s.parse::<IpAddr>().ok().map(ip_to_u128)
}

pub fn fmt_ip(version: u8, v: u128) -> String {
    u128_to_ip(version, v).to_string()
}

impl Cidr {
    fn bits(version: u8) -> u8 {
        if version == 4 {
            32
        } else {
            128
        }
    }

    fn host_mask(&self) -> u128 {
        let host_bits = Self::bits(self.version) - self.prefix;
        if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        }
    }

    /// Parses `addr/len`; the reason for a refusal is returned for a 400.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not a valid IP subnet"))?;
        let (version, network) =
            parse_ip(addr).ok_or_else(|| format!("'{s}' is not a valid IP subnet"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| *p <= Self::bits(version))
            .ok_or_else(|| format!("'{s}' is not a valid IP subnet"))?;
        let c = Cidr {
            version,
            network,
            prefix,
        };
        if network & c.host_mask() != 0 {
            let fixed = Cidr {
                network: network & !c.host_mask(),
                ..c
            };
            return Err(format!(
                "'{s}' isn't a recognized IP subnet cidr, '{fixed}' is recommended"
            ));
        }
        Ok(c)
    }

    pub fn first(&self) -> u128 {
        self.network
    }

    pub fn last(&self) -> u128 {
        self.network | self.host_mask()
    }

    pub fn contains(&self, version: u8, ip: u128) -> bool {
        version == self.version && ip >= self.first() && ip <= self.last()
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.version == other.version
            && self.first() <= other.last()
            && other.first() <= self.last()
    }

    /// Addresses that may be handed out: for IPv4 the network and broadcast
    /// addresses are excluded (unless the prefix leaves no room for them).
    pub fn usable(&self) -> Range {
        if self.version == 4 && self.prefix < 31 {
            Range {
                start: self.first() + 1,
                end: self.last() - 1,
            }
        } else if self.version == 6 && self.prefix < 127 {
            // The subnet-router anycast address (all host bits zero) is reserved.
            Range {
                start: self.first() + 1,
                end: self.last(),
            }
        } else {
            Range {
                start: self.first(),
                end: self.last(),
            }
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            u128_to_ip(self.version, self.network),
            self.prefix
        )
    }
}

/// The default allocation pools: the usable range minus the gateway.
pub fn default_pools(cidr: &Cidr, gateway: Option<u128>) -> Vec<Range> {
    let r = cidr.usable();
    match gateway {
        Some(g) if g >= r.start && g <= r.end => {
            let mut out = Vec::new();
            if g > r.start {
                out.push(Range {
                    start: r.start,
                    end: g - 1,
                });
            }
            if g < r.end {
                out.push(Range {
                    start: g + 1,
                    end: r.end,
                });
            }
            out
        }
        _ => vec![r],
    }
}

/// Checks explicit pools against the CIDR and the gateway; the error is the
/// reason for a 400 on `allocation_pools` (or `gateway_ip`).
pub fn validate_pools(
    cidr: &Cidr,
    pools: &[Range],
    gateway: Option<u128>,
) -> Result<(), (String, String)> {
    let field = "allocation_pools".to_string();
    for p in pools {
        if p.start > p.end {
            return Err((
                field,
                format!(
                    "pool start {} is after its end {}",
                    fmt_ip(cidr.version, p.start),
                    fmt_ip(cidr.version, p.end)
                ),
            ));
        }
        if !cidr.contains(cidr.version, p.start) || !cidr.contains(cidr.version, p.end) {
            return Err((
                field,
                format!(
                    "pool {}-{} is outside the subnet cidr {cidr}",
                    fmt_ip(cidr.version, p.start),
                    fmt_ip(cidr.version, p.end)
                ),
            ));
        }
    }
    let mut sorted: Vec<Range> = pools.to_vec();
    sorted.sort();
    for w in sorted.windows(2) {
        if w[1].start <= w[0].end {
            return Err((
                field,
                format!(
                    "pools {}-{} and {}-{} overlap",
                    fmt_ip(cidr.version, w[0].start),
                    fmt_ip(cidr.version, w[0].end),
                    fmt_ip(cidr.version, w[1].start),
                    fmt_ip(cidr.version, w[1].end)
                ),
            ));
        }
    }
    if let Some(g) = gateway {
        if pools.iter().any(|p| g >= p.start && g <= p.end) {
            return Err((
                "gateway_ip".to_string(),
                format!(
                    "gateway ip {} conflicts with allocation pool",
                    fmt_ip(cidr.version, g)
                ),
            ));
        }
    }
    Ok(())
}

/// The lowest free address of the pools, given the taken ones.
/// [`first_free`] over `taken` as it will be after a write: minus `freed`
/// (addresses the port keeps), plus `extra` (addresses this request took
/// already). Walks `taken` in place: a port create used to clone the
/// subnet's whole taken set, O(ports) allocations per create.
pub fn first_free_except(
    pools: &[Range],
    taken: &BTreeSet<u128>,
    freed: &[u128],
    extra: &[u128],
) -> Option<u128> {
    let mut sorted: Vec<Range> = pools.to_vec();
    sorted.sort();
    for p in sorted {
        let mut candidate = p.start;
        let mut it = taken
            .range(p.start..=p.end)
            .copied()
            .filter(|t| !freed.contains(t))
            .peekable();
        loop {
            match it.peek() {
                Some(&t) if t < candidate => {
                    it.next();
                    continue;
                }
                Some(&t) if t == candidate => {}
                _ if extra.contains(&candidate) => {}
                _ => return Some(candidate),
            }
            if candidate >= p.end {
                break;
            }
            candidate += 1;
        }
    }
    None
}

#[cfg(test)]
pub fn first_free(pools: &[Range], taken: &BTreeSet<u128>) -> Option<u128> {
    let mut sorted: Vec<Range> = pools.to_vec();
    sorted.sort();
    for p in sorted {
        let mut candidate = p.start;
        for t in taken.range(p.start..=p.end) {
            if *t == candidate {
                if candidate == p.end {
                    break;
                }
                candidate += 1;
            } else if *t > candidate {
                return Some(candidate);
            }
        }
        if !taken.contains(&candidate) && candidate <= p.end {
            return Some(candidate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-place walk agrees with building the adjusted set and using
    /// [`first_free`], over many small random cases.
    #[test]
    fn first_free_except_matches_the_adjusted_set() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as u128
        };
        for _ in 0..2000 {
            let pools = vec![
                Range {
                    start: 10 + rnd(3),
                    end: 14 + rnd(4),
                },
                Range {
                    start: 20,
                    end: 22 + rnd(2),
                },
            ];
            let taken: BTreeSet<u128> = (0..rnd(12)).map(|_| 8 + rnd(20)).collect();
            let freed: Vec<u128> = (0..rnd(3)).map(|_| 8 + rnd(20)).collect();
            let extra: Vec<u128> = (0..rnd(3)).map(|_| 8 + rnd(20)).collect();
            let mut adjusted = taken.clone();
            for f in &freed {
                adjusted.remove(f);
            }
            adjusted.extend(extra.iter().copied());
            assert_eq!(
                first_free_except(&pools, &taken, &freed, &extra),
                first_free(&pools, &adjusted),
                "pools {pools:?} taken {taken:?} freed {freed:?} extra {extra:?}"
            );
        }
    }

    fn ip(s: &str) -> u128 {
        parse_ip(s).unwrap().1
    }

    #[test]
    fn parses_and_rejects_host_bits() {
        let c = Cidr::parse("10.0.0.0/24").unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/24");
        let e = Cidr::parse("10.0.0.5/24").unwrap_err();
        assert!(e.contains("10.0.0.0/24"), "{e}");
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("banana").is_err());
        assert_eq!(Cidr::parse("2001:db8::/64").unwrap().version, 6);
    }

    #[test]
    fn default_pool_excludes_gateway_network_broadcast() {
        let c = Cidr::parse("10.0.0.0/24").unwrap();
        let pools = default_pools(&c, Some(ip("10.0.0.1")));
        assert_eq!(
            pools,
            vec![Range {
                start: ip("10.0.0.2"),
                end: ip("10.0.0.254")
            }]
        );
        let mid = default_pools(&c, Some(ip("10.0.0.100")));
        assert_eq!(mid.len(), 2);
        assert_eq!(mid[0].end, ip("10.0.0.99"));
        assert_eq!(mid[1].start, ip("10.0.0.101"));
        let none = default_pools(&c, None);
        assert_eq!(none[0].start, ip("10.0.0.1"));
    }

    #[test]
    fn validation_names_the_problem() {
        let c = Cidr::parse("10.0.0.0/24").unwrap();
        let overlap = [
            Range {
                start: ip("10.0.0.10"),
                end: ip("10.0.0.20"),
            },
            Range {
                start: ip("10.0.0.15"),
                end: ip("10.0.0.30"),
            },
        ];
        assert!(validate_pools(&c, &overlap, None)
            .unwrap_err()
            .1
            .contains("overlap"));
        let outside = [Range {
            start: ip("10.0.1.10"),
            end: ip("10.0.1.20"),
        }];
        assert!(validate_pools(&c, &outside, None)
            .unwrap_err()
            .1
            .contains("outside"));
        let ok = [Range {
            start: ip("10.0.0.10"),
            end: ip("10.0.0.20"),
        }];
        assert_eq!(
            validate_pools(&c, &ok, Some(ip("10.0.0.15")))
                .unwrap_err()
                .0,
            "gateway_ip"
        );
        assert!(validate_pools(&c, &ok, Some(ip("10.0.0.1"))).is_ok());
    }

    #[test]
    fn allocation_skips_taken_and_exhausts() {
        let pools = [Range {
            start: ip("10.0.0.2"),
            end: ip("10.0.0.4"),
        }];
        let mut taken = BTreeSet::new();
        for want in ["10.0.0.2", "10.0.0.3", "10.0.0.4"] {
            let got = first_free(&pools, &taken).unwrap();
            assert_eq!(got, ip(want));
            taken.insert(got);
        }
        assert_eq!(first_free(&pools, &taken), None);
        taken.remove(&ip("10.0.0.3"));
        assert_eq!(first_free(&pools, &taken), Some(ip("10.0.0.3")));
    }
}
