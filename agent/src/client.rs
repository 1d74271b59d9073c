//! The agent's side of the sync protocol: the [`Ctrl`] calls, and [`HttpCtrl`]
//! speaking them over HTTP (for `weft agent --ctrl URL`). `weft serve` implements
//! [`Ctrl`] in-process over its networking service. Both speak the same calls:
//! "my host's state once the revision passes R" and "these ports are now X".

pub(crate) mod file_body;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use weft_proto::{AgentFields, AgentRegistration, HostState, StatusReport};

/// What can go wrong between the agent and ctrl; the loop retries every one
/// of them, and a replica that is unreachable or answers 5xx is failed over.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No connection, or the connection broke.
    #[error("ctrl at {url} unreachable: {message}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// What the OS or HTTP client said.
        message: String,
    },
    /// ctrl answered with an error status.
    #[error("ctrl refused {what}: HTTP {status}: {body}")]
    Refused {
        /// The call (`register`, `state`, `report`).
        what: String,
        /// HTTP status.
        status: u16,
        /// The error body, for the log.
        body: String,
    },
    /// ctrl answered 2xx with a body the agent cannot read.
    #[error("bad answer from ctrl for {what}: {message}")]
    BadAnswer {
        /// The call.
        what: String,
        /// The decoding error.
        message: String,
    },
    /// No token could be had (bad credentials, identity unreachable).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// A local problem: bad flag or config, a switch that would not start.
    #[error("{0}")]
    Local(String),
}

/// The calls the agent makes on ctrl, over HTTP ([`HttpCtrl`]) or in-process
/// (`weft serve`): the loop is written once against this trait and tested with fakes.
pub trait Ctrl: Send + Sync {
    /// Registers this host's agent and its tunnel endpoint (None: it has
    /// none), a write on ctrl. Called at start and after ctrl was lost, not
    /// on every poll: the long-poll is a pure read.
    fn register(&self) -> impl Future<Output = Result<(), AgentError>> + Send;
    /// The host's desired state at a revision after `since`, waiting up to
    /// `wait` for one (a long-poll); at the timeout, the state as it is.
    fn state(
        &self,
        since: u64,
        wait: Duration,
    ) -> impl Future<Output = Result<HostState, AgentError>> + Send;
    /// Reports (port id, `ACTIVE`/`DOWN`) for ports whose status changed.
    fn report(
        &self,
        statuses: &[(String, String)],
    ) -> impl Future<Output = Result<(), AgentError>> + Send;
}

/// How the agent gets a token for ctrl.
#[derive(Debug, Clone)]
pub enum AgentAuth {
    /// A fixed token (`weft agent` takes it from `WEFT_AGENT_TOKEN`).
    Token(String),
    /// Keystone v3 password auth, as in an openrc file (`weft agent` reads its `OS_*`
    /// variables).
    Password {
        /// `OS_AUTH_URL`: the identity endpoint (`http://ctrl:8080/identity/v3`).
        auth_url: String,
        /// `OS_USERNAME`.
        username: String,
        /// `OS_PASSWORD`.
        password: String,
        /// `OS_PROJECT_NAME`: the token is scoped to it.
        project_name: String,
        /// `OS_USER_DOMAIN_NAME`.
        user_domain: String,
        /// `OS_PROJECT_DOMAIN_NAME`.
        project_domain: String,
    },
}

/// A parsed `http://host:port/prefix` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub(crate) authority: String,
    pub(crate) path: String,
}

impl Url {
    pub(crate) fn parse(s: &str) -> Result<Url, AgentError> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| AgentError::Local(format!("{s}: only http:// URLs are supported")))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(AgentError::Local(format!("{s}: no host")));
        }
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Url {
            authority,
            path: path.trim_end_matches('/').to_string(),
        })
    }
}

pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: Bytes,
}

