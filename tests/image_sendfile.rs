//! Issue 13's last line, on a real `weft serve` over loopback: image
//! downloads leave the server by sendfile(2), and everything HTTP did
//! before still holds. The proof that the zero-copy path ran is the
//! server's `weft_sendfile_bytes_total` in /metrics, which must move by
//! exactly the bytes of each body served (the response heads go out by
//! sendmsg, so they are not in it).
//!
//! On one keep-alive connection: a whole download (bytes, sha512 and
//! Content-MD5 right), a Range (206), a range past the end (416), a HEAD,
//! and a JSON request after them. Then curl reading at a capped rate,
//! clients that hang up mid-body, and after those the server holds no
//! mapping or descriptor of the image file and still serves it whole.

mod serve_util;

use md5::Md5;
use serde_json::{json, Value};
use sha2::{Digest, Sha512};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Several download windows (2 MiB each) and a ragged tail.
const SIZE: usize = (24 << 20) + 12_345;

/// A response: status, headers (lower-case names), body.
struct Resp {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// An HTTP/1.1 client connection that stays open between requests.
struct Conn {
    r: BufReader<TcpStream>,
    port: u16,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Conn {
            r: BufReader::new(s),
            port,
        }
    }

    /// Sends a request; returns the response head, the body left unread.
    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let s = self.r.get_mut();
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .expect("a status line")
            .parse()
            .unwrap();
        let mut headers = BTreeMap::new();
        loop {
            let mut l = String::new();
            self.r.read_line(&mut l).unwrap();
            let Some((k, v)) = l.trim_end().split_once(':') else {
                break;
            };
            headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
        }
        Resp {
            status,
            headers,
            body: Vec::new(),
        }
    }

    /// A whole exchange; the body is read by its Content-Length (none for HEAD).
    fn call(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut resp = self.send(method, path, headers, body);
        let len: usize = resp
            .headers
            .get("content-length")
            .map_or(0, |v| v.parse().unwrap());
        if method != "HEAD" {
            resp.body = vec![0; len];
            self.r.read_exact(&mut resp.body).unwrap();
        }
        resp
    }
}

/// The port `weft serve` listens on, from the admin's OS_AUTH_URL.
fn port_of(srv: &serve_util::Serve) -> u16 {
    let url = &srv.env["OS_AUTH_URL"];
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    host.rsplit(':').next().unwrap().parse().unwrap()
}

fn admin_token(c: &mut Conn, srv: &serve_util::Serve) -> String {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": srv.env["OS_USERNAME"], "domain": {"id": "default"},
            "password": srv.env["OS_PASSWORD"]}}},
        "scope": {"project": {"name": srv.env["OS_PROJECT_NAME"], "domain": {"id": "default"}}}}});
    let r = c.call(
        "POST",
        "/identity/v3/auth/tokens",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 201);
    r.headers["x-subject-token"].clone()
}

