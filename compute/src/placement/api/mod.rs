//! The HTTP shell of placement: routes, the microversion middleware, the
//! caller extractor, and JSON rendering. Handlers check policy, parse the
//! request into typed values, and call the pure logic.

mod allocations;
mod candidates;
mod catalog;
mod middleware;
mod providers;
mod render;
mod reshaper;

use super::error::{PlacementError, PlacementResult};
use super::microversion::{self, Version};
use super::Placement;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
pub(crate) use middleware::Uncached;
use middleware::{placement_allow, unrouted, versioned};
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
