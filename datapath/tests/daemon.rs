//! The switch daemon as a library (what the networking agent embeds):
//! start, apply (add/remove/update ports, refuse bad configs without
//! touching the running switch), pending `system` ports attached when their
//! netdev appears, control-socket requests. Needs root (creates taps and
//! veths named `wsw…`, removed by Drop guards).

mod lab;

use std::sync::Arc;

use lab::{link_exists as exists, wait_until, Link};
use serde_json::json;
use weft_datapath::daemon::{control, Switch, SwitchHandle};
use weft_datapath::SwitchConfig;

fn uniq(role: &str) -> String {
    lab::uniq("wsw", role)
}

fn cfg(ports: &[(&str, &str, &str)]) -> SwitchConfig {
    let mut s = String::from("[switch]\nworkers = 1\n\n[[network]]\nname = \"n1\"\ntype = \"local\"\n\n[[network]]\nname = \"n2\"\ntype = \"local\"\n");
    for (i, (name, kind, net)) in ports.iter().enumerate() {
        s.push_str(&format!(
            "\n[[port]]\nname = \"{name}\"\nkind = \"{kind}\"\nnetwork = \"{net}\"\nmac = \"fa:16:3e:76:00:{i:02x}\"\nfixed_ips = [\"10.76.0.{}\"]\n",
            i + 1
        ));
    }
    SwitchConfig::from_toml(&s, "test.toml").expect("test config parses")
}

fn attached(h: &SwitchHandle, name: &str) -> Option<bool> {
    h.port_states()
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| p.attached)
}

#[test]
fn apply_adds_removes_and_updates_ports_and_keeps_the_rest() {
    let (a, b, c, sys) = (uniq("a"), uniq("b"), uniq("c"), uniq("s"));
    let _guards = [
        Link(a.clone()),
        Link(b.clone()),
        Link(c.clone()),
        Link(sys.clone()),
    ];
    let h = Switch::start(cfg(&[(&a, "tap", "n1"), (&b, "tap", "n1")])).expect("start");
    assert!(exists(&a) && exists(&b));
    assert_eq!(attached(&h, &a), Some(true));
    let ifindex_a = std::fs::read_to_string(format!("/sys/class/net/{a}/ifindex")).unwrap();

    // Remove b, add tap c and a system port whose netdev does not exist yet,
    // move a to another network.
    let rep = h
        .apply(cfg(&[
            (&a, "tap", "n2"),
            (&c, "tap", "n1"),
            (&sys, "system", "n1"),
        ]))
        .expect("apply");
    assert_eq!(rep.removed, vec![b.clone()]);
    assert!(
        rep.added.contains(&c) && rep.added.contains(&sys),
        "{rep:?}"
    );
    assert_eq!(rep.updated, vec![a.clone()]);
    assert!(wait_until(5, || !exists(&b)), "removed tap still there");
    assert!(exists(&c));
    // a kept its tap (same netdev), only its network changed.
    let again = std::fs::read_to_string(format!("/sys/class/net/{a}/ifindex")).unwrap();
    assert_eq!(ifindex_a, again, "unchanged port's tap was re-created");
    let st = h.port_states();
    let pa = st.iter().find(|p| p.name == a).unwrap();
    let pc = st.iter().find(|p| p.name == c).unwrap();
    assert_ne!(pa.local_vlan, pc.local_vlan);
    assert_eq!(attached(&h, &sys), Some(false));

    // The system netdev appears: attached without another apply.
    let peer = uniq("p");
    lab::sh(
        "ip",
        &["link", "add", &sys, "type", "veth", "peer", "name", &peer],
    );
    assert!(
        wait_until(10, || attached(&h, &sys) == Some(true)),
        "pending port not attached"
    );

    // A bad config (unknown network) is refused and changes nothing.
    let text = format!("[[port]]\nname = \"{b}\"\nkind = \"tap\"\nnetwork = \"nope\"\nmac = \"fa:16:3e:76:00:09\"\n");
    match SwitchConfig::from_toml(&text, "bad.toml") {
        Err(e) => assert!(e.to_string().contains("network"), "{e}"),
        Ok(bad) => {
            let err = h.apply(bad).expect_err("bad config applied");
            assert!(err.to_string().contains("network"), "{err}");
        }
    }
    assert!(!exists(&b));
    assert_eq!(h.port_states().len(), 3);

    // Trace and MAC table through the library.
    let steps = h
        .trace(&format!("in_port={a} dl_dst=ff:ff:ff:ff:ff:ff"))
        .expect("trace");
    assert!(!steps.is_empty());
    assert!(h.mac_table().iter().any(|e| e.is_static));
    h.shutdown();
    assert!(
        wait_until(5, || !exists(&a) && !exists(&c)),
        "taps outlived shutdown"
    );
}

#[test]
fn control_socket_answers_json_lines() {
    let t = uniq("t");
    let _g = Link(t.clone());
    let h = Arc::new(Switch::start(cfg(&[(&t, "tap", "n1")])).expect("start"));
    let dir = std::env::temp_dir().join(uniq("sock"));
    let path = dir.join("switch.sock");
    let server = h.serve_control(&path, None).expect("bind control socket");
    let ports = control::request(&path, &json!({"cmd": "ports"})).unwrap();
    assert_eq!(ports["ok"], true);
    assert_eq!(ports["ports"][0]["name"], t.as_str());
    let counters = control::request(&path, &json!({"cmd": "counters"})).unwrap();
    assert!(counters["counters"]["stages"]
        .as_array()
        .is_some_and(|s| !s.is_empty()));
    let reload = control::request(&path, &json!({"cmd": "reload"})).unwrap();
    assert_eq!(
        reload["ok"], false,
        "reload without a reload hook must be refused"
    );
    let bad = control::request(&path, &json!({"cmd": "frobnicate"})).unwrap();
    assert_eq!(bad["ok"], false);
    assert!(bad["error"].as_str().unwrap().contains("frobnicate"));
    // A second server on the same live socket is refused.
    assert!(h.serve_control(&path, None).is_err());
    drop(server);
    assert!(!path.exists(), "socket file left behind");
    let _ = std::fs::remove_dir_all(&dir);
}
