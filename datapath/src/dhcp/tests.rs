//! The exchange per message type, and requests cut or bent every way (never a panic).

use super::*;
use crate::dhcp::{PortDhcp, SubnetOptions, SERVER_MAC};
use crate::mac::MacAddr;
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use ipnet::Ipv4Net;
use proptest::prelude::*;

const CLIENT: MacAddr = MacAddr([0xfa, 0x16, 0x3e, 0, 0, 5]);

fn port() -> PortDhcp {
    let hr = [(
        "192.168.0.0/16".parse().unwrap(),
        Ipv4Addr::new(10, 0, 0, 254),
    )];
    PortDhcp::new(
        Ipv4Addr::new(10, 0, 0, 5),
        &SubnetOptions {
            cidr: "10.0.0.0/24".parse().unwrap(),
            gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
            dns: &[Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(8, 8, 8, 8)],
            host_routes: &hr,
        },
        Some(1450),
        Some("vm-five"),
    )
}

fn message(kind: MessageType, ciaddr: Ipv4Addr, extra: &[DhcpOption]) -> Message {
    let mut m = Message::new_with_id(
        0xdead_beef,
        ciaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &CLIENT.0,
    );
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in extra {
        m.opts_mut().insert(o.clone());
    }
    m
}

/// A client frame: Ethernet broadcast, IPv4 from ciaddr (or 0.0.0.0) to 255.255.255.255,
/// UDP 68 -> 67.
fn frame(m: &Message) -> Vec<u8> {
    let payload = m.to_vec().unwrap();
    let mut f = Vec::new();
    f.extend_from_slice(&MacAddr::BROADCAST.0);
    f.extend_from_slice(&CLIENT.0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&m.ciaddr().octets());
    f.extend_from_slice(&[255; 4]);
    f.extend_from_slice(&68u16.to_be_bytes());
    f.extend_from_slice(&67u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&payload);
    f
}

/// A reply as the client's stack sees it, with its headers checked.
struct Seen {
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    msg: Message,
}

