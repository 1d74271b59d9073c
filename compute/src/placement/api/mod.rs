//! The HTTP shell of placement: routes, the microversion middleware, the
//! caller extractor, and JSON rendering. Handlers check policy, parse the
//! request into typed values, and call the pure logic.

mod allocations;
mod candidates;
mod catalog;
mod providers;
mod render;
mod reshaper;

use super::error::{PlacementError, PlacementResult};
use super::microversion::{self, Version};
use super::Placement;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;
use weft_identity::policy::Credentials;

/// Where `weft serve` mounts placement on its main listener. Links are
/// not built from it but from where each request was routed ([`Base`]),
/// so placement on a listener of its own answers with root links.
pub const MOUNT: &str = "/placement";

/// The request id header ctrl's observe layer sets on each request.
const REQUEST_ID: &str = "x-openstack-request-id";

type S = axum::extract::State<Arc<Placement>>;

/// The placement router, to nest under [`MOUNT`].
pub fn router(pl: Arc<Placement>) -> Router {
    use axum::routing::{get as g, post as p};
    let routes = Router::new()
        .route("/", get(root))
        .route(
            "/resource_providers",
            g(providers::list).post(providers::create),
        )
        .route(
            "/resource_providers/{uuid}",
            g(providers::show)
                .put(providers::update)
                .delete(providers::delete),
        )
        .route(
            "/resource_providers/{uuid}/inventories",
            g(providers::inventories)
                .put(providers::set_inventories)
                .post(providers::create_inventory)
                .delete(providers::delete_inventories),
        )
        .route(
            "/resource_providers/{uuid}/inventories/{rc}",
            g(providers::inventory)
                .put(providers::set_inventory)
                .delete(providers::delete_inventory),
        )
        .route(
            "/resource_providers/{uuid}/traits",
            g(providers::traits)
                .put(providers::set_traits)
                .delete(providers::clear_traits),
        )
        .route(
            "/resource_providers/{uuid}/aggregates",
            g(providers::aggregates).put(providers::set_aggregates),
        )
        .route("/resource_providers/{uuid}/usages", g(providers::usages))
        .route(
            "/resource_providers/{uuid}/allocations",
            g(providers::allocations),
        )
        .route(
            "/resource_classes",
            g(catalog::classes).post(catalog::create_class),
        )
        .route(
            "/resource_classes/{name}",
            g(catalog::class)
                .put(catalog::ensure_class)
                .delete(catalog::delete_class),
        )
        .route("/traits", g(catalog::traits))
        .route(
            "/traits/{name}",
            g(catalog::show_trait)
                .put(catalog::put_trait)
                .delete(catalog::delete_trait),
        )
        .route("/allocations", p(allocations::post))
        .route(
            "/allocations/{consumer}",
            g(allocations::show)
                .put(allocations::put)
                .delete(allocations::delete),
        )
        .route("/usages", g(allocations::usages))
        .route("/allocation_candidates", g(candidates::candidates))
        .route("/reshaper", p(reshaper::reshape))
        .fallback(|| async {
            unrouted(PlacementError::not_found(
                "The resource could not be found.",
            ))
        })
        .method_not_allowed_fallback(|| async { unrouted(PlacementError::MethodNotAllowed) })
        .layer(axum::middleware::from_fn(versioned))
        .with_state(pl);
    // Outside the routes: axum sets `Allow` after a route's layers ran.
    let routes = tower::ServiceExt::<Request>::map_response(routes, placement_allow);
    Router::new().fallback_service(routes)
}

/// Placement lists the methods it routes, `GET, POST`: the HEAD axum adds
/// to every GET route is not one it names, and it separates them by `, `.
fn placement_allow(mut resp: Response) -> Response {
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
        return resp;
    }
    let allow = resp
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty() && *m != "HEAD")
                .collect::<Vec<_>>()
                .join(", ")
        });
    if let Some(h) = allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
        resp.headers_mut().insert(header::ALLOW, h);
    }
    resp
}

