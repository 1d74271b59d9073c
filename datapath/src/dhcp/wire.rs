//! The Ethernet/IPv4/UDP around a DHCP message: the request's payload taken out with every
//! length checked, and the reply wrapped with correct checksums.

use super::DhcpError;
use crate::csum;
use crate::mac::MacAddr;
use std::net::{IpAddr, Ipv4Addr};

const ETH_HDR: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const PROTO_UDP: u8 = 17;
const UDP_HDR: usize = 8;
const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Takes the DHCP message out of an untagged Ethernet/IPv4/UDP frame to port 67, with the
/// client's source MAC. Every length is checked against the frame before it is used.
pub(super) fn parse(frame: &[u8]) -> Result<(MacAddr, &[u8]), DhcpError> {
    if frame.len() < ETH_HDR + 20 {
        return Err(DhcpError::Truncated);
    }
    if be16(frame, 12) != ETHERTYPE_IPV4 {
        return Err(DhcpError::NotDhcp);
    }
    let ip = &frame[ETH_HDR..];
    if ip[0] >> 4 != 4 {
        return Err(DhcpError::Malformed("not IPv4"));
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2));
    if ihl < 20 || total < ihl + UDP_HDR {
        return Err(DhcpError::Malformed("bad IPv4 header or total length"));
    }
    if total > ip.len() {
        return Err(DhcpError::Truncated);
    }
    if ip[9] != PROTO_UDP || be16(ip, 6) & 0x3fff != 0 {
        // Not UDP, or a fragment: DHCP requests are never fragmented.
        return Err(DhcpError::NotDhcp);
    }
    let udp = &ip[ihl..total];
    if be16(udp, 2) != SERVER_PORT {
        return Err(DhcpError::NotDhcp);
    }
    let ulen = usize::from(be16(udp, 4));
    if ulen < UDP_HDR || ulen > udp.len() {
        return Err(DhcpError::Malformed("bad UDP length"));
    }
    let mut src_mac = [0u8; 6];
    src_mac.copy_from_slice(&frame[6..12]);
    Ok((MacAddr(src_mac), &udp[UDP_HDR..ulen]))
}

/// An Ethernet/IPv4/UDP frame from the server (port 67) to the client (port 68).
pub(super) fn build(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = UDP_HDR + payload.len();
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(ETH_HDR + ip_len);
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    // IPv4: version 4, IHL 5, no DSCP, DF clear, TTL 64 (as dnsmasq sends).
    let ip_start = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(ip_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 64, PROTO_UDP, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let ip_sum = csum::checksum(&f[ip_start..ip_start + 20]);
    f[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
    let udp_start = f.len();
    f.extend_from_slice(&SERVER_PORT.to_be_bytes());
    f.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    let sum = csum::add(
        csum::pseudo_header(IpAddr::V4(src), IpAddr::V4(dst), PROTO_UDP, udp_len as u32),
        &f[udp_start..],
    );
    // An all-zero UDP checksum means "none" in IPv4; a computed zero is sent as all ones.
    let udp_sum = match !csum::fold(sum) {
        0 => 0xffff,
        s => s,
    };
    f[udp_start + 6..udp_start + 8].copy_from_slice(&udp_sum.to_be_bytes());
    f
}
