//! The API server of `weft serve`: one HTTP listener, a path prefix per
//! service (`/identity`, then `/networking`, ...), each service's catalog
//! entry registered at start so clients find it.
//!
//! ```text
//!   Server::open(cfg)          identity opened, bootstrapped once, admin-openrc written
//!     .mount(ServiceMount)     a service router under its prefix + its catalog entry
//!     .run().await             bind, serve, stop on SIGINT/SIGTERM
//! ```

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use weft_identity::{Identity, IdentityConfig, IdentityError};
use weft_store::{Follow, Store};

/// How `weft serve` runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// SQLite file (by default), Fernet keys, admin-openrc, policy records.
    pub state_dir: PathBuf,
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Base URL clients reach the server by; catalog URLs start with it.
    pub public_url: String,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
    /// A YAML or JSON file overriding the default policy rules.
    pub policy_file: Option<PathBuf>,
    /// Allow every action but record what the policy would deny.
    pub policy_permissive: bool,
    /// Admin password for the first bootstrap (`WEFT_ADMIN_PASSWORD`); generated when `None`.
    pub admin_password: Option<String>,
    /// `--database`: `postgresql://...` for replicas sharing one database,
    /// or a SQLite path; `None` is `<state_dir>/weft.sqlite`.
    pub database: Option<String>,
    /// `--token-binding`: refuse a build step's token on any service but
    /// its own, or only record it.
    pub token_binding: weft_identity::service::TokenBinding,
    /// Send image data with sendfile(2) ([`crate::zerocopy`]); else writev.
    pub sendfile: bool,
}

impl ServerConfig {
    /// Defaults: token TTL 1 h, enforcing policy, public URL from the listen address.
    pub fn new(state_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        ServerConfig {
            state_dir: state_dir.into(),
            listen,
            public_url: default_public_url(listen),
            token_ttl: Duration::from_secs(3600),
            policy_file: None,
            policy_permissive: false,
            admin_password: None,
            database: None,
            token_binding: Default::default(),
            sendfile: true,
        }
    }
}

/// `http://ADDR:PORT`, with a wildcard listen address replaced by loopback.
pub fn default_public_url(listen: SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if listen.is_ipv6() {
        format!("[{}]", listen.ip())
    } else {
        listen.ip().to_string()
    };
    format!("http://{ip}:{}", listen.port())
}

