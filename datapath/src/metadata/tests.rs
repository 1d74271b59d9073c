//! The metadata service: the HTTP answers as pure functions, then whole TCP exchanges through
//! the switch (`Worker::process` -> `Verdict::Metadata` -> `Worker::answer_metadata`) with a
//! smoltcp client standing for the guest, for ports on two networks.

use super::http::{parse_request, respond, Request, RequestError};
use super::*;
use crate::{Datapath, Snapshot, SwitchConfig, Verdict};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use std::collections::VecDeque;
use std::sync::Arc;

const CONFIG: &str = r#"
[[network]]
name = "n1"
type = "local"
[[network]]
name = "n2"
type = "local"
[[subnet]]
network = "n1"
cidr = "10.1.0.0/24"
gateway_ip = "10.1.0.1"
dns_nameservers = ["10.1.0.53"]
[[port]]
name = "vm-a"
network = "n1"
mac = "fa:16:3e:00:00:0a"
fixed_ips = ["10.1.0.10"]
mtu = 1450
[port.metadata]
uuid = "aaaaaaaa-0000-4000-8000-00000000000a"
name = "alpha"
hostname = "alpha"
project_id = "p1"
public_keys = { k1 = "ssh-ed25519 AAAAalpha a@x" }
meta = { role = "web" }
user_data = "I2Nsb3VkLWNvbmZpZwpob3N0bmFtZTogYWxwaGEK"
[[port]]
name = "vm-b"
network = "n2"
mac = "fa:16:3e:00:00:0b"
fixed_ips = ["10.2.0.20"]
[port.metadata]
uuid = "bbbbbbbb-0000-4000-8000-00000000000b"
name = "beta"
[[port]]
name = "vm-c"
network = "n1"
mac = "fa:16:3e:00:00:0c"
fixed_ips = ["10.1.0.30"]
[[port]]
name = "vm-d"
network = "n1"
mac = "fa:16:3e:00:00:0d"
port_security = false
"#;

fn snap() -> Snapshot {
    Snapshot::compile(&SwitchConfig::from_toml(CONFIG, "t.toml").unwrap(), None).unwrap()
}

fn get(path: &str, port: &str) -> http::Response {
    let s = snap();
    let no = s.port_by_name(port).unwrap().no;
    let req = Request {
        method: "GET".into(),
        path: path.into(),
    };
    respond(&req, s.metadata(no).unwrap())
}

fn body(path: &str, port: &str) -> String {
    let r = get(path, port);
    assert_eq!(r.status, 200, "{path}: {r:?}");
    String::from_utf8(r.body).unwrap()
}

#[test]
fn meta_data_json_is_novas_shape() {
    let v: serde_json::Value =
        serde_json::from_str(&body("/openstack/latest/meta_data.json", "vm-a")).unwrap();
    assert_eq!(v["uuid"], "aaaaaaaa-0000-4000-8000-00000000000a");
    assert_eq!(v["name"], "alpha");
    assert_eq!(v["hostname"], "alpha");
    assert_eq!(v["availability_zone"], "nova");
    assert_eq!(v["project_id"], "p1");
    assert_eq!(v["launch_index"], 0);
    assert_eq!(v["public_keys"]["k1"], "ssh-ed25519 AAAAalpha a@x");
    assert_eq!(v["keys"][0]["data"], "ssh-ed25519 AAAAalpha a@x");
    assert_eq!(v["meta"]["role"], "web");
    // A dated version serves the same document.
    assert_eq!(
        body("/openstack/2018-08-27/meta_data.json", "vm-a"),
        body("/openstack/latest/meta_data.json", "vm-a")
    );
}

