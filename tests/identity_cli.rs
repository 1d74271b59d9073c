//! End to end: `weft serve` driven by the real `openstack` CLI (and
//! keystoneauth for trusts), as an operator would use it.
//!
//! Needs python-openstackclient: `scripts/install-deps.sh` puts it in
//! /opt/weft-venv (or set WEFT_VENV); the test fails, rather than skips, when
//! it is missing, so CI cannot pass without having run it.
//!
//! Each server gets its own free port and temporary state directory; a Drop
//! guard kills the server and removes the directory, also on failure.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "weft-e2e-admin-pw";
const CMD_TIMEOUT: Duration = Duration::from_secs(180);

/// Where the venv with `openstack` and keystoneauth lives.
fn venv_bin() -> PathBuf {
    if let Some(v) = std::env::var_os("WEFT_VENV") {
        return PathBuf::from(v).join("bin");
    }
    let default = PathBuf::from("/opt/weft-venv/bin");
    if default.join("openstack").exists() {
        return default;
    }
    // Fall back to whatever `openstack` is on $PATH.
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("openstack").exists() {
                return dir;
            }
        }
    }
    panic!("the openstack CLI is not installed: run scripts/install-deps.sh (or set WEFT_VENV)");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .unwrap()
        .port()
}

/// A running `weft serve` with its own state directory.
struct Server {
    child: Child,
    dir: PathBuf,
    port: u16,
    /// Environment from the admin-openrc the server wrote.
    admin_env: BTreeMap<String, String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.dir.join("serve.log")) {
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("--- weft serve log (last lines, newest first) ---");
                for l in tail {
                    eprintln!("{l}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    fn start(name: &str, extra: &[&str]) -> Server {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("weft-idcli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let state = dir.join("state");
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("serve")
            .arg("--state-dir")
            .arg(&state)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--public-url",
                &url,
            ])
            .args(extra)
            .env("WEFT_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start weft serve");
        let mut server = Server {
            child,
            dir,
            port,
            admin_env: BTreeMap::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("weft serve exited early: {status}");
            }
            let ready = http("GET", port, "/identity/v3", &[], None)
                .map(|r| r.status == 200)
                .unwrap_or(false);
            if ready && state.join("admin-openrc").exists() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "weft serve did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server.admin_env = parse_openrc(&state.join("admin-openrc"));
        assert_eq!(
            server.admin_env.get("OS_PASSWORD").map(String::as_str),
            Some(ADMIN_PASSWORD),
            "admin-openrc carries WEFT_ADMIN_PASSWORD"
        );
        server
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn auth_url(&self) -> String {
        self.admin_env["OS_AUTH_URL"].clone()
    }

    /// Environment for a password login of `user` (in domain Default) scoped
    /// to a project or domain.
    fn user_env(&self, user: &str, password: &str, scope: Scope<'_>) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("OS_AUTH_URL".into(), self.auth_url());
        env.insert("OS_IDENTITY_API_VERSION".into(), "3".into());
        env.insert("OS_USERNAME".into(), user.into());
        env.insert("OS_PASSWORD".into(), password.into());
        match scope {
            Scope::Project(p) => {
                env.insert("OS_USER_DOMAIN_NAME".into(), "Default".into());
                env.insert("OS_PROJECT_NAME".into(), p.into());
                env.insert("OS_PROJECT_DOMAIN_NAME".into(), "Default".into());
            }
            Scope::Domain(d) => {
                env.insert("OS_USER_DOMAIN_NAME".into(), d.into());
                env.insert("OS_DOMAIN_NAME".into(), d.into());
            }
        }
        env
    }
}

enum Scope<'a> {
    Project(&'a str),
    Domain(&'a str),
}

/// `export KEY=value` lines (quotes optional) into a map.
fn parse_openrc(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).expect("read admin-openrc");
    let mut env = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("export ") else {
            continue;
        };
        let Some((k, v)) = rest.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
            .unwrap_or(v);
        env.insert(k.trim().to_string(), v.to_string());
    }
    for key in ["OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD"] {
        assert!(env.contains_key(key), "admin-openrc lacks {key}: {text}");
    }
    env
}

/// Runs a command with a deadline, so a hung client fails the test instead of CI.
fn run(mut cmd: Command) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
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
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// `openstack ARGS` with exactly `env` as its OS_* settings.
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

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `openstack ARGS -f json`, which must succeed; its parsed output.
fn os_json(env: &BTreeMap<String, String>, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-f", "json"]);
    let out = openstack(env, &all);
    assert!(
        out.status.success(),
        "openstack {} failed: {}\n{}",
        args.join(" "),
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "openstack {}: not JSON ({e}): {}",
            args.join(" "),
            text(&out.stdout)
        )
    })
}

