//! The DHCP message (RFC 2131 section 2, options per RFC 2132 and RFC 3442): the few fields
//! and options a server needs read from a request with every length checked, and a reply
//! written whole.
//!
//! Hand-written rather than taken from a DHCP crate: `dhcproto` 0.15 (the maintained one)
//! decodes every option it knows and asserts on some lengths (option 94 with a length other
//! than 3 panics in a debug build and desynchronises the parse in a release one; the proptest
//! in `tests.rs` found it). A guest controls these bytes, so the switch reads only what it
//! needs: the message type (53), the requested address (50) and the server identifier (54).
//! `dhcproto` stays as a dev-dependency: the tests build requests and read replies with it,
//! an independent codec checking this one.

use super::DhcpError;
use std::net::Ipv4Addr;

/// BOOTP fixed header (236 bytes) + magic cookie.
const FIXED: usize = 236;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// RFC 1542 2.1: a BOOTP message is at least 300 bytes; replies are padded to it (some
/// relays and old clients drop shorter ones).
const MIN_MESSAGE: usize = 300;

const OP_REQUEST: u8 = 1;
const OP_REPLY: u8 = 2;

/// Option codes (RFC 2132, RFC 3442).
pub(super) mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const MTU: u8 = 26;
    pub const BROADCAST: u8 = 28;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const RENEWAL: u8 = 58;
    pub const REBINDING: u8 = 59;
    pub const CLASSLESS_ROUTES: u8 = 121;
    pub const END: u8 = 255;
}

/// DHCP message types (option 53).
pub(super) mod kind {
    pub const DISCOVER: u8 = 1;
    pub const OFFER: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const DECLINE: u8 = 4;
    pub const ACK: u8 = 5;
    pub const NAK: u8 = 6;
    pub const RELEASE: u8 = 7;
    pub const INFORM: u8 = 8;
}

/// What a server reads from a client's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Request<'a> {
    /// The fixed header, echoed in the reply (xid, flags, giaddr, chaddr...).
    pub header: &'a [u8],
    pub message_type: u8,
    pub ciaddr: Ipv4Addr,
    pub broadcast: bool,
    pub requested_ip: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
}

fn ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// Reads a client message; every option's length is checked against the message before its
/// value is touched.
pub(super) fn parse(m: &[u8]) -> Result<Request<'_>, DhcpError> {
    if m.len() < FIXED + MAGIC.len() {
        return Err(DhcpError::Truncated);
    }
    if m[FIXED..FIXED + 4] != MAGIC {
        return Err(DhcpError::Malformed("no DHCP magic cookie"));
    }
    if m[0] != OP_REQUEST {
        return Err(DhcpError::Malformed("not a BOOTREQUEST"));
    }
    if m[2] > 16 {
        return Err(DhcpError::Malformed("hlen over 16"));
    }
    let mut r = Request {
        header: &m[..FIXED],
        message_type: 0,
        ciaddr: ipv4(&m[12..16]),
        broadcast: m[10] & 0x80 != 0,
        requested_ip: None,
        server_id: None,
    };
    let mut at = FIXED + MAGIC.len();
    // Options end at END or at the end of the message.
    while let Some(&code) = m.get(at) {
        match code {
            opt::PAD => {
                at += 1;
                continue;
            }
            opt::END => break,
            _ => {}
        }
        let len = usize::from(*m.get(at + 1).ok_or(DhcpError::Truncated)?);
        let value = m.get(at + 2..at + 2 + len).ok_or(DhcpError::Truncated)?;
        at += 2 + len;
        // The first instance of an option counts (RFC 3396 concatenation is for long
        // options, which none of these three is).
        match code {
            opt::MESSAGE_TYPE if r.message_type == 0 => {
                if len != 1 {
                    return Err(DhcpError::Malformed("option 53 is not 1 byte"));
                }
                r.message_type = value[0];
            }
            opt::REQUESTED_IP | opt::SERVER_ID => {
                if len != 4 {
                    return Err(DhcpError::Malformed("address option is not 4 bytes"));
                }
                let slot = if code == opt::REQUESTED_IP {
                    &mut r.requested_ip
                } else {
                    &mut r.server_id
                };
                slot.get_or_insert(ipv4(value));
            }
            _ => {}
        }
    }
    if r.message_type == 0 {
        // Plain BOOTP: not served (Neutron's dnsmasq does not either).
        return Err(DhcpError::Malformed("no DHCP message type"));
    }
    Ok(r)
}

/// A reply being written: the request's fixed header turned into a BOOTREPLY, then options.
pub(super) struct Reply {
    buf: Vec<u8>,
}

impl Reply {
    /// Starts a reply to `req` (RFC 2131 table 3): op BOOTREPLY, hops/secs 0, xid, flags,
    /// giaddr and chaddr echoed, `ciaddr` and `yiaddr` as given, siaddr, sname and file
    /// zeroed, the magic cookie.
    pub(super) fn new(req: &Request<'_>, ciaddr: Ipv4Addr, yiaddr: Ipv4Addr) -> Reply {
        let mut buf = Vec::with_capacity(MIN_MESSAGE + 128);
        buf.extend_from_slice(req.header);
        buf[0] = OP_REPLY;
        buf[3] = 0; // hops
        buf[8..10].fill(0); // secs
        buf[12..16].copy_from_slice(&ciaddr.octets());
        buf[16..20].copy_from_slice(&yiaddr.octets());
        buf[20..24].fill(0); // siaddr: no next server (no PXE)
        buf[44..FIXED].fill(0); // sname, file
        buf.extend_from_slice(&MAGIC);
        Reply { buf }
    }

    /// One option; `value` is at most 255 bytes (callers bound it).
    pub(super) fn option(&mut self, code: u8, value: &[u8]) -> &mut Reply {
        let len = value.len().min(255);
        self.buf.push(code);
        self.buf.push(len as u8);
        self.buf.extend_from_slice(&value[..len]);
        self
    }

    pub(super) fn u32(&mut self, code: u8, v: u32) -> &mut Reply {
        self.option(code, &v.to_be_bytes())
    }

    pub(super) fn addrs(&mut self, code: u8, a: &[Ipv4Addr]) -> &mut Reply {
        let v: Vec<u8> = a.iter().take(63).flat_map(|a| a.octets()).collect();
        self.option(code, &v)
    }

    /// The message, ended and padded to the BOOTP minimum.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.buf.push(opt::END);
        if self.buf.len() < MIN_MESSAGE {
            self.buf.resize(MIN_MESSAGE, 0);
        }
        self.buf
    }
}

/// Option 121's value (RFC 3442): per route the prefix length, the significant octets of the
/// destination, the router. Routes that would overflow one option's 255 bytes are left out
/// (a subnet has at most Neutron's 20 host routes: 9 bytes each at most).
pub(super) fn classless_routes(routes: &[(ipnet::Ipv4Net, Ipv4Addr)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (dest, router) in routes {
        let plen = dest.prefix_len();
        let sig = usize::from(plen).div_ceil(8);
        if v.len() + 1 + sig + 4 > 255 {
            break;
        }
        v.push(plen);
        v.extend_from_slice(&dest.network().octets()[..sig]);
        v.extend_from_slice(&router.octets());
    }
    v
}