#[test]
fn network_data_vendor_data_user_data_and_listings() {
    let v: serde_json::Value =
        serde_json::from_str(&body("/openstack/latest/network_data.json", "vm-a")).unwrap();
    assert_eq!(v["links"][0]["ethernet_mac_address"], "fa:16:3e:00:00:0a");
    assert_eq!(v["links"][0]["mtu"], 1450);
    let n = &v["networks"][0];
    assert_eq!(n["type"], "ipv4_dhcp");
    assert_eq!(n["ip_address"], "10.1.0.10");
    assert_eq!(n["netmask"], "255.255.255.0");
    assert_eq!(n["routes"][0]["gateway"], "10.1.0.1");
    assert_eq!(n["link"], v["links"][0]["id"]);
    assert_eq!(v["services"][0]["address"], "10.1.0.53");
    assert_eq!(body("/openstack/latest/vendor_data2.json", "vm-a"), "{}");
    assert_eq!(
        body("/openstack/latest/user_data", "vm-a"),
        "#cloud-config\nhostname: alpha\n"
    );
    assert_eq!(
        body("/latest/user-data", "vm-a"),
        "#cloud-config\nhostname: alpha\n"
    );
    assert!(body("/openstack", "vm-a").lines().any(|l| l == "latest"));
    assert!(body("/openstack/latest/", "vm-a").contains("user_data"));
    // No user data: 404, and not listed.
    assert_eq!(get("/openstack/latest/user_data", "vm-b").status, 404);
    assert_eq!(get("/latest/user-data", "vm-b").status, 404);
    assert!(!body("/openstack/latest", "vm-b").contains("user_data"));
}

#[test]
fn ec2_paths_cloud_init_reads() {
    let idx = body("/latest/meta-data/", "vm-a");
    for item in ["instance-id", "local-ipv4", "hostname", "public-keys/"] {
        assert!(idx.lines().any(|l| l == item), "{item} not in {idx:?}");
    }
    assert_eq!(
        body("/latest/meta-data/instance-id", "vm-a"),
        "aaaaaaaa-0000-4000-8000-00000000000a"
    );
    assert_eq!(body("/latest/meta-data/local-ipv4", "vm-a"), "10.1.0.10");
    assert_eq!(body("/latest/meta-data/local-ipv4", "vm-b"), "10.2.0.20");
    assert_eq!(body("/latest/meta-data/hostname", "vm-a"), "alpha");
    assert_eq!(body("/latest/meta-data/public-keys/", "vm-a"), "0=k1");
    assert_eq!(
        body("/latest/meta-data/public-keys/0", "vm-a"),
        "openssh-key"
    );
    assert_eq!(
        body("/latest/meta-data/public-keys/0/openssh-key", "vm-a"),
        "ssh-ed25519 AAAAalpha a@x"
    );
    assert_eq!(
        body("/2009-04-04/meta-data/instance-id", "vm-b"),
        "bbbbbbbb-0000-4000-8000-00000000000b"
    );
    assert_eq!(
        get("/latest/meta-data/public-keys/1/openssh-key", "vm-a").status,
        404
    );
    assert_eq!(get("/latest/meta-data/public-keys/", "vm-b").status, 404);
}

#[test]
fn unknown_paths_methods_and_ports_without_instance() {
    for p in [
        "/nope",
        "/openstack/2099-01-01/meta_data.json",
        "/latest/meta-data/x",
        "/openstack/latest/x",
    ] {
        assert_eq!(get(p, "vm-a").status, 404, "{p}");
    }
    // vm-c has a fixed IP but no instance: every path is 404.
    for p in [
        "/openstack/latest/meta_data.json",
        "/latest/meta-data/local-ipv4",
        "/",
    ] {
        assert_eq!(get(p, "vm-c").status, 404, "{p}");
    }
    let s = snap();
    assert!(
        s.metadata(s.port_by_name("vm-d").unwrap().no).is_none(),
        "no fixed IPv4: not served"
    );
    let m = s.metadata(s.port_by_name("vm-a").unwrap().no).unwrap();
    let post = Request {
        method: "POST".into(),
        path: "/openstack/latest/meta_data.json".into(),
    };
    assert_eq!(respond(&post, m).status, 405);
    let head = Request {
        method: "HEAD".into(),
        path: "/latest/meta-data/local-ipv4".into(),
    };
    let r = respond(&head, m);
    assert!(String::from_utf8(r.to_bytes(true))
        .unwrap()
        .ends_with("Content-Length: 9\r\nConnection: close\r\n\r\n"));
}