/// Marks an answer Placement sends without its 1.15 cache headers (a
/// resource class's PUT, which it answers bare).
#[derive(Clone, Copy)]
pub(crate) struct Uncached;

/// Marks an answer the router gave before any handler ran (no route: 404,
/// or not this method: 405), which Placement gives before it looks at
/// `Accept` (its routing precedes each handler's `check_accept`).
#[derive(Clone, Copy)]
struct Unrouted;

fn unrouted(e: PlacementError) -> Response {
    let mut r = e.into_response();
    r.extensions_mut().insert(Unrouted);
    r
}

/// The microversion a route first appears at, when later than 1.0. Below
/// it the route does not exist: a 404 before anything else is looked at
/// (content type, body, method), as Placement's version-masked routing.
fn first_version(method: &Method, path: &str) -> Option<u16> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["resource_classes", ..] => Some(2),
        ["traits", ..] | ["resource_providers", _, "traits"] => Some(6),
        ["resource_providers", _, "aggregates"] => Some(1),
        ["usages"] => Some(9),
        ["allocation_candidates"] => Some(10),
        ["allocations"] if method == Method::POST => Some(13),
        ["reshaper"] => Some(30),
        _ => None,
    }
}

/// `GET /`: version discovery, open to anyone (no token needed).
async fn root() -> Json<Value> {
    Json(json!({"versions": [{
        "id": "v1.0",
        "max_version": microversion::MAX.to_string(),
        "min_version": microversion::MIN.to_string(),
        "status": "CURRENT",
        "links": [{"rel": "self", "href": ""}],
    }]}))
}

/// The microversion middleware: agrees the version (or answers 400/406),
/// leaves it in the request for the handlers, and on the way out says it
/// (`OpenStack-API-Version`, `Vary`) and finishes error bodies: no `code`
/// before 1.23, the request id in each error.
async fn versioned(mut req: Request, next: Next) -> Response {
    let asked = microversion::negotiate(
        req.headers()
            .get_all(microversion::HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let method = req.method().clone();
    let html = wants_html(req.headers());
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // WebOb, under Placement, makes a relative `Location` absolute against
    // the request's host; clients (osc-placement) follow it as given.
    let origin = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| {
            let scheme = req
                .headers()
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("http");
            format!("{scheme}://{h}")
        });
    let (version, mut resp) = match asked {
        Ok(v) if first_version(&method, req.uri().path()).is_some_and(|m| !v.at_least(m)) => {
            let e = PlacementError::not_found("The resource could not be found.");
            (Some(v), unrouted(e))
        }
        Ok(v) if method == Method::GET && !accepts_json(req.headers()) => {
            // A GET reads only: the handler runs to learn whether the path
            // is routed at all; an unrouted path stays a 404 (or 405).
            req.extensions_mut().insert(v);
            let resp = next.run(req).await;
            if resp.extensions().get::<Unrouted>().is_some() {
                (Some(v), resp)
            } else {
                (Some(v), PlacementError::NotAcceptable.into_response())
            }
        }
        Ok(v) => {
            req.extensions_mut().insert(v);
            (Some(v), next.run(req).await)
        }
        Err(e) => (None, PlacementError::from(e).into_response()),
    };
    if let Some(origin) = origin {
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok());
        if let Some(abs) = loc
            .filter(|l| l.starts_with('/'))
            .map(|l| format!("{origin}{l}"))
        {
            if let Ok(h) = HeaderValue::from_str(&abs) {
                resp.headers_mut().insert(header::LOCATION, h);
            }
        }
    }
    finish(resp, method, version, request_id, html).await
}

/// Whether the `Accept` header (if any) takes JSON: `application/json`,
/// `application/*` or `*/*` with a non-zero quality (Placement's
/// `check_accept` on its GET handlers).
fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !zero && matches!(media.as_str(), "application/json" | "application/*" | "*/*")
    })
}