/// `openstack ARGS` (no output format), which must succeed.
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

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {v}"))
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.0 client (the server closes the connection after the
/// reply, so there is no chunking to undo): enough to read token bodies.
fn http(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Password login by name in domain Default, scoped to a project by id;
/// returns (token id, token body).
fn password_token(port: u16, user: &str, password: &str, project_id: &str) -> (String, Value) {
    let req = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"id": project_id}}
    }});
    let r = http("POST", port, "/identity/v3/auth/tokens", &[], Some(&req)).unwrap();
    assert_eq!(r.status, 201, "token for {user}: {}", r.body);
    let id = r
        .header("X-Subject-Token")
        .expect("X-Subject-Token")
        .to_string();
    (id, r.body)
}

/// GET /auth/tokens for `subject` with `auth`'s token: the status code.
fn validate(port: u16, auth: &str, subject: &str) -> u16 {
    http(
        "GET",
        port,
        "/identity/v3/auth/tokens",
        &[("X-Auth-Token", auth), ("X-Subject-Token", subject)],
        None,
    )
    .unwrap()
    .status
}

fn role_names(token_body: &Value) -> Vec<String> {
    let mut names: Vec<String> = token_body["token"]["roles"]
        .as_array()
        .unwrap_or_else(|| panic!("no roles in {token_body}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn openstack_cli_drives_identity() {
    let srv = Server::start("main", &[]);
    let admin = srv.admin_env.clone();
    let port = srv.port;

    // token issue (admin-openrc as written by weft serve).
    let tok = os_json(&admin, &["token", "issue"]);
    assert!(!s(&tok, "id").is_empty());
    assert!(!s(&tok, "project_id").is_empty(), "{tok}");
    let admin_token = s(&tok, "id").to_string();
    let admin_user_id = s(&tok, "user_id").to_string();

    // project create; user create --password; role add member.
    let demo = os_json(
        &admin,
        &[
            "project",
            "create",
            "--domain",
            "default",
            "--description",
            "e2e",
            "demo",
        ],
    );
    assert_eq!(s(&demo, "name"), "demo");
    assert_eq!(s(&demo, "domain_id"), "default");
    let demo_id = s(&demo, "id").to_string();
    let alice = os_json(
        &admin,
        &[
            "user",
            "create",
            "--domain",
            "default",
            "--password",
            "alice-pw",
            "alice",
        ],
    );
    assert_eq!(s(&alice, "name"), "alice");
    let alice_id = s(&alice, "id").to_string();
    os_ok(
        &admin,
        &[
            "role",
            "add",
            "--user",
            "alice",
            "--project",
            "demo",
            "member",
        ],
    );

    // role assignment list --effective --names: member, and reader implied by it.
    let rows = os_json(
        &admin,
        &[
            "role",
            "assignment",
            "list",
            "--effective",
            "--names",
            "--user",
            "alice",
        ],
    );
    let rows = rows.as_array().expect("a list");
    let mut alice_roles: Vec<&str> = rows
        .iter()
        .filter(|r| r["User"] == "alice@Default" && r["Project"] == "demo@Default")
        .map(|r| r["Role"].as_str().unwrap())
        .collect();
    alice_roles.sort();
    assert_eq!(alice_roles, ["member", "reader"], "{rows:?}");
    let everyone = os_json(&admin, &["role", "assignment", "list", "--names"]);
    assert!(
        everyone
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["User"] == "admin@Default"
                && r["Project"] == "admin@Default"
                && r["Role"] == "admin"),
        "bootstrap assignment missing: {everyone}"
    );

    // implied role list: admin -> member -> reader.
    let implied = os_json(&admin, &["implied", "role", "list"]);
    let pairs: Vec<(String, String)> = implied
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                s(r, "Prior Role Name").to_string(),
                s(r, "Implied Role Name").to_string(),
            )
        })
        .collect();
    assert!(
        pairs.contains(&("admin".into(), "member".into())),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&("member".into(), "reader".into())),
        "{pairs:?}"
    );

    // alice's project token holds member and reader, not admin.
    let alice_env = srv.user_env("alice", "alice-pw", Scope::Project("demo"));
    let atok = os_json(&alice_env, &["token", "issue"]);
    assert_eq!(s(&atok, "project_id"), demo_id);
    assert_eq!(s(&atok, "user_id"), alice_id);
    let (alice_token, body) = password_token(port, "alice", "alice-pw", &demo_id);
    assert_eq!(role_names(&body), ["member", "reader"]);
    assert_eq!(body["token"]["project"]["id"], demo_id.as_str());

    // ... and so she may not create users: 403 from the policy.
    let denied = openstack(
        &alice_env,
        &[
            "user",
            "create",
            "--domain",
            "default",
            "--password",
            "x",
            "mallory",
        ],
    );
    assert!(
        !denied.status.success(),
        "alice created a user: {}",
        text(&denied.stdout)
    );
    assert!(
        text(&denied.stderr).contains("403"),
        "{}",
        text(&denied.stderr)
    );
    let users = os_json(&admin, &["user", "list"]);
    assert!(
        !users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["Name"] == "mallory"),
        "{users}"
    );

    // domain create + a domain-scoped admin, who manages the new domain.
    let dom = os_json(
        &admin,
        &["domain", "create", "--description", "e2e", "acme"],
    );
    let dom_id = s(&dom, "id").to_string();
    os_json(
        &admin,
        &[
            "user",
            "create",
            "--domain",
            "acme",
            "--password",
            "dadmin-pw",
            "dadmin",
        ],
    );
    os_ok(
        &admin,
        &[
            "role",
            "add",
            "--user",
            "dadmin",
            "--user-domain",
            "acme",
            "--domain",
            "acme",
            "admin",
        ],
    );
    let dadmin_env = srv.user_env("dadmin", "dadmin-pw", Scope::Domain("acme"));
    let dtok = os_json(&dadmin_env, &["token", "issue"]);
    assert_eq!(s(&dtok, "domain_id"), dom_id, "{dtok}");
    assert!(
        dtok.get("project_id").is_none(),
        "domain-scoped token has no project: {dtok}"
    );
    let acme_proj = os_json(
        &dadmin_env,
        &["project", "create", "--domain", "acme", "acme-web"],
    );
    assert_eq!(s(&acme_proj, "domain_id"), dom_id);

    // application credential create, then a token from it alone.
    let ac = os_json(
        &alice_env,
        &[
            "application",
            "credential",
            "create",
            "--description",
            "ci",
            "ci-bot",
        ],
    );
    let (ac_id, ac_secret) = (s(&ac, "id").to_string(), s(&ac, "secret").to_string());
    assert_eq!(s(&ac, "project_id"), demo_id);
    let mut ac_env = BTreeMap::new();
    ac_env.insert("OS_AUTH_URL".to_string(), srv.auth_url());
    ac_env.insert("OS_IDENTITY_API_VERSION".to_string(), "3".to_string());
    ac_env.insert(
        "OS_AUTH_TYPE".to_string(),
        "v3applicationcredential".to_string(),
    );
    ac_env.insert("OS_APPLICATION_CREDENTIAL_ID".to_string(), ac_id.clone());
    ac_env.insert(
        "OS_APPLICATION_CREDENTIAL_SECRET".to_string(),
        ac_secret.clone(),
    );
    let actok = os_json(&ac_env, &["token", "issue"]);
    assert_eq!(s(&actok, "user_id"), alice_id);
    assert_eq!(s(&actok, "project_id"), demo_id);
    ac_env.insert(
        "OS_APPLICATION_CREDENTIAL_SECRET".to_string(),
        "wrong".to_string(),
    );
    let bad = openstack(&ac_env, &["token", "issue", "-f", "json"]);
    assert!(!bad.status.success(), "a wrong secret got a token");
    assert!(text(&bad.stderr).contains("401"), "{}", text(&bad.stderr));

    // A trust from alice to bob delegating only `reader` on demo.
    let bob = os_json(
        &admin,
        &[
            "user",
            "create",
            "--domain",
            "default",
            "--password",
            "bob-pw",
            "bob",
        ],
    );
    let bob_id = s(&bob, "id").to_string();
    let reader = os_json(&admin, &["role", "show", "reader"]);
    let reader_id = s(&reader, "id").to_string();
    // IDs, not names: alice may not list users or roles to resolve names.
    let trust = os_json(
        &alice_env,
        &[
            "trust",
            "create",
            "--project",
            &demo_id,
            "--role",
            &reader_id,
            &alice_id,
            &bob_id,
        ],
    );
    let trust_id = s(&trust, "id").to_string();
    assert_eq!(s(&trust, "trustor_user_id"), alice_id);
    assert_eq!(s(&trust, "trustee_user_id"), bob_id);
    let script = r#"