/// One HTTP/1.1 request on a fresh connection (the agent makes few, long ones).
pub(crate) async fn http(
    method: Method,
    url: &Url,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Result<Response, AgentError> {
    let body = body.map(|v| ("application/json", Bytes::from(v.to_string())));
    http_bytes(method, url, path, headers, body).await
}

/// [`http`] with a body of any content type: (content type, bytes).
pub(crate) async fn http_bytes(
    method: Method,
    url: &Url,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Bytes)>,
) -> Result<Response, AgentError> {
    let (resp, full) = send(method, url, path, headers, body).await?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| AgentError::Unreachable {
            url: full,
            message: e.to_string(),
        })?
        .to_bytes();
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Sends one request and returns the answer with its body still on the
/// wire (and the URL called, for errors): [`http`] collects it, an image
/// download reads it frame by frame ([`crate::compute_remote::image_fetch`]).
pub(crate) async fn send(
    method: Method,
    url: &Url,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Bytes)>,
) -> Result<(hyper::Response<hyper::body::Incoming>, String), AgentError> {
    let (kind, body) = match body {
        Some((kind, b)) => (Some(kind), b),
        None => (None, Bytes::new()),
    };
    send_body(method, url, path, headers, kind, Full::new(body)).await
}

/// [`send`] with any body (a file sent as it is read: [`file_body`]) of
/// content type `kind`.
pub(crate) async fn send_body<B>(
    method: Method,
    url: &Url,
    path: &str,
    headers: &[(&str, &str)],
    kind: Option<&str>,
    body: B,
) -> Result<(hyper::Response<hyper::body::Incoming>, String), AgentError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let full = format!("http://{}{}{}", url.authority, url.path, path);
    let unreachable = |m: String| AgentError::Unreachable {
        url: full.clone(),
        message: m,
    };
    let stream = tokio::net::TcpStream::connect(&url.authority)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{}{}", url.path, path))
        .header("host", &url.authority)
        .header("accept", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(kind) = kind {
        req = req.header("content-type", kind);
    }
    let req = req.body(body).map_err(|e| unreachable(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    Ok((resp, full))
}

/// The HTTP protocol against a remote ctrl: one or several replicas
/// (`--ctrl URL1,URL2`), tried in turn. Every replica of one cloud shares
/// the database, so revisions and the desired state are the same on each:
/// after a failover the agent long-polls the next replica from the revision
/// it had, and re-applying a state it already has changes nothing on the
/// switch (no port is lost or wired twice).
pub struct HttpCtrl {
    /// The replicas, in the order given.
    pub(crate) ctrls: Vec<Url>,
    /// Index of the replica in use (the last one that answered).
    current: std::sync::atomic::AtomicUsize,
    /// This host's name (`binding:host_id`), in every call's path.
    pub host: String,
    /// This host's tunnel endpoint, registered at start.
    pub tunnel_ip: Option<String>,
    /// How it gets (and renews) its token.
    pub auth: AgentAuth,
    token: Mutex<Option<String>>,
}

/// Whether an error means "try another replica": it did not answer, or it
/// answered that it cannot serve right now (5xx).
fn fails_over(e: &AgentError) -> bool {
    match e {
        AgentError::Unreachable { .. } => true,
        AgentError::Refused { status, .. } => *status >= 500,
        _ => false,
    }
}

impl HttpCtrl {
    /// `ctrl_urls`: one base URL, or several separated by commas.
    pub fn new(ctrl_urls: &str, host: &str, auth: AgentAuth) -> Result<HttpCtrl, AgentError> {
        let ctrls = ctrl_urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(Url::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if ctrls.is_empty() {
            return Err(AgentError::Local("--ctrl: no URL given".into()));
        }
        Ok(HttpCtrl {
            ctrls,
            current: std::sync::atomic::AtomicUsize::new(0),
            host: host.to_string(),
            tunnel_ip: None,
            auth,
            token: Mutex::new(None),
        })
    }

    /// The replica in use.
    #[cfg(test)]
    pub(crate) fn ctrl(&self) -> &Url {
        &self.ctrls[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.ctrls.len()]
    }

    /// The replicas in the order to try them: the one in use first.
    fn rotation(&self) -> impl Iterator<Item = usize> + '_ {
        let start = self.current.load(std::sync::atomic::Ordering::Relaxed);
        (0..self.ctrls.len()).map(move |i| (start + i) % self.ctrls.len())
    }

    /// Password auth against `auth_url`, then against each replica's own
    /// `/identity/v3` if that one does not answer (the openrc's auth URL may
    /// name the replica that died).
    async fn issue_token(&self, auth_url: &str, body: Value) -> Result<String, AgentError> {
        let mut urls = vec![Url::parse(auth_url)?];
        for i in self.rotation() {
            let c = &self.ctrls[i];
            let u = Url {
                authority: c.authority.clone(),
                path: format!("{}/identity/v3", c.path),
            };
            if !urls.contains(&u) {
                urls.push(u);
            }
        }
        let mut last = None;
        for url in &urls {
            match http(Method::POST, url, "/auth/tokens", &[], Some(body.clone())).await {
                Ok(r) if r.status.is_success() => {
                    return r
                        .headers
                        .get("x-subject-token")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from)
                        .ok_or_else(|| {
                            AgentError::Auth("no X-Subject-Token in the answer".into())
                        });
                }
                Ok(r) if r.status.is_server_error() => {
                    last = Some(AgentError::Auth(format!(
                        "HTTP {} from http://{}{}/auth/tokens",
                        r.status, url.authority, url.path
                    )));
                }
                Ok(r) => {
                    return Err(AgentError::Auth(format!(
                        "HTTP {} from http://{}{}/auth/tokens",
                        r.status, url.authority, url.path
                    )))
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| AgentError::Auth("no identity endpoint".into())))
    }

    async fn token(&self) -> Result<String, AgentError> {
        if let Some(t) = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(t);
        }
        let t = match &self.auth {
            AgentAuth::Token(t) => t.clone(),
            AgentAuth::Password {
                auth_url,
                username,
                password,
                project_name,
                user_domain,
                project_domain,
            } => {
                let body = json!({"auth": {
                    "identity": {"methods": ["password"], "password": {"user": {
                        "name": username, "domain": {"name": user_domain}, "password": password}}},
                    "scope": {"project": {"name": project_name, "domain": {"name": project_domain}}}}});
                self.issue_token(auth_url, body).await?
            }
        };
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(t.clone());
        Ok(t)
    }

    /// A call with `token` (a step token for one service, not the agent's
    /// own) on the replica in use: a service's API, as a build step.
    pub(crate) async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        what: &str,
    ) -> Result<Response, AgentError> {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.ctrls.len();
        let r = http(
            method,
            &self.ctrls[i],
            path,
            &[("x-auth-token", token)],
            body,
        )
        .await?;
        if !r.status.is_success() {
            return Err(AgentError::Refused {
                what: what.to_string(),
                status: r.status.as_u16(),
                body: String::from_utf8_lossy(&r.body).into_owned(),
            });
        }
        Ok(r)
    }

    /// A PUT with `token` on the replica in use of a file's bytes, read as
    /// they are sent (a snapshot's qcow2 can be the guest's whole disk); a
    /// non-2xx answer is [`AgentError::Refused`].
    pub(crate) async fn put_file_as(
        &self,
        token: &str,
        path: &str,
        file: &std::path::Path,
        what: &str,
    ) -> Result<(), AgentError> {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.ctrls.len();
        let url = &self.ctrls[i];
        let body = file_body::FileBody::open(file)
            .await
            .map_err(|e| AgentError::Local(format!("{}: {e}", file.display())))?;
        let (resp, full) = send_body(
            Method::PUT,
            url,
            path,
            &[("x-auth-token", token)],
            Some("application/octet-stream"),
            body,
        )
        .await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| AgentError::Unreachable {
                url: full,
                message: e.to_string(),
            })?
            .to_bytes();
        if !status.is_success() {
            return Err(AgentError::Refused {
                what: what.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(())
    }

    /// A GET with `token` on the replica in use whose 2xx body is left on
    /// the wire for the caller to read as it comes (an image download: a
    /// collected body would hold the whole image in memory).
    pub(crate) async fn get_streamed_as(
        &self,
        token: &str,
        path: &str,
        what: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, AgentError> {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.ctrls.len();
        let (r, _) = send(
            Method::GET,
            &self.ctrls[i],
            path,
            &[("x-auth-token", token)],
            None,
        )
        .await?;
        if !r.status().is_success() {
            let status = r.status().as_u16();
            let body = r.into_body().collect().await.map(|b| b.to_bytes());
            return Err(AgentError::Refused {
                what: what.to_string(),
                status,
                body: String::from_utf8_lossy(&body.unwrap_or_default()).into_owned(),
            });
        }
        Ok(r)
    }

    /// A call with the token, on the replica in use, failing over to the
    /// next replica when one does not answer or answers 5xx; on 401 the
    /// token is dropped and fetched once more.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        what: &str,
    ) -> Result<Response, AgentError> {
        let mut last = None;
        for i in self.rotation() {
            match self
                .call_one(&self.ctrls[i], method.clone(), path, body.clone(), what)
                .await
            {
                Ok(r) => {
                    let was = self.current.swap(i, std::sync::atomic::Ordering::Relaxed);
                    if was % self.ctrls.len() != i {
                        let c = &self.ctrls[i];
                        tracing::warn!(ctrl = %format!("http://{}{}", c.authority, c.path), "failed over to another ctrl replica");
                    }
                    return Ok(r);
                }
                Err(e) if fails_over(&e) && self.ctrls.len() > 1 => {
                    tracing::warn!(error = %e, "ctrl replica failed; trying the next");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| AgentError::Local("no ctrl URL".into())))
    }

    async fn call_one(
        &self,
        ctrl: &Url,
        method: Method,
        path: &str,
        body: Option<Value>,
        what: &str,
    ) -> Result<Response, AgentError> {
        for attempt in 0..2 {
            let t = self.token().await?;
            let r = http(
                method.clone(),
                ctrl,
                path,
                &[("x-auth-token", &t)],
                body.clone(),
            )
            .await?;
            if r.status == StatusCode::UNAUTHORIZED && attempt == 0 {
                *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
                continue;
            }
            if !r.status.is_success() {
                return Err(AgentError::Refused {
                    what: what.to_string(),
                    status: r.status.as_u16(),
                    body: String::from_utf8_lossy(&r.body).into_owned(),
                });
            }
            return Ok(r);
        }
        Err(AgentError::Auth("token rejected twice".into()))
    }
}

impl Ctrl for HttpCtrl {
    async fn register(&self) -> Result<(), AgentError> {
        let path = format!("/networking/agent/v1/hosts/{}", self.host);
        let body = AgentRegistration {
            agent: AgentFields {
                tunnel_ip: self.tunnel_ip.clone(),
            },
        };
        let body = serde_json::to_value(body).map_err(|e| AgentError::Local(e.to_string()))?;
        self.call(Method::PUT, &path, Some(body), "agent registration")
            .await?;
        Ok(())
    }

    async fn state(&self, since: u64, wait: Duration) -> Result<HostState, AgentError> {
        let path = format!(
            "/networking/agent/v1/hosts/{}/state?since={since}&timeout={}",
            self.host,
            wait.as_secs()
        );
        let r = self.call(Method::GET, &path, None, "host state").await?;
        serde_json::from_slice(&r.body).map_err(|e| AgentError::BadAnswer {
            what: "host state".into(),
            message: e.to_string(),
        })
    }

    async fn report(&self, statuses: &[(String, String)]) -> Result<(), AgentError> {
        let report = StatusReport {
            ports: statuses.iter().cloned().collect(),
        };
        let body = serde_json::to_value(report).map_err(|e| AgentError::Local(e.to_string()))?;
        let path = format!("/networking/agent/v1/hosts/{}/status", self.host);
        self.call(Method::POST, &path, Some(body), "status report")
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            Url::parse("http://10.0.0.1:8080/").unwrap(),
            Url {
                authority: "10.0.0.1:8080".into(),
                path: String::new()
            }
        );
        assert_eq!(
            Url::parse("http://ctrl/identity/v3").unwrap(),
            Url {
                authority: "ctrl:80".into(),
                path: "/identity/v3".into()
            }
        );
        assert!(Url::parse("https://x").is_err());
        assert!(Url::parse("http:///x").is_err());
    }

    #[test]
    fn takes_several_replicas() {
        let auth = AgentAuth::Token("t".into());
        let c = HttpCtrl::new("http://a:1, http://b:2/x", "h", auth.clone()).unwrap();
        assert_eq!(c.ctrls.len(), 2);
        assert_eq!(c.ctrls[1].path, "/x");
        assert_eq!(c.ctrl().authority, "a:1");
        assert_eq!(c.rotation().collect::<Vec<_>>(), vec![0, 1]);
        c.current.store(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(c.rotation().collect::<Vec<_>>(), vec![1, 0]);
        assert!(HttpCtrl::new(" , ", "h", auth.clone()).is_err());
        assert!(HttpCtrl::new("http://a:1,https://b", "h", auth).is_err());
    }

    /// A minimal HTTP/1.1 server: every request gets 200 `{"ok":true}`.
    async fn answer_ok(l: tokio::net::TcpListener) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"ok":true}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    }

    /// Takes one request (headers and a `content-length` body), answers
    /// `status`, and hands back (headers, body).
    async fn take_one(l: tokio::net::TcpListener, status: &'static str) -> (String, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = l.accept().await.unwrap();
        let mut req = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let end = loop {
            if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the headers");
            req.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("a content-length")
            .trim()
            .parse()
            .unwrap();
        let mut body = req[end..].to_vec();
        while body.len() < len {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the body's end");
            body.extend_from_slice(&buf[..n]);
        }
        let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        s.write_all(resp.as_bytes()).await.unwrap();
        (head, body)
    }

    /// A file PUT goes with its length and its bytes as they are on disk;
    /// an error status comes back as Refused.
    #[tokio::test]
    async fn put_file_as_sends_the_file_with_its_length() {
        let dir = std::env::temp_dir().join(format!("cop-put-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("snap.qcow2");
        let data: Vec<u8> = (0..(3 * file_body::CHUNK + 7))
            .map(|i| (i % 253) as u8)
            .collect();
        std::fs::write(&file, &data).unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(take_one(l, "204 No Content"));
        let c =
            HttpCtrl::new(&format!("http://{addr}"), "h", AgentAuth::Token("t".into())).unwrap();
        c.put_file_as("tok", "/image/v2/images/i/file", &file, "upload")
            .await
            .unwrap();
        let (head, body) = server.await.unwrap();
        assert!(
            head.starts_with("put /image/v2/images/i/file http/1.1"),
            "{head}"
        );
        assert!(head.contains("x-auth-token: tok"), "{head}");
        assert!(
            head.contains("content-type: application/octet-stream"),
            "{head}"
        );
        assert!(body == data, "the file's bytes");

        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(take_one(l, "413 Payload Too Large"));
        let c =
            HttpCtrl::new(&format!("http://{addr}"), "h", AgentAuth::Token("t".into())).unwrap();
        let r = c.put_file_as("tok", "/x", &file, "upload").await;
        let _ = server.await;
        let missing = c
            .put_file_as("tok", "/x", &dir.join("none"), "upload")
            .await;
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            matches!(r, Err(AgentError::Refused { status: 413, .. })),
            "{r:?}"
        );
        assert!(matches!(missing, Err(AgentError::Local(_))), "{missing:?}");
    }

    /// A replica that is down is skipped; the call lands on the next one and
    /// the next call starts there.
    #[tokio::test]
    async fn fails_over_to_the_next_replica() {
        // A port with nothing listening: connection refused.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        tokio::spawn(answer_ok(live));
        let c = HttpCtrl::new(
            &format!("http://{dead_addr},http://{live_addr}"),
            "h",
            AgentAuth::Token("t".into()),
        )
        .unwrap();
        let r = c.call(Method::GET, "/ping", None, "ping").await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(c.ctrl().authority, live_addr.to_string());
        // With one URL there is nothing to fail over to: the error comes back.
        let one = HttpCtrl::new(
            &format!("http://{dead_addr}"),
            "h",
            AgentAuth::Token("t".into()),
        )
        .unwrap();
        assert!(matches!(
            one.call(Method::GET, "/ping", None, "ping").await,
            Err(AgentError::Unreachable { .. })
        ));
    }
}
