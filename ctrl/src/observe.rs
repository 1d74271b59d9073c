//! What operators see of `weft serve`: a request id and a tracing span per
//! HTTP request, a log line per request (user, project, method, path,
//! status, time), `GET /metrics` in Prometheus text format, and the one
//! place where `X-Auth-Token` is validated for every API.
//!
//! ```text
//!  request ─► observe: id, span, timer, and the token validated once
//!             │         (AuthContext left in the request's extensions)
//!             │  ─► service router (its extractors take the caller from there)
//!             ◄─ x-openstack-request-id, weft_http_requests_total{...}, latency
//! ```

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use weft_identity::{AuthContext, Identity};

/// The header OpenStack services answer every request with.
pub const REQUEST_ID: &str = "x-openstack-request-id";

// Label values are built for every request, so none of them copies a
// string: a service name is a shared `Arc<str>`, the route is axum's own
// `MatchedPath` (an `Arc<str>` inside), the method is `http::Method` (no
// allocation for the standard ones). A family's entry is looked up by them
// and cloned only the first time a label set is seen.

/// A service name (`identity`, `networking`), shared by every request to it.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Service(Arc<str>);

impl EncodeLabelValue for Service {
    fn encode(&self, e: &mut LabelValueEncoder) -> std::fmt::Result {
        e.write_str(&self.0)
    }
}

/// The route template axum matched (`/networking/v2.0/ports/{id}`), or
/// `unmatched`: never the raw path, so that the number of series stays bounded.
#[derive(Clone, Debug)]
struct Route(Option<MatchedPath>);

impl Route {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl Hash for Route {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, e: &mut LabelValueEncoder) -> std::fmt::Result {
        e.write_str(self.as_str())
    }
}

/// The request's method.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct MethodLabel(Method);

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, e: &mut LabelValueEncoder) -> std::fmt::Result {
        e.write_str(self.0.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: Service,
    route: Route,
    method: MethodLabel,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    service: Service,
    route: Route,
}

/// The services a path's first segment may name (the mounts' prefixes,
/// `identity`, `metrics`); any other path counts as `other`, so that a
/// scan of random paths cannot grow the metrics without bound.
#[derive(Clone, Debug)]
pub struct Services {
    known: Arc<[Service]>,
    other: Service,
    /// Every path is this service's (one served alone at the root).
    alone: Option<Service>,
}

impl Services {
    /// The services named by `prefixes` (`/networking`, `identity`).
    pub fn new<'a>(prefixes: impl IntoIterator<Item = &'a str>) -> Services {
        let known: Vec<Service> = prefixes
            .into_iter()
            // A service is named by its prefix's first segment (`/compute/v2.1`: compute).
            .filter_map(|p| p.trim_start_matches('/').split('/').next())
            .filter(|p| !p.is_empty())
            .map(|p| Service(p.into()))
            .collect();
        Services {
            known: known.into(),
            other: Service("other".into()),
            alone: None,
        }
    }

    /// One service served alone at the root of its own listener: every
    /// path is its.
    pub fn alone(service: &str) -> Services {
        Services {
            alone: Some(Service(service.into())),
            ..Services::new([service])
        }
    }

    /// The service a path belongs to: its first segment, if a known one.
    fn of(&self, path: &str) -> Service {
        if let Some(s) = &self.alone {
            return s.clone();
        }
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        self.known
            .iter()
            .find(|s| &*s.0 == first)
            .unwrap_or(&self.other)
            .clone()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// The server's metrics and their registry.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    validated: Counter,
    rejected: Counter,
    sendfile_bytes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("weft");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by service, route, method and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 100 µs .. ~3.3 s
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by service and route",
            latency.clone(),
        );
        let validations = Family::<ResultLabels, Counter>::default();
        registry.register(
            "token_validations",
            "X-Auth-Token validations by result (valid, invalid)",
            validations.clone(),
        );
        let validated = validations
            .get_or_create(&ResultLabels {
                result: "valid".into(),
            })
            .clone();
        let rejected = validations
            .get_or_create(&ResultLabels {
                result: "invalid".into(),
            })
            .clone();
        let sendfile_bytes = Counter::default();
        registry.register(
            "sendfile_bytes",
            "Response body bytes sent with sendfile(2) from image files (zero-copy downloads)",
            sendfile_bytes.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            validated,
            rejected,
            sendfile_bytes,
        }
    }
}