/// `weft_sendfile_bytes_total` from the server's /metrics.
fn sendfile_bytes(port: u16) -> u64 {
    let r = Conn::open(port).call("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("weft_sendfile_bytes_total "))
        .expect("the sendfile counter is exported")
        .parse()
        .unwrap()
}

/// Paths the server process holds open or mapped that name `needle`.
fn held_by(pid: u32, needle: &str) -> Vec<String> {
    let mut held: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .filter(|p| p.contains(needle))
        .collect();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    held.extend(
        maps.lines()
            .filter(|l| l.contains(needle))
            .map(String::from),
    );
    held
}

fn sha512(b: &[u8]) -> Vec<u8> {
    Sha512::digest(b).to_vec()
}

/// `len` bytes no two windows of which are alike.
fn image_bytes(len: usize) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// Creates an image holding `data`; its id.
fn upload(c: &mut Conn, token: &str, data: &[u8]) -> String {
    let auth = ("X-Auth-Token", token);
    let img = c.call(
        "POST",
        "/image/v2/images",
        &[auth, ("Content-Type", "application/json")],
        json!({"name": "sf", "disk_format": "raw", "container_format": "bare"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(img.status, 201);
    let id = serde_json::from_slice::<Value>(&img.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let file = format!("/image/v2/images/{id}/file");
    let put = c.call(
        "PUT",
        &file,
        &[auth, ("Content-Type", "application/octet-stream")],
        data,
    );
    assert_eq!(put.status, 204);
    id
}

#[test]
fn image_downloads_go_out_by_sendfile_and_keep_http_whole() {
    let srv = serve_util::Serve::start("sf-image", &[]);
    let (port, pid) = (port_of(&srv), srv.child.id());
    let mut c = Conn::open(port);
    let token = admin_token(&mut c, &srv);
    let auth = ("X-Auth-Token", token.as_str());
    let data = image_bytes(SIZE);
    let id = upload(&mut c, &token, &data);
    let file = format!("/image/v2/images/{id}/file");

    // The whole image, then a Range of it, on the one connection.
    let before = sendfile_bytes(port);
    let got = c.call("GET", &file, &[auth], b"");
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["content-length"], SIZE.to_string());
    assert_eq!(
        got.headers["content-md5"],
        hex::encode(<Md5 as md5::Digest>::digest(&data))
    );
    assert!(got.body == data, "the downloaded bytes differ");
    assert_eq!(sha512(&got.body), sha512(&data));
    let after_whole = sendfile_bytes(port);
    assert_eq!(
        after_whole - before,
        SIZE as u64,
        "the body went by sendfile"
    );

    let part = c.call("GET", &file, &[auth, ("Range", "bytes=1000-5000000")], b"");
    assert_eq!(part.status, 206);
    assert_eq!(
        part.headers["content-range"],
        format!("bytes 1000-5000000/{SIZE}")
    );
    assert!(
        part.body == data[1000..=5_000_000],
        "the range's bytes differ"
    );
    assert_eq!(sendfile_bytes(port) - after_whole, 5_000_000 - 1000 + 1);

    let past = format!("bytes={SIZE}-");
    let r = c.call("GET", &file, &[auth, ("Range", &past)], b"");
    assert_eq!(r.status, 416);
    let head = c.call("HEAD", &file, &[auth], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-length"], SIZE.to_string());
    let r = c.call("GET", &format!("/image/v2/images/{id}"), &[auth], b"");
    assert_eq!(r.status, 200, "the connection still serves after downloads");
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap()["status"],
        "active"
    );

    // A reader the server must wait for: curl at 8 MiB/s (about 3 s).
    let out = srv.dir.join("slow.img");
    let st = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--limit-rate", "8M", "-o"])
        .arg(&out)
        .args(["-H", &format!("X-Auth-Token: {token}")])
        .arg(format!("http://127.0.0.1:{port}{file}"))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(sha512(&std::fs::read(&out).unwrap()), sha512(&data));

    // Clients that hang up after 1 MiB of the body.
    for _ in 0..3 {
        let mut gone = Conn::open(port);
        let r = gone.send("GET", &file, &[auth], b"");
        assert_eq!(r.status, 200);
        let mut some = vec![0u8; 1 << 20];
        gone.r.read_exact(&mut some).unwrap();
        assert!(some == data[..1 << 20]);
    }
    // Their windows and files are let go: nothing of the image stays held.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !held_by(pid, &id).is_empty() {
        assert!(
            Instant::now() < deadline,
            "still held after the clients left: {:?}",
            held_by(pid, &id)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = sendfile_bytes(port);
    let again = Conn::open(port).call("GET", &file, &[auth], b"");
    assert!(
        again.status == 200 && again.body == data,
        "served whole after hang-ups"
    );
    assert_eq!(sendfile_bytes(port) - before, SIZE as u64);
}

/// `--no-sendfile`: the same bytes, by writev from the mapped windows, and
/// the counter stays at zero (the switch the before/after bench uses).
#[test]
fn no_sendfile_serves_the_same_bytes_by_write() {
    let srv = serve_util::Serve::start("sf-off", &["--no-sendfile"]);
    let port = port_of(&srv);
    let mut c = Conn::open(port);
    let token = admin_token(&mut c, &srv);
    let data = image_bytes(5 << 20);
    let id = upload(&mut c, &token, &data);
    let got = c.call(
        "GET",
        &format!("/image/v2/images/{id}/file"),
        &[("X-Auth-Token", &token)],
        b"",
    );
    assert!(got.status == 200 && got.body == data);
    assert_eq!(sendfile_bytes(port), 0);
}