fn seen(f: &[u8]) -> Seen {
    let p = etherparse::SlicedPacket::from_ethernet(f).expect("a well-formed reply");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let hdr = ip.header().to_header();
    assert_eq!(
        hdr.header_checksum,
        hdr.calc_header_checksum(),
        "IPv4 checksum"
    );
    let Some(etherparse::TransportSlice::Udp(udp)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!((udp.source_port(), udp.destination_port()), (67, 68));
    let want = udp
        .to_header()
        .calc_checksum_ipv4(&hdr, udp.payload())
        .unwrap();
    assert_eq!(udp.checksum(), want, "UDP checksum");
    let msg = Message::decode(&mut Decoder::new(udp.payload())).unwrap();
    assert_eq!(&f[6..12], &SERVER_MAC.0);
    Seen {
        dst_mac: MacAddr(f[0..6].try_into().unwrap()),
        src: hdr.source.into(),
        dst: hdr.destination.into(),
        msg,
    }
}

fn run(m: &Message) -> Option<Seen> {
    answer(&frame(m), &port()).unwrap().map(|f| seen(&f))
}

fn opt(m: &Message, c: OptionCode) -> Option<DhcpOption> {
    m.opts().get(c).cloned()
}

#[test]
fn discover_gets_an_offer_with_every_option() {
    let s = run(&message(MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[])).unwrap();
    let m = &s.msg;
    assert_eq!(m.opcode(), Opcode::BootReply);
    assert_eq!(m.xid(), 0xdead_beef);
    assert_eq!(m.chaddr(), &CLIENT.0);
    assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(
        (s.dst_mac, s.src, s.dst),
        (CLIENT, crate::dhcp::METADATA_IP, m.yiaddr())
    );
    assert_eq!(
        opt(m, OptionCode::ServerIdentifier),
        Some(DhcpOption::ServerIdentifier(crate::dhcp::METADATA_IP))
    );
    let gw = Ipv4Addr::new(10, 0, 0, 1);
    assert_eq!(
        opt(m, OptionCode::SubnetMask),
        Some(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        opt(m, OptionCode::Router),
        Some(DhcpOption::Router(vec![gw]))
    );
    assert_eq!(
        opt(m, OptionCode::DomainNameServer),
        Some(DhcpOption::DomainNameServer(vec![
            Ipv4Addr::new(10, 0, 0, 53),
            Ipv4Addr::new(8, 8, 8, 8)
        ]))
    );
    let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
    assert_eq!(
        opt(m, OptionCode::ClasslessStaticRoute),
        Some(DhcpOption::ClasslessStaticRoute(vec![
            (net("0.0.0.0/0"), gw),
            (net("192.168.0.0/16"), Ipv4Addr::new(10, 0, 0, 254)),
            (net("169.254.169.254/32"), Ipv4Addr::UNSPECIFIED),
        ]))
    );
    assert_eq!(
        opt(m, OptionCode::InterfaceMtu),
        Some(DhcpOption::InterfaceMtu(1450))
    );
    assert_eq!(
        opt(m, OptionCode::AddressLeaseTime),
        Some(DhcpOption::AddressLeaseTime(86_400))
    );
    assert_eq!(
        opt(m, OptionCode::Renewal),
        Some(DhcpOption::Renewal(43_200))
    );
    assert_eq!(
        opt(m, OptionCode::Rebinding),
        Some(DhcpOption::Rebinding(75_600))
    );
    assert_eq!(
        opt(m, OptionCode::Hostname),
        Some(DhcpOption::Hostname("vm-five".into()))
    );
}

#[test]
fn request_for_the_ports_address_is_acked_and_any_other_is_naked() {
    let ours = DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 5));
    let sid = DhcpOption::ServerIdentifier(crate::dhcp::METADATA_IP);
    let s = run(&message(
        MessageType::Request,
        Ipv4Addr::UNSPECIFIED,
        &[ours, sid.clone()],
    ))
    .unwrap();
    assert_eq!(s.msg.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(s.msg.yiaddr(), Ipv4Addr::new(10, 0, 0, 5));
    assert!(s.msg.opts().get(OptionCode::AddressLeaseTime).is_some());

    let theirs = DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 6));
    let s = run(&message(
        MessageType::Request,
        Ipv4Addr::UNSPECIFIED,
        &[theirs],
    ))
    .unwrap();
    assert_eq!(s.msg.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(s.msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(s.dst, Ipv4Addr::BROADCAST);
    assert_eq!(
        s.dst_mac, CLIENT,
        "even a broadcast NAK goes to the client's MAC only"
    );
    assert!(s.msg.opts().get(OptionCode::AddressLeaseTime).is_none());
}

#[test]
fn request_to_another_server_is_not_answered() {
    let other = DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 2));
    let ours = DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 5));
    assert!(run(&message(
        MessageType::Request,
        Ipv4Addr::UNSPECIFIED,
        &[other, ours]
    ))
    .is_none());
}

#[test]
fn renewal_names_ciaddr_and_is_answered_to_it() {
    let ip = Ipv4Addr::new(10, 0, 0, 5);
    let s = run(&message(MessageType::Request, ip, &[])).unwrap();
    assert_eq!(s.msg.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(s.dst, ip);
    // Renewing an address the port no longer has (its fixed IP changed): NAK, so the client
    // starts over and DISCOVERs the new one.
    let s = run(&message(
        MessageType::Request,
        Ipv4Addr::new(10, 0, 0, 9),
        &[],
    ))
    .unwrap();
    assert_eq!(s.msg.opts().msg_type(), Some(MessageType::Nak));
}

#[test]
fn broadcast_flag_gets_a_broadcast_reply() {
    let mut m = message(MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]);
    m.set_flags(Flags::default().set_broadcast());
    let s = run(&m).unwrap();
    assert_eq!(s.dst, Ipv4Addr::BROADCAST);
    assert!(s.msg.flags().broadcast());
}

#[test]
fn release_and_decline_get_no_answer() {
    let ip = Ipv4Addr::new(10, 0, 0, 5);
    assert!(run(&message(MessageType::Release, ip, &[])).is_none());
    assert!(run(&message(MessageType::Decline, Ipv4Addr::UNSPECIFIED, &[])).is_none());
    // The address stays the port's: a later request is still acked.
    let s = run(&message(MessageType::Request, ip, &[])).unwrap();
    assert_eq!(s.msg.opts().msg_type(), Some(MessageType::Ack));
}

