//! The DHCPv4 exchange, as one pure function: request frame + the port's [`PortDhcp`] ->
//! reply frame or nothing (RFC 2131 section 4.3, server behaviour, for a server that owns
//! exactly one binding per client: the port's fixed IP).

use super::message::{self, kind, opt, Reply, Request};
use super::wire;
use super::{PortDhcp, SERVER_MAC};
use std::net::Ipv4Addr;

/// Why a request got no answer: counted by the switch, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    /// Shorter than its headers say.
    #[error("truncated DHCP request")]
    Truncated,
    /// Not IPv4/UDP to port 67 (the pipeline sent something else: a bug, but no panic).
    #[error("not a DHCP request")]
    NotDhcp,
    /// Headers or the DHCP message make no sense.
    #[error("malformed DHCP request: {0}")]
    Malformed(&'static str),
}

/// Answers one client frame for the port `p`: DISCOVER -> OFFER, REQUEST -> ACK (NAK when the
/// address it asks for is not the port's), INFORM -> ACK without a lease, RELEASE and DECLINE
/// -> nothing (there is no pool to return the address to: it stays the port's). A REQUEST
/// naming another server (the client chose another offer) gets nothing, as RFC 2131 says.
pub fn answer(frame: &[u8], p: &PortDhcp) -> Result<Option<Vec<u8>>, DhcpError> {
    let (client_mac, payload) = wire::parse(frame)?;
    let req = message::parse(payload)?;
    let reply = match req.message_type {
        kind::DISCOVER => Answer::Offer,
        kind::REQUEST if req.server_id.is_some_and(|s| s != p.server) => return Ok(None),
        kind::REQUEST => {
            // SELECTING / INIT-REBOOT name the address in option 50; RENEWING / REBINDING in
            // ciaddr.
            if req.requested_ip.unwrap_or(req.ciaddr) == p.address.addr() {
                Answer::Ack
            } else {
                Answer::Nak
            }
        }
        kind::INFORM => Answer::Inform,
        kind::RELEASE | kind::DECLINE => return Ok(None),
        _ => return Err(DhcpError::Malformed("unknown DHCP message type")),
    };
    let payload = reply_message(&req, reply, p);
    // Where the reply goes (RFC 2131 4.1): a NAK, or a client that asked for broadcast, to
    // 255.255.255.255; to ciaddr when the client has one (INFORM, RENEWING); else to yiaddr
    // at the client's MAC (it accepts frames for the address it is being offered).
    let dst = if reply == Answer::Nak || req.broadcast {
        Ipv4Addr::BROADCAST
    } else if !req.ciaddr.is_unspecified() {
        req.ciaddr
    } else {
        p.address.addr()
    };
    // The frame only ever leaves on the client's own port, so the client's MAC is the
    // destination even for an IP broadcast: no other guest sees it.
    Ok(Some(wire::build(
        SERVER_MAC, client_mac, p.server, dst, &payload,
    )))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Offer,
    Ack,
    Nak,
    Inform,
}

fn reply_message(req: &Request<'_>, a: Answer, p: &PortDhcp) -> Vec<u8> {
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let (ciaddr, yiaddr) = match a {
        Answer::Offer | Answer::Ack => (unspecified, p.address.addr()),
        Answer::Nak => (unspecified, unspecified),
        Answer::Inform => (req.ciaddr, unspecified),
    };
    let mut r = Reply::new(req, ciaddr, yiaddr);
    r.option(
        opt::MESSAGE_TYPE,
        &[match a {
            Answer::Offer => kind::OFFER,
            Answer::Ack | Answer::Inform => kind::ACK,
            Answer::Nak => kind::NAK,
        }],
    );
    r.addrs(opt::SERVER_ID, &[p.server]);
    if a == Answer::Nak {
        return r.finish();
    }
    if a != Answer::Inform {
        // RFC 2131 4.3.5: no lease time in the answer to an INFORM.
        r.u32(opt::LEASE_TIME, p.lease_secs)
            .u32(opt::RENEWAL, p.lease_secs / 2)
            .u32(opt::REBINDING, (u64::from(p.lease_secs) * 7 / 8) as u32);
    }
    r.addrs(opt::SUBNET_MASK, &[p.address.netmask()])
        .addrs(opt::BROADCAST, &[p.address.broadcast()]);
    if let Some(gw) = p.router {
        r.addrs(opt::ROUTER, &[gw]);
    }
    if !p.dns.is_empty() {
        r.addrs(opt::DNS, &p.dns);
    }
    if !p.routes.is_empty() {
        r.option(opt::CLASSLESS_ROUTES, &message::classless_routes(&p.routes));
    }
    if let Some(mtu) = p.mtu {
        r.option(opt::MTU, &mtu.to_be_bytes());
    }
    r.option(opt::HOSTNAME, p.hostname.as_bytes());
    r.finish()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
