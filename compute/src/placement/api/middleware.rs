//! The middleware around placement's routes: the microversion agreed and
//! said, version-masked routes, `Accept` (404 before 406, HTML errors for a
//! browser), error bodies finished as Placement's (`code` from 1.23, the
//! request id), its 1.15 cache headers, and its `Allow` on 405s.

use super::REQUEST_ID;
use crate::placement::error::PlacementError;
use crate::placement::microversion::{self, Version};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Placement lists the methods it routes, `GET, POST`: the HEAD axum adds
/// to every GET route is not one it names, and it separates them by `, `.
pub(super) fn placement_allow(mut resp: Response) -> Response {
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

pub(super) fn unrouted(e: PlacementError) -> Response {
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

/// The microversion middleware: agrees the version (or answers 400/406),
/// leaves it in the request for the handlers, and on the way out says it
/// (`OpenStack-API-Version`, `Vary`) and finishes error bodies: no `code`
/// before 1.23, the request id in each error.
pub(super) async fn versioned(mut req: Request, next: Next) -> Response {
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