#[derive(Debug, thiserror::Error)]
/// Why the server could not start or stopped.
pub enum ServerError {
    #[error("identity: {0}")]
    /// The identity service did not open or bootstrap.
    Identity(#[from] IdentityError),
    #[error("store: {0}")]
    /// The store did not open.
    Store(#[from] weft_store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    /// The listen address is taken or not ours.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    /// A first-start file (admin-openrc) could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    /// Serving failed.
    Serve(std::io::Error),
}

/// A service served beside identity: its router under `prefix` and its catalog entry.
pub struct ServiceMount {
    /// Path prefix, e.g. `/networking`.
    pub prefix: String,
    /// The service's routes, relative to `prefix`.
    pub router: Router,
    /// Catalog type, e.g. `network`.
    pub service_type: String,
    /// Catalog name, e.g. `neutron`.
    pub name: String,
    /// The path under the public URL that goes in the catalog (often `prefix`).
    pub catalog_path: String,
}

impl ServiceMount {
    /// A mount whose catalog URL is `{public_url}{prefix}`.
    pub fn new(prefix: &str, service_type: &str, name: &str, router: Router) -> Self {
        ServiceMount {
            prefix: prefix.trim_end_matches('/').to_string(),
            router,
            service_type: service_type.into(),
            name: name.into(),
            catalog_path: prefix.trim_end_matches('/').to_string(),
        }
    }
}

/// What happened at start: shown to the operator once.
#[derive(Debug, Clone)]
pub struct StartReport {
    /// True on the first start, when the admin user was created.
    pub bootstrapped: bool,
    /// The admin password, when it was generated (shown once).
    pub generated_password: Option<String>,
    /// Where admin-openrc was written, if it was.
    pub openrc: Option<PathBuf>,
}

/// The API server: identity and the mounted services behind one auth and observability layer.
pub struct Server {
    cfg: ServerConfig,
    store: Arc<dyn Store>,
    metrics: Arc<crate::observe::Metrics>,
    /// Every service's replica, kept current by the follower on a shared database.
    followers: Vec<Arc<dyn Follow>>,
    identity: Arc<Identity>,
    mounts: Vec<ServiceMount>,
    report: StartReport,
}

impl Server {
    /// Open the identity state, bootstrap it on first start, register the
    /// identity service in the catalog and write `{state_dir}/admin-openrc`.
    pub fn open(cfg: ServerConfig) -> Result<Server, ServerError> {
        let store = weft_store::open(cfg.database.as_deref(), &cfg.state_dir)?;
        let identity = Arc::new(Identity::open(
            IdentityConfig {
                state_dir: cfg.state_dir.clone(),
                public_url: cfg.public_url.trim_end_matches('/').to_string(),
                token_ttl: cfg.token_ttl,
                policy_file: cfg.policy_file.clone(),
                policy_permissive: cfg.policy_permissive,
                token_binding: cfg.token_binding,
            },
            store.clone(),
        )?);
        let report = prepare(&identity, &cfg)?;
        let mut server = Server {
            cfg,
            store,
            metrics: Arc::default(),
            followers: Vec::new(),
            identity,
            mounts: Vec::new(),
            report,
        };
        server.follow(server.identity.replica());
        Ok(server)
    }

    /// The identity service, for other services' auth (`weft_identity::Auth`).
    pub fn identity(&self) -> Arc<Identity> {
        self.identity.clone()
    }

    /// The config it runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// The one store every service writes through.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Keeps `replica` current with other replicas' commits once serving
    /// (PostgreSQL; a no-op on embedded SQLite, which has one writer).
    pub fn follow(&mut self, replica: Arc<dyn Follow>) {
        self.followers.push(replica);
    }

    /// The metrics `GET /metrics` shows; components outside ctrl (the
    /// in-process agent and its switch) add theirs with
    /// [`crate::observe::Metrics::extend`].
    pub fn metrics(&self) -> Arc<crate::observe::Metrics> {
        self.metrics.clone()
    }

    /// What happened at start.
    pub fn start_report(&self) -> &StartReport {
        &self.report
    }

    /// Serve another service under its prefix and list it in the catalog.
    pub fn mount(&mut self, m: ServiceMount) -> Result<(), ServerError> {
        let url = format!(
            "{}{}",
            self.cfg.public_url.trim_end_matches('/'),
            m.catalog_path
        );
        self.identity
            .register_service(&m.service_type, &m.name, &url)?;
        self.mounts.push(m);
        Ok(())
    }

    /// The whole HTTP app (for in-process tests as well as `run`).
    pub fn router(&self) -> Router {
        build_router(self.identity.clone(), &self.mounts, self.metrics.clone())
    }

    /// The app as served: the router behind trailing-slash normalisation.
    /// Keystone and Neutron answer `/identity/`, `/v3/users/` and
    /// `/OS-TRUST/trusts/` like their slash-less forms, and clients (tempest,
    /// an OS_AUTH_URL ending in `/`) rely on it; axum's router matches
    /// paths exactly, so the slash is trimmed before routing. Not every
    /// API forgives it (Glance answers `GET /v2/images/` with a 404), so a
    /// trimmed request carries [`TrimmedSlash`] for such a service to act on.
    pub fn service(&self) -> Served {
        Served(tower_http::normalize_path::NormalizePath::trim_trailing_slash(self.router()))
    }

    /// Binds `addr` and serves `router` alone at its root, behind the same
    /// observe layer as the main app (request ids, token validation,
    /// metrics), on a task of the current runtime until it stops. For a
    /// service also deployed on a port of its own, as Placement is on 8778:
    /// clients configured with that endpoint get root-relative links.
    pub async fn spawn_alone(
        &self,
        service: &str,
        addr: SocketAddr,
        router: Router,
    ) -> Result<(), ServerError> {
        let auth = crate::observe::AuthLayer {
            identity: self.identity.clone(),
            metrics: self.metrics.clone(),
            services: crate::observe::Services::alone(service),
        };
        let app = tower_http::normalize_path::NormalizePath::trim_trailing_slash(
            router.layer(crate::observe::ObserveLayer(auth)),
        );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        tracing::info!(listen = %addr, service, "serving alone at the root");
        let listener = crate::zerocopy::SendfileListener::new(
            listener,
            self.cfg.sendfile.then(|| self.metrics.sendfile_bytes()),
        );
        let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(listen = %addr, error = %e, "listener stopped");
            }
        });
        Ok(())
    }

    /// Bind and serve until SIGINT or SIGTERM.
    pub async fn run(self) -> Result<(), ServerError> {
        let (store, followers) = (self.store.clone(), self.followers.clone());
        tokio::task::spawn_blocking(move || weft_store::follow(store, followers))
            .await
            .map_err(|e| weft_store::StoreError::Backend(e.to_string()))??;
        tracing::info!(
            services = self.followers.len(),
            backend = self.store.backend(),
            "following the store's change log"
        );
        let app = self.service();
        let listener = tokio::net::TcpListener::bind(self.cfg.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: self.cfg.listen,
                source,
            })?;
        tracing::info!(listen = %self.cfg.listen, public_url = %self.cfg.public_url, "weft serve: listening");
        // Image downloads leave by sendfile from their files (zerocopy.rs).
        let listener = crate::zerocopy::SendfileListener::new(
            listener,
            self.cfg.sendfile.then(|| self.metrics.sendfile_bytes()),
        );
        let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(ServerError::Serve)
    }
}