#[test]
fn request_heads_are_parsed_or_refused() {
    assert_eq!(
        parse_request(b"GET /latest HTTP/1.1\r\nHost: x\r\n"),
        Ok(None)
    );
    assert_eq!(
        parse_request(b"GET /latest/meta-data/?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
        Ok(Some(Request {
            method: "GET".into(),
            path: "/latest/meta-data/".into()
        }))
    );
    assert_eq!(parse_request(b"GET\r\n\r\n"), Err(RequestError::Malformed));
    assert_eq!(
        parse_request(b"GET nope HTTP/1.1\r\n\r\n"),
        Err(RequestError::Malformed)
    );
    assert_eq!(
        parse_request(&[b'a'; http::MAX_REQUEST + 1]),
        Err(RequestError::TooLong)
    );
    assert_eq!(
        parse_request(&[0xff, 0xfe, b'\r', b'\n', b'\r', b'\n']),
        Err(RequestError::Malformed)
    );
}

#[test]
fn config_refuses_bad_metadata_naming_the_port() {
    let bad = CONFIG.replace("I2Nsb3VkLWNvbmZpZwpob3N0bmFtZTogYWxwaGEK", "not base64!");
    let e = SwitchConfig::from_toml(&bad, "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("port \"vm-a\": metadata") && e.contains("user_data: not base64"),
        "{e}"
    );
    let bad = CONFIG.replace(
        "uuid = \"bbbbbbbb-0000-4000-8000-00000000000b\"",
        "uuid = \"\"",
    );
    let e = SwitchConfig::from_toml(&bad, "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("port \"vm-b\": metadata") && e.contains("uuid"),
        "{e}"
    );
    let bad = CONFIG.replace("name = \"beta\"", "name = \"beta\"\nflavor = 1");
    assert!(SwitchConfig::from_toml(&bad, "t.toml").is_err());
    // A config built in code keeps the section through validation.
    let cfg = SwitchConfig::from_toml(CONFIG, "t.toml").unwrap();
    assert_eq!(cfg.validated("code").unwrap(), cfg);
}

// ---- whole exchanges through the switch, a smoltcp client as the guest ----

struct Wire {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}
struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);
impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}
impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0; len];
        let r = f(&mut b);
        self.0.push(b);
        r
    }
}
impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;
    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((Rx(f), Tx(&mut self.tx)))
    }
    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c.checksum.tcp = Checksum::Both;
        c
    }
}