import json, sys
from keystoneauth1 import session
from keystoneauth1.identity import v3
auth = v3.Password(auth_url=sys.argv[1], user_id=sys.argv[2], password=sys.argv[3], trust_id=sys.argv[4])
ref = auth.get_access(session.Session(auth=auth))
print(json.dumps({"token": ref.auth_token, "roles": sorted(ref.role_names),
                  "project_id": ref.project_id, "trust_id": ref.trust_id,
                  "trustee": ref.trustee_user_id, "trustor": ref.trustor_user_id}))
"#;
    let mut py = Command::new(venv_bin().join("python3"));
    py.args(["-c", script, &srv.auth_url(), &bob_id, "bob-pw", &trust_id]);
    let out = run(py);
    assert!(
        out.status.success(),
        "keystoneauth trust login: {}",
        text(&out.stderr)
    );
    let tt: Value = serde_json::from_slice(&out.stdout).expect("script prints JSON");
    assert_eq!(
        tt["roles"],
        json!(["reader"]),
        "only the delegated role: {tt}"
    );
    assert_eq!(tt["project_id"], demo_id.as_str());
    assert_eq!(tt["trust_id"], trust_id.as_str());
    assert_eq!(tt["trustee"], bob_id.as_str());
    assert_eq!(tt["trustor"], alice_id.as_str());
    let trust_token = s(&tt, "token").to_string();
    assert_eq!(validate(port, &admin_token, &trust_token), 200);
    // Deleting the trust ends its tokens at once.
    os_ok(&alice_env, &["trust", "delete", &trust_id]);
    assert_eq!(validate(port, &admin_token, &trust_token), 404);
    let r = http(
        "GET",
        port,
        "/identity/v3/auth/catalog",
        &[("X-Auth-Token", &trust_token)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);

    // catalog list: identity, at the URL clients reach.
    let catalog = os_json(&admin, &["catalog", "list"]);
    let identity = catalog
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Type"] == "identity")
        .unwrap_or_else(|| panic!("no identity service in {catalog}"));
    let endpoints = identity["Endpoints"].to_string();
    assert!(
        endpoints.contains(&format!("http://127.0.0.1:{port}/identity")),
        "{endpoints}"
    );

    // token revoke: the revoked token is rejected.
    let (victim, _) = password_token(port, "alice", "alice-pw", &demo_id);
    assert_eq!(validate(port, &admin_token, &victim), 200);
    os_ok(&admin, &["token", "revoke", &victim]);
    assert_eq!(validate(port, &admin_token, &victim), 404);
    let r = http(
        "GET",
        port,
        "/identity/v3/auth/projects",
        &[("X-Auth-Token", &victim)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    // Other tokens of the same user are untouched.
    assert_eq!(validate(port, &admin_token, &alice_token), 200);
    assert!(!admin_user_id.is_empty());
}

#[test]
fn permissive_mode_records_and_plans() {
    let srv = Server::start("permissive", &["--policy-permissive"]);
    let admin = srv.admin_env.clone();
    let proj = os_json(&admin, &["project", "create", "--domain", "default", "ops"]);
    let proj_id = s(&proj, "id").to_string();
    let carol = os_json(
        &admin,
        &[
            "user",
            "create",
            "--domain",
            "default",
            "--password",
            "carol-pw",
            "carol",
        ],
    );
    let carol_id = s(&carol, "id").to_string();
    os_ok(
        &admin,
        &[
            "role",
            "add",
            "--user",
            "carol",
            "--project",
            "ops",
            "member",
        ],
    );

    // Denied by the rules (a member may not create users), allowed anyway.
    let carol_env = srv.user_env("carol", "carol-pw", Scope::Project("ops"));
    let dave = os_json(
        &carol_env,
        &[
            "user",
            "create",
            "--domain",
            "default",
            "--password",
            "x",
            "dave",
        ],
    );
    assert_eq!(s(&dave, "name"), "dave");

    // ... and the workplan says which role would have allowed it.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.args(["policy", "workplan", "--state-dir"])
        .arg(srv.state_dir());
    let out = run(cmd);
    assert!(
        out.status.success(),
        "weft policy workplan: {}",
        text(&out.stderr)
    );
    let plan = text(&out.stdout);
    let want = format!("grant role admin to user {carol_id} on project {proj_id}");
    assert!(plan.contains(&want), "{want:?} not in:\n{plan}");
    let line = plan.lines().find(|l| l.contains(&want)).unwrap();
    assert!(line.contains("identity:create_user"), "{line}");
    // The admin's own calls were all allowed: nothing planned for them.
    let admin_id = os_json(&admin, &["token", "issue"])["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!plan.contains(&format!("to user {admin_id} ")), "{plan}");
}
