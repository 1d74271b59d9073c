//! Port security end to end: MAC-, IP-, ARP-spoofed and double-tagged frames
//! injected by a VM (AF_PACKET inside its namespace) are dropped and counted
//! per reason (`weft ctl counters`); from a port with port_security = false
//! the same spoofed frames reach the other VM. Needs root.

mod switch_util;
use switch_util::*;

const M1: &str = "fa:16:3e:74:00:01";
const M2: &str = "fa:16:3e:74:00:02";
const M3: &str = "fa:16:3e:74:00:03";
const FAKE: &str = "fa:16:3e:74:99:99";

fn config(s1: &str, s2: &str, s3: &str) -> String {
    format!(
        r#"
[[network]]
name = "net-sec"
type = "local"

[[port]]
name = "{s1}"
kind = "tap"
network = "net-sec"
mac = "{M1}"
fixed_ips = ["10.74.0.1"]

[[port]]
name = "{s2}"
kind = "tap"
network = "net-sec"
mac = "{M2}"
fixed_ips = ["10.74.0.2"]

[[port]]
name = "{s3}"
kind = "tap"
network = "net-sec"
mac = "{M3}"
fixed_ips = ["10.74.0.3"]
port_security = false
"#
    )
}

fn marked(tag: u8) -> Vec<u8> {
    let mut m = b"WSWMARK".to_vec();
    m.push(tag);
    m
}

/// The attacks, each with the marker it carries: (name, frame).
fn attacks(src_mac: &str, src_ip: [u8; 4]) -> Vec<(&'static str, Vec<u8>)> {
    let dip = [10, 74, 0, 2];
    let mut arp = arp_frame(src_mac, src_mac, [10, 74, 0, 99], dip);
    arp[42..50].copy_from_slice(&marked(3));
    vec![
        (
            "mac_spoof",
            udp_frame(FAKE, M2, &[], src_ip, dip, &marked(1)),
        ),
        (
            "ip_spoof",
            udp_frame(src_mac, M2, &[], [10, 74, 0, 99], dip, &marked(2)),
        ),
        ("arp_spoof", arp),
        (
            "tagged_on_vm_port",
            udp_frame(src_mac, M2, &[100, 200], src_ip, dip, &marked(4)),
        ),
    ]
}

#[test]
fn spoofed_frames_are_dropped_and_counted_unless_port_security_is_off() {
    let (s1, s2, s3) = (uniq("s"), uniq("s"), uniq("s"));
    let sw = SwitchProc::start(None, "sec", &config(&s1, &s2, &s3));
    let (v1, v2, v3) = (Netns::new("v"), Netns::new("v"), Netns::new("v"));
    plug(None, &s1, &v1, M1, "10.74.0.1/24");
    plug(None, &s2, &v2, M2, "10.74.0.2/24");
    plug(None, &s3, &v3, M3, "10.74.0.3/24");
    assert!(
        v1.ping_ok("10.74.0.2", 10),
        "baseline connectivity: {}",
        sw.log()
    );
    assert!(v3.ping_ok("10.74.0.2", 5));

    // --- secured port: every attack dropped, counted under its reason ---
    let before: Vec<u64> = attacks(M1, [10, 74, 0, 1])
        .iter()
        .map(|(r, _)| sw.drops(&s1, r))
        .collect();
    let cap = FrameCapture::start(&v2, &s2, b"WSWMARK");
    let mut frames: Vec<String> = attacks(M1, [10, 74, 0, 1])
        .iter()
        .map(|(_, f)| hex(f))
        .collect();
    // A legitimate frame last: once it arrives, everything sent before it
    // on the same port has been handled (one worker drains a port in order).
    frames.push(hex(&udp_frame(
        M1,
        M2,
        &[],
        [10, 74, 0, 1],
        [10, 74, 0, 2],
        &marked(9),
    )));
    inject(&v1, &s1, &frames, 5);
    assert!(
        wait_until(10, || cap.saw(&marked(9))),
        "legitimate frame never arrived"
    );
    for (i, (reason, _)) in attacks(M1, [10, 74, 0, 1]).iter().enumerate() {
        assert!(!cap.saw(&marked(i as u8 + 1)), "{reason} frame got through");
        let after = sw.drops(&s1, reason);
        assert!(
            after >= before[i] + 5,
            "{reason}: {} -> {after}, expected +5",
            before[i]
        );
    }
    drop(cap);
    let counters = sw.ctl(&["counters"]);
    assert!(
        counters.contains("mac_spoof") && counters.contains("stages:"),
        "{counters}"
    );

    // --- port_security = false: MAC/IP/ARP spoofing passes ---
    let cap = FrameCapture::start(&v2, &s2, b"WSWMARK");
    let loose: Vec<(&str, Vec<u8>)> = attacks(M3, [10, 74, 0, 3]).into_iter().take(3).collect();
    let frames: Vec<String> = loose.iter().map(|(_, f)| hex(f)).collect();
    inject(&v3, &s3, &frames, 1);
    for (i, (reason, _)) in loose.iter().enumerate() {
        assert!(
            wait_until(10, || cap.saw(&marked(i as u8 + 1))),
            "{reason}-style frame dropped with port_security=false: {:?}",
            cap.lines()
        );
        assert_eq!(
            sw.drops(&s3, reason),
            0,
            "{reason} counted on an unsecured port"
        );
    }
}