/// What the guest on `port` reads from `http://169.254.169.254{path}`, with `client_ip` as
/// its address, over TCP through the switch; also the verdicts its frames got.
fn fetch(
    dp: &Arc<Datapath>,
    port: &str,
    mac: [u8; 6],
    client_ip: [u8; 4],
    path: &str,
) -> (String, Vec<Verdict>) {
    let snap = dp.snapshot();
    let no = snap.port_by_name(port).unwrap().no;
    let mut w = dp.worker();
    let mut wire = Wire {
        rx: VecDeque::new(),
        tx: Vec::new(),
    };
    let mut iface = Interface::new(
        Config::new(HardwareAddress::Ethernet(EthernetAddress(mac))),
        &mut wire,
        Instant::from_millis(0),
    );
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(
            IpAddress::v4(client_ip[0], client_ip[1], client_ip[2], client_ip[3]),
            0,
        ));
    });
    // /0: 169.254.169.254 on-link, as the switch's DHCP route makes it for a Linux guest
    // (smoltcp takes ARP replies only from inside its prefix).
    let mut sockets = SocketSet::new(Vec::new());
    let h = sockets.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 65536]),
        tcp::SocketBuffer::new(vec![0; 4096]),
    ));
    sockets
        .get_mut::<tcp::Socket>(h)
        .connect(iface.context(), (IpAddress::Ipv4(METADATA_IP), 80), 40000)
        .unwrap();
    let (mut sent, mut got, mut verdicts) = (false, Vec::new(), Vec::new());
    let mut t = 0u64;
    for _ in 0..200 {
        t += 1;
        iface.poll(Instant::from_millis(t as i64), &mut wire, &mut sockets);
        let s = sockets.get_mut::<tcp::Socket>(h);
        if s.can_send() && !sent {
            s.send_slice(
                format!("GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n").as_bytes(),
            )
            .unwrap();
            sent = true;
        }
        let mut b = [0u8; 4096];
        while let Ok(n @ 1..) = s.recv_slice(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
        if sent && !s.may_recv() && s.state() != tcp::State::Established {
            s.close();
        }
        for f in std::mem::take(&mut wire.tx) {
            let mut out = Vec::new();
            let v = w.process(no, &f, t * 1_000_000, &mut out);
            verdicts.push(v);
            if v == Verdict::Metadata {
                let r = w.answer_metadata(no, &f, t * 1_000_000);
                wire.rx.extend(r);
            }
        }
        if sent && s.state() == tcp::State::Closed {
            break;
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), verdicts)
}

fn dp() -> Arc<Datapath> {
    Arc::new(Datapath::new(snap()))
}

const MAC_A: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0b];
const MAC_C: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x0c];

#[test]
fn a_guest_fetches_its_own_metadata_over_tcp_through_the_switch() {
    let dp = dp();
    let (r, verdicts) = fetch(
        &dp,
        "vm-a",
        MAC_A,
        [10, 1, 0, 10],
        "/openstack/latest/meta_data.json",
    );
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r:?}");
    assert!(r.contains("Content-Type: application/json"), "{r}");
    assert!(
        r.contains("\"uuid\":\"aaaaaaaa-0000-4000-8000-00000000000a\""),
        "{r}"
    );
    assert!(
        verdicts.iter().all(|v| *v == Verdict::Metadata),
        "{verdicts:?}"
    );
    let (r, _) = fetch(
        &dp,
        "vm-a",
        MAC_A,
        [10, 1, 0, 10],
        "/latest/meta-data/local-ipv4",
    );
    assert!(r.ends_with("\r\n\r\n10.1.0.10"), "{r:?}");
    // Connections are recycled: many requests in a row on one port all get answered.
    for _ in 0..10 {
        let (r, _) = fetch(
            &dp,
            "vm-a",
            MAC_A,
            [10, 1, 0, 10],
            "/latest/meta-data/instance-id",
        );
        assert!(r.ends_with("aaaaaaaa-0000-4000-8000-00000000000a"), "{r:?}");
    }
    let (stats, stacks) = dp.metadata_stats();
    assert_eq!((stats.requests, stats.not_found, stacks), (12, 0, 1));
}

#[test]
fn each_port_reads_only_its_own_instance_whatever_address_it_claims() {
    let dp = dp();
    let (a, _) = fetch(
        &dp,
        "vm-a",
        MAC_A,
        [10, 1, 0, 10],
        "/latest/meta-data/instance-id",
    );
    let (b, _) = fetch(
        &dp,
        "vm-b",
        MAC_B,
        [10, 2, 0, 20],
        "/latest/meta-data/instance-id",
    );
    assert!(a.ends_with("aaaaaaaa-0000-4000-8000-00000000000a"), "{a:?}");
    assert!(b.ends_with("bbbbbbbb-0000-4000-8000-00000000000b"), "{b:?}");
    // vm-b using vm-a's address is stopped by port security before the service sees it.
    let (r, verdicts) = fetch(
        &dp,
        "vm-b",
        MAC_B,
        [10, 1, 0, 10],
        "/latest/meta-data/instance-id",
    );
    assert_eq!(r, "", "a spoofed source got an answer");
    assert!(
        verdicts.iter().all(|v| matches!(v, Verdict::Drop { .. })),
        "{verdicts:?}"
    );
    // A port with an address but no instance: 404.
    let (c, _) = fetch(
        &dp,
        "vm-c",
        MAC_C,
        [10, 1, 0, 30],
        "/openstack/latest/meta_data.json",
    );
    assert!(c.starts_with("HTTP/1.1 404 Not Found"), "{c:?}");
}