impl Metrics {
    /// Adds metrics kept outside ctrl (the in-process agent's sync rounds,
    /// its switch's counters) to the same registry, so one scrape shows them.
    pub fn extend(&self, add: impl FnOnce(&mut Registry)) {
        add(&mut self.registry.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The count of bytes connections sent with sendfile
    /// ([`crate::zerocopy::SendfileListener`]).
    pub fn sendfile_bytes(&self) -> Counter {
        self.sendfile_bytes.clone()
    }

    /// The exposition text (OpenMetrics, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }
}

/// A request id, `req-<uuid>`, on the stack.
struct RequestId([u8; 4 + uuid::fmt::Hyphenated::LENGTH]);

impl RequestId {
    /// A new id as OpenStack services make them. The bits come from the
    /// thread's userspace CSPRNG, not a getrandom(2) call per request.
    fn new() -> RequestId {
        let bits: u128 = rand::random();
        let mut buf = [0u8; 4 + uuid::fmt::Hyphenated::LENGTH];
        buf[..4].copy_from_slice(b"req-");
        uuid::Builder::from_random_bytes(bits.to_le_bytes())
            .into_uuid()
            .hyphenated()
            .encode_lower(&mut buf[4..]);
        RequestId(buf)
    }

    fn as_str(&self) -> &str {
        // "req-" and a hyphenated lower-case uuid: ASCII.
        std::str::from_utf8(&self.0).unwrap_or("req-")
    }
}

/// Outermost layer: request id, span, log line and metrics, around every
/// route (`Router::layer`, so the matched route template is known).
///
/// A tower layer rather than `middleware::from_fn`: everything up to the
/// inner call is synchronous (the id, the span, the token check), so the
/// route's future is created in `call` and only the tail (metrics, header,
/// log line) is boxed. `from_fn` boxes its own future, re-boxes the inner
/// service and clones it on every request: three allocations per request
/// that this layer does not make.
#[derive(Clone)]
pub struct ObserveLayer(pub AuthLayer);

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            a: self.0.clone(),
            inner,
        }
    }
}

/// The service [`ObserveLayer`] wraps a route in.
#[derive(Clone)]
pub struct Observe<S> {
    a: AuthLayer,
    inner: S,
}

impl<S> tower::Service<Request> for Observe<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        use tracing::Instrument;
        let started = Instant::now();
        let id = RequestId::new();
        // Services that put the request id in their error bodies (Placement's
        // `request_id`) read it from the request; a client's own value is replaced.
        if let Ok(v) = HeaderValue::from_str(id.as_str()) {
            req.headers_mut().insert(REQUEST_ID, v);
        }
        let method = MethodLabel(req.method().clone());
        let service = self.a.services.of(req.uri().path());
        // The span formats its fields now: the path is borrowed, not copied.
        let span = tracing::info_span!(
            "request",
            request_id = %id.as_str(),
            method = %method.0,
            path = %req.uri().path(),
            user = tracing::field::Empty,
            project = tracing::field::Empty,
        );
        // `Router::layer` wraps each route after matching: the route template
        // (`/networking/v2.0/ports/{id}`) is known here, so labels stay bounded.
        let route = Route(req.extensions().get::<MatchedPath>().cloned());
        let refused = span.in_scope(|| authenticate(&self.a, &service.0, &mut req));
        // A token bound to another service never reaches the route.
        let inner = match refused {
            None => Ok(self.inner.call(req).instrument(span.clone())),
            Some(resp) => Err(resp),
        };
        let m = self.a.metrics.clone();
        Box::pin(async move {
            let Ok(mut resp) = match inner {
                Ok(f) => f.await,
                Err(resp) => Ok(resp),
            };
            let status = resp.status();
            let elapsed = started.elapsed();
            let labels = RequestLabels {
                service,
                route,
                method,
                status: status.as_u16(),
            };
            m.requests.get_or_create(&labels).inc();
            let RequestLabels { service, route, .. } = labels;
            m.latency
                .get_or_create(&RouteLabels { service, route })
                .observe(elapsed.as_secs_f64());
            if let Ok(v) = HeaderValue::from_str(id.as_str()) {
                resp.headers_mut().insert(REQUEST_ID, v);
            }
            span.in_scope(|| {
                tracing::info!(
                    status = status.as_u16(),
                    ms = format_args!("{:.3}", elapsed.as_secs_f64() * 1000.0),
                    "request"
                )
            });
            Ok(resp)
        })
    }
}

/// State of the authentication layer.
#[derive(Clone)]
pub struct AuthLayer {
    /// Validates the tokens.
    pub identity: Arc<Identity>,
    /// Counts requests and validations.
    pub metrics: Arc<Metrics>,
    /// The services a request's `service` label may name.
    pub services: Services,
}

