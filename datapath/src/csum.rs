//! Internet checksum (RFC 1071) helpers.

use std::net::IpAddr;

/// Adds `data` to a running one's-complement sum (not folded).
#[inline]
pub fn add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        if sum >= 0x8000_0000 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    if let [b] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*b) << 8);
    }
    sum
}

/// Folds a running sum to 16 bits (not complemented).
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum of `data`: complemented folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(add(0, data))
}

/// Pseudo-header sum for TCP/UDP/ICMPv6 over IPv4 or IPv6 (not folded).
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u32 {
    let mut s = 0u32;
    match (src, dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            s = add(s, &a.octets());
            s = add(s, &b.octets());
            s = s.wrapping_add(u32::from(proto));
            s = s.wrapping_add(len & 0xffff);
        }
        (a, b) => {
            let a6 = match a {
                IpAddr::V6(x) => x,
                IpAddr::V4(x) => x.to_ipv6_mapped(),
            };
            let b6 = match b {
                IpAddr::V6(x) => x,
                IpAddr::V4(x) => x.to_ipv6_mapped(),
            };
            s = add(s, &a6.octets());
            s = add(s, &b6.octets());
            s = add(s, &len.to_be_bytes());
            s = s.wrapping_add(u32::from(proto));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // From RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add(0, &d)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
        // odd length pads with zero
        assert_eq!(fold(add(0, &[0xab])), 0xab00);
    }
}
