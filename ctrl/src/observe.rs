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
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use weft_identity::{AuthContext, Identity};

/// The header OpenStack services answer every request with.
pub const REQUEST_ID: &str = "x-openstack-request-id";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    service: String,
    route: String,
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
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            validated,
            rejected,
        }
    }
}

impl Metrics {
    /// The exposition text (OpenMetrics, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }
}

/// The service a path belongs to: its first segment (`identity`, `networking`).
fn service_of(path: &str) -> String {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("root")
        .to_string()
}

/// `req-<uuid>` as OpenStack services make them. The bits come from the
/// thread's userspace CSPRNG, not a getrandom(2) call per request.
fn new_request_id() -> String {
    let bits: u128 = rand::random();
    format!(
        "req-{}",
        uuid::Builder::from_random_bytes(bits.to_le_bytes()).into_uuid()
    )
}

/// Outermost middleware: request id, span, log line and metrics.
pub async fn observe(State(a): State<AuthLayer>, mut req: Request, next: Next) -> Response {
    let m = &a.metrics;
    let started = Instant::now();
    let id = new_request_id();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        path = %path,
        user = tracing::field::Empty,
        project = tracing::field::Empty,
    );
    // `Router::layer` wraps each route after matching: the route template
    // (`/networking/v2.0/ports/{id}`) is known here, so labels stay bounded.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    {
        let _in = span.enter();
        authenticate(&a, &mut req);
    }
    // Services that put the request id in their error bodies (Placement's
    // `request_id`) read it from the request; a client's own value is replaced.
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID, v);
    }
    let mut resp = {
        use tracing::Instrument;
        next.run(req).instrument(span.clone()).await
    };
    let route = route.unwrap_or_else(|| "unmatched".into());
    let status = resp.status();
    let elapsed = started.elapsed();
    let service = service_of(&path);
    m.requests
        .get_or_create(&RequestLabels {
            service: service.clone(),
            route: route.clone(),
            method: method.to_string(),
            status: status.as_u16(),
        })
        .inc();
    m.latency
        .get_or_create(&RouteLabels { service, route })
        .observe(elapsed.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            ms = format_args!("{:.3}", elapsed.as_secs_f64() * 1000.0),
            "request"
        )
    });
    resp
}

/// State of the authentication layer.
#[derive(Clone)]
pub struct AuthLayer {
    pub identity: Arc<Identity>,
    pub metrics: Arc<Metrics>,
}

/// Validates `X-Auth-Token` once for every API and leaves the caller in the
/// request's extensions (`AuthContext`), where each service's extractor
/// takes it. A missing or invalid token is left to the service, which
/// answers 401 in its own error shape (a route may need no token at all).
fn authenticate(a: &AuthLayer, req: &mut Request) {
    let Some(t) = req
        .headers()
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        return;
    };
    match a.identity.validate_token(t) {
        Ok(ctx) => {
            let span = tracing::Span::current();
            span.record("user", ctx.user_id.as_str());
            if let Some(p) = &ctx.project_id {
                span.record("project", p.as_str());
            }
            a.metrics.validated.inc();
            req.extensions_mut().insert::<AuthContext>(ctx);
        }
        Err(_) => {
            a.metrics.rejected.inc();
            req.extensions_mut()
                .insert(weft_identity::api::TokenRejected);
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

#[cfg(test)]
mod tests {
    #[test]
    fn service_is_the_first_segment() {
        assert_eq!(super::service_of("/networking/v2.0/ports"), "networking");
        assert_eq!(super::service_of("/"), "root");
        assert!(super::new_request_id().starts_with("req-"));
    }
}