#[test]
fn a_reload_reaches_the_next_request_and_drops_stacks_of_ports_gone() {
    let dp = dp();
    let (r, _) = fetch(
        &dp,
        "vm-b",
        MAC_B,
        [10, 2, 0, 20],
        "/openstack/latest/meta_data.json",
    );
    assert!(r.contains("\"name\":\"beta\""), "{r}");
    let cfg = SwitchConfig::from_toml(
        &CONFIG.replace("name = \"beta\"", "name = \"gamma\""),
        "t.toml",
    )
    .unwrap();
    dp.swap_snapshot(Snapshot::compile(&cfg, Some(&dp.snapshot())).unwrap());
    let (r, _) = fetch(
        &dp,
        "vm-b",
        MAC_B,
        [10, 2, 0, 20],
        "/openstack/latest/meta_data.json",
    );
    assert!(r.contains("\"name\":\"gamma\""), "{r}");
    assert_eq!(dp.metadata_stats().1, 1);
    let gone = CONFIG.replace("fixed_ips = [\"10.2.0.20\"]", "fixed_ips = []");
    let cfg = SwitchConfig::from_toml(&gone, "t.toml").unwrap();
    dp.swap_snapshot(Snapshot::compile(&cfg, Some(&dp.snapshot())).unwrap());
    assert_eq!(
        dp.metadata_stats().1,
        0,
        "the stack of a port no longer served was kept"
    );
}

#[test]
fn only_frames_for_169_254_169_254_are_taken() {
    use crate::build::FrameBuilder;
    let dp = dp();
    let s = dp.snapshot();
    let a = s.port_by_name("vm-a").unwrap().no;
    let mut w = dp.worker();
    let mut out = Vec::new();
    let mac = crate::MacAddr(MAC_A);
    let f = FrameBuilder::udp4(
        mac,
        crate::MacAddr([0xfa, 0x16, 0x3e, 0, 0, 0x0c]),
        [10, 1, 0, 10].into(),
        [10, 1, 0, 30].into(),
        1000,
        80,
    )
    .build();
    assert_eq!(w.process(a, &f, 0, &mut out), Verdict::Forward);
    let f = FrameBuilder::udp4(
        mac,
        crate::MacAddr([0xfa, 0x16, 0x3e, 0, 0, 0x0c]),
        [10, 1, 0, 10].into(),
        METADATA_IP,
        1000,
        80,
    )
    .build();
    assert_eq!(w.process(a, &f, 0, &mut out), Verdict::Metadata);
    let arp = FrameBuilder::arp(mac, 1, [10, 1, 0, 10].into(), METADATA_IP).build();
    assert_eq!(w.process(a, &arp, 0, &mut out), Verdict::Metadata);
    let replies = w.answer_metadata(a, &arp, 0);
    assert_eq!(
        replies.len(),
        1,
        "the switch answers ARP for 169.254.169.254"
    );
    assert_eq!(&replies[0][..6], &MAC_A);
    assert_eq!(
        &replies[0][22..28],
        &crate::dhcp::SERVER_MAC.0,
        "sender MAC"
    );
    let arp = FrameBuilder::arp(mac, 1, [10, 1, 0, 10].into(), [10, 1, 0, 30].into()).build();
    assert_eq!(w.process(a, &arp, 0, &mut out), Verdict::Forward);
    // The trace names the service.
    let t = dp.trace(a, &f, 0);
    assert!(
        t.last().unwrap().decision.contains("metadata service"),
        "{t:?}"
    );
}