/// Whether the client asks for HTML and takes no JSON: its errors are then
/// an HTML page, as WebOb renders Placement's errors for a browser.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.to_ascii_lowercase().contains("text/html"))
        && !accepts_json(headers)
}

/// An error body as the HTML page WebOb makes of it: the status as title,
/// then the detail (escaped).
fn html_error(status: StatusCode, errors: &Value) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let detail = errors[0]["detail"].as_str().unwrap_or("");
    format!(
        "<html>\n <head>\n  <title>{t}</title>\n </head>\n <body>\n  <h1>{t}</h1>\n  {d}<br /><br />\n\n\n\n </body>\n</html>",
        t = esc(&title),
        d = esc(detail)
    )
}

async fn finish(
    resp: Response,
    method: Method,
    version: Option<Version>,
    request_id: Option<String>,
    html: bool,
) -> Response {
    let (mut parts, body) = resp.into_parts();
    if let Some(v) = version {
        if let Ok(h) = HeaderValue::from_str(&format!("{} {v}", microversion::SERVICE_TYPE)) {
            parts.headers.insert(microversion::HEADER, h);
        }
        // 1.15: answers say not to cache them. Their Last-Modified is the
        // time of the answer (what Placement sends where a record has no
        // timestamp of its own), never later than any record in it.
        let shown = (matches!(method, Method::GET | Method::PUT)
            || (method == Method::POST && parts.status == StatusCode::OK))
            && parts.extensions.get::<Uncached>().is_none();
        if v.at_least(15) && parts.status.is_success() && shown {
            parts
                .headers
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            let now = chrono::Utc::now()
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string();
            if let Ok(h) = HeaderValue::from_str(&now) {
                parts.headers.insert(header::LAST_MODIFIED, h);
            }
        }
    }
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static(microversion::HEADER));
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(parts.status.is_client_error() || parts.status.is_server_error()) || !is_json {
        return Response::from_parts(parts, body);
    }
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    if let Some(errors) = v.get_mut("errors").and_then(Value::as_array_mut) {
        for e in errors {
            if let Some(o) = e.as_object_mut() {
                // Placement added `code` at 1.23; a 406 has no version at all.
                if version.is_some_and(|v| !v.at_least(23)) {
                    o.remove("code");
                }
                if let Some(id) = &request_id {
                    o.insert("request_id".into(), Value::String(id.clone()));
                }
                if parts.status == StatusCode::METHOD_NOT_ALLOWED {
                    let said = format!("The method {method} is not allowed for this resource.");
                    o.insert("detail".into(), Value::String(said));
                }
            }
        }
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    if html {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=UTF-8"),
        );
        let page = html_error(parts.status, &v["errors"]);
        return Response::from_parts(parts, axum::body::Body::from(page));
    }
    Response::from_parts(parts, axum::body::Body::from(v.to_string()))
}

/// The microversion the middleware agreed (1.0 when the router runs without it).
pub struct Mv(pub Version);

impl<St: Send + Sync> axum::extract::FromRequestParts<St> for Mv {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &St,
    ) -> Result<Self, Self::Rejection> {
        Ok(Mv(parts
            .extensions
            .get::<Version>()
            .copied()
            .unwrap_or(microversion::MIN)))
    }
}

/// The path placement is served under for this request: `/placement` when
/// nested in `weft serve`'s app, empty at the root of a listener of its
/// own. Placement's links and `Location`s are relative to where it is
/// mounted (WSGI's `SCRIPT_NAME`), and clients and its own test suite
/// follow them as given, so they come from the request, not a constant.
pub struct Base(pub String);