/// Marks a request whose path ended in `/` before [`Server::service`]
/// trimmed it, so that a service whose upstream routes paths exactly can
/// still refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrimmedSlash;

/// The served app ([`Server::service`]): trailing slashes trimmed, and marked.
#[derive(Clone)]
pub struct Served(tower_http::normalize_path::NormalizePath<Router>);

impl tower::Service<Request> for Served {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future =
        <tower_http::normalize_path::NormalizePath<Router> as tower::Service<Request>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        <tower_http::normalize_path::NormalizePath<Router> as tower::Service<Request>>::poll_ready(
            &mut self.0,
            cx,
        )
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let path = req.uri().path();
        if path.len() > 1 && path.ends_with('/') {
            req.extensions_mut().insert(TrimmedSlash);
        }
        self.0.call(req)
    }
}

fn build_router(
    identity: Arc<Identity>,
    mounts: &[ServiceMount],
    metrics: Arc<crate::observe::Metrics>,
) -> Router {
    use crate::observe;
    let auth = observe::AuthLayer {
        identity: identity.clone(),
        metrics: metrics.clone(),
        services: observe::Services::new(
            ["identity", "metrics"]
                .into_iter()
                .chain(mounts.iter().map(|m| m.prefix.as_str())),
        ),
    };
    let identity = weft_identity::router(identity).layer(axum::middleware::from_fn(
        |req: Request, next: Next| json_errors(crate::observe::keystone_body, req, next),
    ));
    let mut app = Router::new().nest("/identity", identity);
    for m in mounts {
        app = app.nest(&m.prefix, m.router.clone());
    }
    app.route(
        "/metrics",
        axum::routing::get(observe::metrics).with_state(metrics.clone()),
    )
    .layer(observe::ObserveLayer(auth))
}

/// How one API words an error body: (status, request method, what the
/// framework said) -> its JSON (`{"error": ...}`, `{"NeutronError": ...}`).
pub type ErrorBody = fn(StatusCode, &Method, &str) -> Value;

/// Middleware for a service's router: answers that axum gives on its own
/// (405 from the router on a known path, 413 from the body limit, an
/// extractor's text rejection) are empty or text/plain; they get the
/// service's JSON error body instead, keeping status and headers (`Allow`).
/// A 413 also says `Connection: close`: the unread rest of the body makes
/// the connection unusable, so the client learns it will not be kept.
pub async fn json_errors(render: ErrorBody, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let said = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let body = render(status, &method, said.trim()).to_string();
    (parts, body).into_response()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// First-start work, idempotent: bootstrap, catalog entry, admin-openrc.
fn prepare(identity: &Identity, cfg: &ServerConfig) -> Result<StartReport, ServerError> {
    let rep = identity.bootstrap(cfg.admin_password.as_deref())?;
    identity.register_service("identity", "keystone", &identity.v3_url())?;
    let password = rep
        .generated_password
        .clone()
        .or_else(|| cfg.admin_password.clone());
    let path = cfg.state_dir.join("admin-openrc");
    // Only rewrite the file when the password is known (first start, or given).
    let openrc = match password {
        Some(pw) => {
            write_openrc(&path, &identity.v3_url(), &pw)?;
            Some(path)
        }
        None => path.exists().then_some(path),
    };
    Ok(StartReport {
        bootstrapped: !rep.already_bootstrapped,
        generated_password: rep.generated_password,
        openrc,
    })
}

/// Shell-quote a value for `export NAME='value'`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Writes an openrc (mode 0600) for the admin user, for `source admin-openrc; openstack ...`.
pub fn write_openrc(path: &Path, auth_url: &str, password: &str) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let body = format!(
        "# weft admin credentials (written by weft serve)\n\
         export OS_AUTH_URL={}\n\
         export OS_USERNAME=admin\n\
         export OS_PASSWORD={}\n\
         export OS_PROJECT_NAME=admin\n\
         export OS_USER_DOMAIN_NAME=Default\n\
         export OS_PROJECT_DOMAIN_NAME=Default\n\
         export OS_IDENTITY_API_VERSION=3\n\
         export OS_INTERFACE=public\n\
         export OS_REGION_NAME=RegionOne\n",
        sh_quote(auth_url),
        sh_quote(password)
    );
    let err = |source| ServerError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(body.as_bytes()).map_err(err)?;
    Ok(())
}
