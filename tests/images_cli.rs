//! End to end: the image service of `weft serve` driven by the real
//! `openstack` CLI (python-openstackclient + openstacksdk): a real qcow2 made
//! by qemu-img goes up with `image create --file`, comes back with `image
//! save`, and its sha256 and sha512 match; properties, list and show by
//! name; another project gets a 404 until it is added as a member and
//! accepts (publishing is admin-only); an image past `--image-size-cap` is a
//! 413; an upload whose client hangs up midway leaves a queued image and no
//! file; images and their data survive a restart; delete removes the file.
//!
//! Needs /opt/weft-venv (scripts/install-deps.sh, or WEFT_VENV) and
//! qemu-img; fails, rather than skips, when either is missing.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "weft-images-admin-pw";
const CMD_TIMEOUT: Duration = Duration::from_secs(180);
/// The server's `--image-size-cap` in this test: 8 MiB.
const CAP: u64 = 8 << 20;

fn venv_bin() -> PathBuf {
    if let Some(v) = std::env::var_os("WEFT_VENV") {
        return PathBuf::from(v).join("bin");
    }
    let default = PathBuf::from("/opt/weft-venv/bin");
    assert!(
        default.join("openstack").exists(),
        "the openstack CLI is not installed: run scripts/install-deps.sh (or set WEFT_VENV)"
    );
    default
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `weft serve` on its own port and state directory; dropped: killed and
/// the directory removed.
struct Server {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Server {
    fn new(name: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("weft-images-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Server {
            child: None,
            dir,
            port: free_port(),
        };
        s.start();
        s
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("serve.log"))
            .unwrap();
        let port = self.port;
        let child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("serve")
            .arg("--state-dir")
            .arg(self.state())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--image-size-cap", &CAP.to_string()])
            .env("WEFT_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start weft serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("weft serve exited early: {status}");
            }
            if http_status(port, "GET", "/identity/v3", None, &[], b"") == Some(200)
                && self.state().join("admin-openrc").exists()
            {
                return;
            }
            assert!(Instant::now() < deadline, "weft serve did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (SIGKILL: nothing gets a chance to tidy up).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn admin_env(&self) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.state().join("admin-openrc")).unwrap();
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect()
    }

    /// OS_* for `user` (password `pw`) in project `project`, domain Default.
    fn user_env(&self, user: &str, pw: &str, project: &str) -> BTreeMap<String, String> {
        let mut env = self.admin_env();
        env.insert("OS_USERNAME".into(), user.into());
        env.insert("OS_PASSWORD".into(), pw.into());
        env.insert("OS_PROJECT_NAME".into(), project.into());
        env
    }

    /// Files under STATE_DIR/images.
    fn image_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.state().join("images"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.dir.join("serve.log")) {
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- weft serve log (newest first) ---\n{}", tail.join("\n"));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a command with a deadline, so a hung client fails the test.
fn run(mut cmd: Command) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t2 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + CMD_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("timed out: {desc}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn openstack(env: &BTreeMap<String, String>, args: &[&str]) -> Output {
    let mut cmd = Command::new(venv_bin().join("openstack"));
    for (k, _) in std::env::vars() {
        if k.starts_with("OS_") {
            cmd.env_remove(&k);
        }
    }
    cmd.envs(env).args(args);
    run(cmd)
}

fn os_ok(env: &BTreeMap<String, String>, args: &[&str]) -> String {
    let out = openstack(env, args);
    assert!(
        out.status.success(),
        "openstack {} failed: {}\n{}",
        args.join(" "),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn os_json(env: &BTreeMap<String, String>, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-f", "json"]);
    let out = os_ok(env, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// `sha256sum`/`sha512sum`/`md5sum` of a file: the hex digest.
fn digest(tool: &str, path: &Path) -> String {
    let mut cmd = Command::new(tool);
    cmd.arg(path);
    let out = run(cmd);
    assert!(out.status.success(), "{tool}: {}", text(&out.stderr));
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// One HTTP/1.0 exchange; the status code, or None if the server is not up.
fn http_status(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<u16> {
    http(port, method, path, token, headers, body).map(|(s, _)| s)
}

fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    if let Some(t) = token {
        req.push_str(&format!("X-Auth-Token: {t}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = text(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// A real qcow2 of `raw_len` bytes of data, made by qemu-img from random bytes.
fn make_qcow2(dir: &Path, raw_len: usize) -> PathBuf {
    let raw = dir.join("disk.raw");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..raw_len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    std::fs::write(&raw, data).unwrap();
    let out = dir.join("disk.qcow2");
    let mut cmd = Command::new("qemu-img");
    cmd.args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&out);
    let r = run(cmd);
    assert!(r.status.success(), "qemu-img: {}", text(&r.stderr));
    out
}

#[test]
fn openstack_cli_images_end_to_end() {
    let mut srv = Server::new("cli");
    let admin = srv.admin_env();
    for (p, u) in [("demo", "demo"), ("other", "other")] {
        os_ok(&admin, &["project", "create", p]);
        os_ok(
            &admin,
            &["user", "create", "--password", "pw-x", "--project", p, u],
        );
        os_ok(
            &admin,
            &["role", "add", "--user", u, "--project", p, "member"],
        );
    }
    let demo = srv.user_env("demo", "pw-x", "demo");
    let other = srv.user_env("other", "pw-x", "other");
    let work = srv.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let qcow2 = make_qcow2(&work, 6 << 20);
    let file = qcow2.to_str().unwrap();

    // Up with the real CLI.
    let img = os_json(
        &demo,
        &[
            "image",
            "create",
            "--file",
            file,
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "cirros-like",
        ],
    );
    let id = img["id"].as_str().unwrap().to_string();
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["checksum"], digest("md5sum", &qcow2));
    assert_eq!(img["size"], std::fs::metadata(&qcow2).unwrap().len());
    assert_eq!(img["virtual_size"], 6u64 << 20, "from the qcow2 header");
    assert_eq!(srv.image_files(), vec![id.clone()]);

    // list, show by name, set --property.
    let list = os_json(&demo, &["image", "list"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|i| i["ID"] == id.as_str()),
        "{list}"
    );
    let shown = os_json(&demo, &["image", "show", "cirros-like"]);
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(
        shown["properties"]["os_hash_value"],
        digest("sha512sum", &qcow2)
    );
    os_ok(
        &demo,
        &[
            "image",
            "set",
            "--property",
            "hw_disk_bus=virtio",
            "--min-disk",
            "1",
            "cirros-like",
        ],
    );
    let shown = os_json(&demo, &["image", "show", &id]);
    assert_eq!(shown["properties"]["hw_disk_bus"], "virtio", "{shown}");
    assert_eq!(shown["min_disk"], 1);

    // Down again, byte for byte.
    let back = work.join("back.qcow2");
    os_ok(
        &demo,
        &["image", "save", "--file", back.to_str().unwrap(), &id],
    );
    assert_eq!(digest("sha256sum", &back), digest("sha256sum", &qcow2));

    // Another project: not found (the image is shared-by-default, no member).
    let out = openstack(&other, &["image", "show", &id]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("No Image found") || err.contains("404"),
        "{err}"
    );
    let list = os_json(&other, &["image", "list"]);
    assert!(!list
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["ID"] == id.as_str()));

    // Only an admin publishes; sharing goes through members.
    let out = openstack(&demo, &["image", "set", "--public", &id]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("403"), "{}", text(&out.stderr));
    // By id: a member (not admin) cannot look projects up by name.
    let other_id = os_ok(
        &admin,
        &["project", "show", "other", "-f", "value", "-c", "id"],
    );
    let other_id = other_id.trim();
    os_ok(&demo, &["image", "add", "project", &id, other_id]);
    let list = os_json(&other, &["image", "list"]);
    assert!(
        !list
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["ID"] == id.as_str()),
        "pending: not listed"
    );
    os_ok(&other, &["image", "set", "--accept", &id]);
    let list = os_json(&other, &["image", "list"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|i| i["ID"] == id.as_str()),
        "accepted: listed"
    );
    let members = os_json(&demo, &["image", "member", "list", &id]);
    assert_eq!(members[0]["Status"], "accepted", "{members}");
    os_ok(&demo, &["image", "remove", "project", &id, other_id]);
    assert!(!openstack(&other, &["image", "show", &id]).status.success());

    // Past the size cap: a 413, no data kept.
    let big = work.join("big.raw");
    std::fs::write(&big, vec![0u8; (CAP + 1) as usize]).unwrap();
    let out = openstack(
        &demo,
        &[
            "image",
            "create",
            "--file",
            big.to_str().unwrap(),
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "too-big",
        ],
    );
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("413"), "{}", text(&out.stderr));
    assert_eq!(srv.image_files(), vec![id.clone()]);

    // A client that hangs up midway: queued again, no file.
    let token = os_ok(&demo, &["token", "issue", "-f", "value", "-c", "id"])
        .trim()
        .to_string();
    let (st, cut) = http(
        srv.port,
        "POST",
        "/image/v2/images",
        Some(&token),
        &[("Content-Type", "application/json")],
        json!({"name": "cut", "disk_format": "raw", "container_format": "bare"})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(st, 201, "{cut}");
    let cut_id = cut["id"].as_str().unwrap().to_string();
    {
        let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        let head = format!(
            "PUT /image/v2/images/{cut_id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            6u64 << 20
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&vec![1u8; 2 << 20]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    } // closed with 4 MiB unsent
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = http(
            srv.port,
            "GET",
            &format!("/image/v2/images/{cut_id}"),
            Some(&token),
            &[],
            b"",
        )
        .unwrap();
        if v["status"] == "queued" && srv.image_files() == vec![id.clone()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cut-off upload not undone: {v} {:?}",
            srv.image_files()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Restart (kill -9): records and data are still there.
    srv.kill();
    srv.start();
    let shown = os_json(&demo, &["image", "show", &id]);
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["properties"]["hw_disk_bus"], "virtio");
    let again = work.join("again.qcow2");
    os_ok(
        &demo,
        &["image", "save", "--file", again.to_str().unwrap(), &id],
    );
    assert_eq!(digest("sha256sum", &again), digest("sha256sum", &qcow2));

    // Delete: the record and the file.
    os_ok(&demo, &["image", "delete", &id]);
    assert!(!openstack(&demo, &["image", "show", &id]).status.success());
    assert_eq!(srv.image_files(), Vec::<String>::new());
}

/// A token for the admin, over plain HTTP (no CLI): the `X-Subject-Token` header.
fn admin_token(port: u16) -> String {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    .to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /identity/v3/auth/tokens HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    text(&raw)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-subject-token")
                .then(|| v.trim().to_string())
        })
        .expect("a token")
}

/// Glance routes paths exactly, so tempest's null-id negatives
/// (`GET /v2/images/`, `DELETE /v2/images/`) are 404s, not the list and a
/// 405; while the services whose clients send a trailing slash (Keystone,
/// Neutron) and the image version document still answer with or without it.
#[test]
fn a_trailing_slash_is_a_404_for_images_only() {
    let srv = Server::new("slash");
    let token = admin_token(srv.port);
    let t = Some(token.as_str());
    let (st, img) = http(
        srv.port,
        "POST",
        "/image/v2/images",
        t,
        &[("Content-Type", "application/json")],
        json!({"name": "slash"}).to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(st, 201, "{img}");
    let id = img["id"].as_str().unwrap();
    for (method, path, want) in [
        ("GET", "/image/v2/images/".to_string(), 404),
        ("DELETE", "/image/v2/images/".to_string(), 404),
        ("GET", format!("/image/v2/images/{id}/"), 404),
        ("GET", "/image/v2/images".to_string(), 200),
        ("GET", format!("/image/v2/images/{id}"), 200),
        ("GET", "/image/".to_string(), 300),
        ("GET", "/image".to_string(), 300),
        ("GET", "/identity/v3/".to_string(), 200),
        ("GET", "/identity/v3/users/".to_string(), 200),
        ("GET", "/networking/v2.0/networks/".to_string(), 200),
    ] {
        let (got, body) = http(srv.port, method, &path, t, &[], b"").unwrap();
        assert_eq!(got, want, "{method} {path}: {body}");
        if want == 404 {
            assert!(
                body["message"].as_str().is_some(),
                "{method} {path}: Glance's error body, got {body}"
            );
        }
    }
    // Nothing was deleted by the slashed DELETE.
    let (st, _) = http(
        srv.port,
        "GET",
        &format!("/image/v2/images/{id}"),
        t,
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(st, 200);
}
