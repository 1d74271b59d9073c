//! A remote compute host streams a large image into its cache: `weft agent
//! --compute-driver fake` (host `rl-img`) builds a server from a 200 MiB
//! image of random bytes, and its resident set never comes near the
//! image's size (its peak, VmHWM, stays under a bound far below it). An
//! agent that read the download whole before caching it peaks above the
//! image. The cached file is the image, byte for byte (its md5 is the
//! image's checksum), and no temporary file is left in the cache, not even
//! one an earlier run of the host left when it was killed mid-download.
//! And the agent's reconcile call refuses what it cannot act on: an unknown
//! host (404), a domain state it does not know (422, naming the field), the
//! controller's own host (409).
//!
//! `WEFT_REMOTE_IMAGE_MIB` sets the size (default 200).
//!
//! Needs python-openstackclient (scripts/install-deps.sh) and qemu-img.

mod remote_agent_util;
mod serve_util;

use md5::{Digest, Md5};
use remote_agent_util::{agent_log, ctrl_url, start_agent, state_of, status_kib, wait_for};
use serve_util::Serve;
use std::io::Write;

/// How far above its RSS before the build the agent may peak: a few
/// frames of the body and the cache's copy buffer, with room for the
/// allocator and the build's own work.
const BOUND_MIB: u64 = 48;

#[test]
fn a_remote_agent_streams_a_large_image_into_its_cache() {
    let mib: u64 = std::env::var("WEFT_REMOTE_IMAGE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    assert!(mib >= 4 * BOUND_MIB, "the image must dwarf the bound");
    let s = Serve::start(
        "rl-image",
        &[
            "--compute-driver",
            "fake",
            "--host",
            "rl-img-ctrl",
            "--fake-host-memory-mb",
            "128",
        ],
    );
    // A download an earlier run of the host was killed in the middle of.
    let cache = s.dir.join("rl-img").join("images-cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join(".rl-dead.part.4242.0"), b"half an image").unwrap();
    let agent = start_agent(
        &s,
        "rl-img",
        "fake",
        &["--fake-host-vcpus", "4", "--fake-host-memory-mb", "4096"],
    );
    wait_for("the remote host to come up", 60, || {
        state_of(&s, "rl-img").as_deref() == Some("up")
    });

    // Random bytes (xorshift), so nothing on the way can shrink them.
    let img = s.dir.join("big.raw");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&img).unwrap());
    let mut md5 = Md5::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for w in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        md5.update(&block);
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let want = hex::encode(md5.finalize());
    let image = s.json(&[
        "image",
        "create",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--file",
        img.to_str().unwrap(),
        "rl-big",
    ]);
    assert_eq!(image["checksum"], want.as_str(), "{image}");
    let image_id = image["id"].as_str().unwrap().to_string();
    std::fs::remove_file(&img).unwrap();
    s.json(&[
        "flavor", "create", "--id", "rl.img", "--vcpus", "1", "--ram", "256", "--disk", "1",
        "rl.img",
    ]);
    s.json(&["network", "create", "rl-img-net"]);
    s.json(&[
        "subnet",
        "create",
        "--network",
        "rl-img-net",
        "--subnet-range",
        "10.148.0.0/24",
        "rl-img-sub",
    ]);

    let pid = agent.pid();
    let before = status_kib(pid, "VmRSS");
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the agent's peak");
    let srv = s.json(&[
        "server",
        "create",
        "--image",
        "rl-big",
        "--flavor",
        "rl.img",
        "--network",
        "rl-img-net",
        "--wait",
        "rl-img-s1",
    ]);
    let peak = status_kib(pid, "VmHWM");
    assert_eq!(
        srv["status"],
        "ACTIVE",
        "{srv}\n{}",
        agent_log(&s, "rl-img")
    );
    assert_eq!(srv["OS-EXT-SRV-ATTR:host"], "rl-img", "{srv}");
    let grew_mib = peak.saturating_sub(before) / 1024;
    eprintln!("agent RSS {before} KiB before, peak {peak} KiB during the {mib} MiB build");
    assert!(
        grew_mib < BOUND_MIB,
        "the agent peaked {grew_mib} MiB above its RSS ({before} KiB) fetching a {mib} MiB image"
    );

    // The cache holds the image whole, and nothing else.
    let cached = std::fs::read(cache.join(&image_id)).expect("the image in the cache");
    assert_eq!(cached.len() as u64, mib << 20);
    assert_eq!(hex::encode(Md5::digest(&cached)), want);
    drop(cached);
    let names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![image_id], "no temporary file left");

    let id = srv["id"].as_str().unwrap();
    let out = s.openstack(&["server", "delete", "--wait", id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The reconcile call refuses what it cannot act on, in Nova's shape.
    let token = s.json(&["token", "issue"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = |host: &str| format!("{}/compute/agent/v1/hosts/{host}/reconcile", ctrl_url(&s));
    let (st, body) = curl(&token, &url("rl-nohost"), r#"{"domains": {}}"#);
    assert_eq!(st, 404, "{body}");
    assert!(body.contains("rl-nohost"), "{body}");
    let (st, body) = curl(&token, &url("rl-img"), r#"{"domains": {"x": "exploded"}}"#);
    // (the compute router's answer to a body that does not parse)
    assert_eq!(st, 422, "{body}");
    assert!(
        body.contains("badRequest") && body.contains("domains.x"),
        "{body}"
    );
    let (st, body) = curl(&token, &url("rl-img-ctrl"), r#"{"domains": {}}"#);
    assert_eq!(st, 409, "the controller's own host: {body}");
    let (st, body) = curl(&token, &url("rl-img"), r#"{"domains": {}}"#);
    assert_eq!((st, body.as_str()), (200, r#"{"orphans":[]}"#));
}

/// curl -X POST URL with `token` and a JSON body: (status, body).
fn curl(token: &str, url: &str, body: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-m", "30", "-X", "POST", "-w", "\n%{http_code}"])
        .args(["-H", &format!("X-Auth-Token: {token}")])
        .args(["-H", "Content-Type: application/json", "-d", body, url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (b, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), b.to_string())
}