#[test]
fn inform_gets_options_without_a_lease() {
    let ip = Ipv4Addr::new(10, 0, 0, 5);
    let s = run(&message(MessageType::Inform, ip, &[])).unwrap();
    assert_eq!(s.msg.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(s.msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(s.msg.ciaddr(), ip);
    assert_eq!(s.dst, ip);
    assert!(s.msg.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert!(s.msg.opts().get(OptionCode::Renewal).is_none());
    assert!(s.msg.opts().get(OptionCode::Router).is_some());
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let good = frame(&message(MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]));
    // Every truncation of a good request is an error, none a panic.
    for n in 0..good.len() {
        assert!(answer(&good[..n], &port()).is_err(), "cut to {n} bytes");
    }
    let mut bad = good.clone();
    bad[42 + 236] = 0; // the magic cookie
    assert_eq!(
        answer(&bad, &port()),
        Err(DhcpError::Malformed("no DHCP magic cookie"))
    );
    let mut bad = good.clone();
    bad[42 + 2] = 17; // hlen
    assert_eq!(
        answer(&bad, &port()),
        Err(DhcpError::Malformed("hlen over 16"))
    );
    let mut bad = good.clone();
    bad[42] = 2; // op BOOTREPLY: a server's message
    assert_eq!(
        answer(&bad, &port()),
        Err(DhcpError::Malformed("not a BOOTREQUEST"))
    );
    let mut bad = good.clone();
    bad[14 + 9] = 6; // TCP
    assert_eq!(answer(&bad, &port()), Err(DhcpError::NotDhcp));
    let mut bad = good.clone();
    bad[14] = 0x44; // IHL 4
    assert!(matches!(
        answer(&bad, &port()),
        Err(DhcpError::Malformed(_))
    ));
    let mut bad = good.clone();
    bad[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4000u16.to_be_bytes()); // UDP length
    assert_eq!(
        answer(&bad, &port()),
        Err(DhcpError::Malformed("bad UDP length"))
    );
    // An option running past the end of the message.
    let mut bad = good[..42 + 240].to_vec();
    bad.extend_from_slice(&[53, 1, 1, 12, 200, b'x']);
    let (total, ulen) = ((bad.len() - 14) as u16, (bad.len() - 34) as u16);
    bad[16..18].copy_from_slice(&total.to_be_bytes());
    bad[38..40].copy_from_slice(&ulen.to_be_bytes());
    assert_eq!(answer(&bad, &port()), Err(DhcpError::Truncated));
    // Option 53 of the wrong length; option 94 of the wrong length (which made dhcproto
    // assert) is read past as any unknown option.
    let n = bad.len();
    bad[n - 3..].copy_from_slice(&[0, 0, 0]);
    bad[42 + 240..42 + 243].copy_from_slice(&[53, 2, 1]);
    assert_eq!(
        answer(&bad, &port()),
        Err(DhcpError::Malformed("option 53 is not 1 byte"))
    );
    bad[42 + 240..42 + 246].copy_from_slice(&[94, 1, 0, 53, 1, 1]);
    assert!(answer(&bad, &port()).unwrap().is_some());
    // No message type: plain BOOTP.
    let mut m = message(MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]);
    m.opts_mut().remove(OptionCode::MessageType);
    assert_eq!(
        answer(&frame(&m), &port()),
        Err(DhcpError::Malformed("no DHCP message type"))
    );
}

proptest! {
    /// Any bytes after a valid header never panic the server.
    #[test]
    fn arbitrary_payloads_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..400) {
        let good = frame(&message(MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]));
        let mut f = good[..(42 + cut).min(good.len())].to_vec();
        f.extend_from_slice(&tail);
        let _ = answer(&f, &port());
    }

    /// Options bent at random (a valid BOOTP header, garbage after the cookie).
    #[test]
    fn arbitrary_options_never_panic(opts in proptest::collection::vec(any::<u8>(), 0..300)) {
        let good = frame(&message(MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]));
        let mut f = good[..42 + 240].to_vec();
        f.extend_from_slice(&opts);
        let (total, ulen) = ((f.len() - 14) as u16, (f.len() - 34) as u16);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[38..40].copy_from_slice(&ulen.to_be_bytes());
        let _ = answer(&f, &port());
    }
}