/// The catalog type of the service mounted at `prefix`'s first segment
/// (`networking` -> `network`), as token audiences name services.
pub fn catalog_type(prefix: &str) -> &str {
    match prefix
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
    {
        "networking" => "network",
        other => other,
    }
}

/// Why [`request_context`] refused a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenRefusal {
    /// Not a valid token (expired, revoked, its trust or role gone...).
    #[error("{0}")]
    Invalid(weft_identity::IdentityError),
    /// Valid, but bound to another service.
    #[error("{0}")]
    OtherService(weft_identity::IdentityError),
}

/// Turns a token into the caller's context for a request to the service
/// mounted at `prefix` (`identity`, `networking`, `image`, ...): validated,
/// and refused when it is bound to another service (or let through and
/// recorded, under permissive binding). The HTTP layer below uses it for
/// every request; in-process callers (a build's steps) use it too, so
/// their tokens pass exactly the checks a request would.
pub fn request_context(
    identity: &Identity,
    token: &str,
    prefix: &str,
) -> Result<AuthContext, TokenRefusal> {
    let ctx = identity
        .validate_token(token)
        .map_err(TokenRefusal::Invalid)?;
    identity
        .check_audience(&ctx, catalog_type(prefix))
        .map_err(TokenRefusal::OtherService)?;
    Ok(ctx)
}

/// Validates `X-Auth-Token` once for every API and leaves the caller in the
/// request's extensions (`AuthContext`), where each service's extractor
/// takes it. A missing or invalid token is left to the service, which
/// answers 401 in its own error shape (a route may need no token at all).
/// A valid token bound to another service is answered here: 401 with the
/// reason, in the JSON shape keystonemiddleware gives every service.
fn authenticate(a: &AuthLayer, service: &str, req: &mut Request) -> Option<Response> {
    let t = req
        .headers()
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)?;
    match request_context(&a.identity, t, service) {
        Err(TokenRefusal::OtherService(why)) => {
            a.metrics.rejected.inc();
            let why = why.to_string();
            tracing::info!(%why, "token refused: bound to another service");
            let body = keystone_body(StatusCode::UNAUTHORIZED, req.method(), &why);
            Some(
                (
                    StatusCode::UNAUTHORIZED,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body.to_string(),
                )
                    .into_response(),
            )
        }
        Ok(ctx) => {
            let span = tracing::Span::current();
            span.record("user", ctx.user_id.as_str());
            if let Some(p) = &ctx.project_id {
                span.record("project", p.as_str());
            }
            a.metrics.validated.inc();
            req.extensions_mut().insert::<AuthContext>(ctx);
            None
        }
        Err(_) => {
            a.metrics.rejected.inc();
            req.extensions_mut()
                .insert(weft_identity::api::TokenRejected);
            None
        }
    }
}

/// `GET /metrics`.
pub async fn metrics(State(m): State<Arc<Metrics>>) -> Response {
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

/// Keystone's shape: `{"error": {"code", "title", "message"}}`, in the
/// words Keystone (Flask/werkzeug) uses for these statuses.
pub fn keystone_body(status: StatusCode, method: &Method, said: &str) -> Value {
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("The method {method} is not allowed for the requested URL.")
        }
        StatusCode::PAYLOAD_TOO_LARGE => "Request is too large.".to_string(),
        _ if !said.is_empty() => said.to_string(),
        _ => status.canonical_reason().unwrap_or("Error").to_string(),
    };
    json!({"error": {
        "code": status.as_u16(),
        "title": status.canonical_reason().unwrap_or("Error"),
        "message": message,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_is_a_known_first_segment() {
        let s = Services::new(["/identity", "/networking", "metrics", "/compute/v2.1"]);
        assert_eq!(&*s.of("/networking/v2.0/ports").0, "networking");
        assert_eq!(&*s.of("/metrics").0, "metrics");
        assert_eq!(&*s.of("/compute/v2.1/servers").0, "compute");
        assert_eq!(&*s.of("/").0, "other");
        assert_eq!(&*s.of("/random-scan-123/x").0, "other");
    }

    #[test]
    fn request_ids_are_openstack_shaped_and_distinct() {
        let (a, b) = (RequestId::new(), RequestId::new());
        assert_ne!(a.as_str(), b.as_str());
        let uuid = a.as_str().strip_prefix("req-").unwrap();
        assert_eq!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num(), 4);
        assert_eq!(uuid, uuid.to_lowercase());
    }
}