impl<St: Send + Sync> axum::extract::FromRequestParts<St> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &St,
    ) -> Result<Self, Self::Rejection> {
        let here = parts.uri.path();
        let full = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or(here, |o| o.0.path());
        // Nesting strips the prefix; at the prefix itself the rest is `/`.
        let base = if here == "/" {
            full.trim_end_matches('/')
        } else {
            full.strip_suffix(here).unwrap_or("")
        };
        Ok(Base(base.to_string()))
    }
}

/// The caller: the context the server's auth layer left in the request,
/// or, for this router used on its own, the token to validate here.
pub struct Caller {
    ctx: Option<weft_identity::AuthContext>,
    rejected: bool,
    token: Option<String>,
}

impl<St: Send + Sync> axum::extract::FromRequestParts<St> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &St,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            ctx: parts.extensions.remove::<weft_identity::AuthContext>(),
            rejected: parts
                .extensions
                .get::<weft_identity::api::TokenRejected>()
                .is_some(),
            token: token(&parts.headers).map(str::to_string),
        })
    }
}

fn token(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-auth-token").and_then(|v| v.to_str().ok())
}

impl Caller {
    /// The caller's credentials, once policy allows `action` for them.
    pub(crate) fn admit(
        &self,
        pl: &Placement,
        action: &str,
        project_id: Option<&str>,
    ) -> PlacementResult<Credentials> {
        let creds = match &self.ctx {
            // noauth2: the token is a name even where identity knows it.
            _ if pl.noauth2() => self
                .token
                .as_deref()
                .and_then(|t| pl.validate(t))
                .ok_or(PlacementError::Unauthenticated)?,
            Some(c) => c.credentials(),
            None if self.rejected => return Err(PlacementError::Unauthenticated),
            None => self
                .token
                .as_deref()
                .and_then(|t| pl.validate(t))
                .ok_or(PlacementError::Unauthenticated)?,
        };
        pl.authorize(&creds, action, project_id)?;
        Ok(creds)
    }
}

/// A request body declared as JSON, as Placement's `require_content`
/// wants: another media type, or none, is a 415.
pub struct JsonBytes(pub Bytes);

impl<St: Send + Sync> axum::extract::FromRequest<St> for JsonBytes {
    type Rejection = PlacementError;

    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        let media = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty());
        let length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if media.is_none() && length > 0 {
            return Err(PlacementError::bad(
                "content-type header required when content-length > 0",
            ));
        }
        if media.as_deref() != Some("application/json") {
            return Err(PlacementError::UnsupportedMediaType(
                media.unwrap_or_else(|| "None".into()),
            ));
        }
        let b = <Bytes as axum::extract::FromRequest<St>>::from_request(req, state)
            .await
            .map_err(|e| PlacementError::bad(format!("Unreadable body: {e}")))?;
        Ok(JsonBytes(b))
    }
}

/// A JSON body as `T`, or Placement's 400 naming the field at fault.
pub(crate) fn body<T: DeserializeOwned>(b: &Bytes) -> PlacementResult<T> {
    if b.is_empty() {
        return Err(PlacementError::bad(
            "Malformed JSON: the request has no body.",
        ));
    }
    // Syntax first, as Placement does: `{"foo": }` is malformed JSON, not
    // an unknown field.
    let v: Value = serde_json::from_slice(b)
        .map_err(|e| PlacementError::bad(format!("Malformed JSON: {e}")))?;
    serde_path_to_error::deserialize(&v).map_err(|e| {
        let path = e.path().to_string();
        super::schema::from_serde(&v, &path, &e.into_inner().to_string())
    })
}

/// A 404 for a path that exists only from microversion `1.minor`.
pub(crate) fn since(v: Version, minor: u16) -> PlacementResult<()> {
    if v.at_least(minor) {
        Ok(())
    } else {
        Err(PlacementError::not_found(
            "The resource could not be found.",
        ))
    }
}

/// A 204 with no body.
pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A 201 with `Location` and no body.
pub(crate) fn created_at(location: &str) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(h) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, h);
    }
    r
}
