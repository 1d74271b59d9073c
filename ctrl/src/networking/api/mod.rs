//! The HTTP shell: axum routes for `/networking` (version discovery),
//! `/networking/v2.0/...` (the Neutron API) and `/agent/v1/...` (agent sync).

mod agent_sync;
mod agents;
mod discovery;
mod quotas;
mod read;
mod write;

use super::error::{NetError, NetResult};
use super::service::Ctx;
use super::Networking;
use agent_sync::{agent_port_status_h, agent_register_h, agent_state_h, agent_status_h};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use discovery::{extension_h, extensions_h, resources_h, versions_h};
use read::{list_h, show_h};
use serde_json::{json, Value};
use std::sync::Arc;
use write::{create_h, delete_h, update_h};

type S = State<Arc<Networking>>;

pub const PREFIX: &str = "/networking/v2.0";

#[derive(Clone, Copy, Debug)]
enum Res {
    Networks,
    Subnets,
    Ports,
    SecurityGroups,
    Rules,
}

impl Res {
    fn plural(self) -> &'static str {
        match self {
            Res::Networks => "networks",
            Res::Subnets => "subnets",
            Res::Ports => "ports",
            Res::SecurityGroups => "security_groups",
            Res::Rules => "security_group_rules",
        }
    }
    fn singular(self) -> &'static str {
        match self {
            Res::Networks => "network",
            Res::Subnets => "subnet",
            Res::Ports => "port",
            Res::SecurityGroups => "security_group",
            Res::Rules => "security_group_rule",
        }
    }
    fn path(self) -> &'static str {
        match self {
            Res::Networks => "networks",
            Res::Subnets => "subnets",
            Res::Ports => "ports",
            Res::SecurityGroups => "security-groups",
            Res::Rules => "security-group-rules",
        }
    }
    fn sortable(self) -> &'static [&'static str] {
        match self {
            Res::Networks => &[
                "id",
                "name",
                "status",
                "admin_state_up",
                "shared",
                "mtu",
                "project_id",
                "tenant_id",
                "router:external",
                "created_at",
                "updated_at",
                "revision_number",
                "provider:network_type",
                "provider:segmentation_id",
                "provider:physical_network",
            ],
            Res::Subnets => &[
                "id",
                "name",
                "network_id",
                "cidr",
                "ip_version",
                "gateway_ip",
                "enable_dhcp",
                "project_id",
                "tenant_id",
                "created_at",
                "updated_at",
                "revision_number",
            ],
            Res::Ports => &[
                "id",
                "name",
                "network_id",
                "mac_address",
                "status",
                "admin_state_up",
                "device_id",
                "device_owner",
                "binding:host_id",
                "project_id",
                "tenant_id",
                "created_at",
                "updated_at",
                "revision_number",
            ],
            Res::SecurityGroups => &[
                "id",
                "name",
                "project_id",
                "tenant_id",
                "created_at",
                "updated_at",
                "revision_number",
                "stateful",
            ],
            Res::Rules => &[
                "id",
                "direction",
                "ethertype",
                "protocol",
                "port_range_min",
                "port_range_max",
                "remote_ip_prefix",
                "remote_group_id",
                "security_group_id",
                "project_id",
                "tenant_id",
                "created_at",
                "updated_at",
                "revision_number",
            ],
        }
    }
}

fn not_found_path(path: &str) -> Response {
    let body = json!({"NeutronError": {"type": "HTTPNotFound",
        "message": format!("The resource could not be found: {path}"), "detail": ""}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

fn token(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-auth-token").and_then(|v| v.to_str().ok())
}

/// The caller: the context the server's authentication layer left in the
/// request (`weft serve` validates every token once, in one place), or,
/// for this router used on its own, the token to validate here.
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
            // Taken, not cloned: one extractor per request reads it.
            ctx: parts.extensions.remove::<weft_identity::AuthContext>(),
            rejected: parts
                .extensions
                .get::<weft_identity::api::TokenRejected>()
                .is_some(),
            token: token(&parts.headers).map(str::to_string),
        })
    }
}

impl Caller {
    pub(crate) fn ctx(&self, net: &Networking) -> NetResult<Ctx> {
        if let Some(c) = &self.ctx {
            return Ok(Ctx::new(c.credentials()));
        }
        if self.rejected {
            return Err(NetError::Unauthenticated);
        }
        net.authenticate(self.token.as_deref())
    }
}

fn parse_body(b: &Bytes) -> NetResult<Value> {
    if b.is_empty() {
        return Err(NetError::bad("HTTPBadRequest", "Resource body required"));
    }
    serde_json::from_slice(b)
        .map_err(|e| NetError::bad("HTTPBadRequest", format!("Malformed request body: {e}")))
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    format!("{proto}://{host}")
}

/// Runs blocking service work (commits) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> NetResult<T> + Send + 'static,
) -> NetResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(NetError::Internal(format!("blocking task failed: {e}"))),
    }
}

fn v2_routes(p: &str) -> Router<Arc<Networking>> {
    let mut r = Router::new()
        .route(&format!("{p}/extensions"), get(extensions_h))
        .route(&format!("{p}/extensions/{{alias}}"), get(extension_h));
    for res in [
        Res::Networks,
        Res::Subnets,
        Res::Ports,
        Res::SecurityGroups,
        Res::Rules,
    ] {
        r = r
            .route(
                &format!("{p}/{}", res.path()),
                get(move |s: S, h: HeaderMap, c: Caller, q: RawQuery| list_h(s, h, c, q, res))
                    .post(move |s: S, c: Caller, b: Bytes| create_h(s, c, b, res)),
            )
            .route(
                &format!("{p}/{}/{{id}}", res.path()),
                get(move |s: S, c: Caller, id: Path<String>, q: RawQuery| show_h(s, c, id, q, res))
                    .put(
                        move |s: S, h: HeaderMap, c: Caller, id: Path<String>, b: Bytes| {
                            update_h(s, h, c, id, b, res)
                        },
                    )
                    .delete(move |s: S, h: HeaderMap, c: Caller, id: Path<String>| {
                        delete_h(s, h, c, id, res)
                    }),
            );
    }
    r
}

/// The networking service relative to its mount point, `/networking`
/// (`Server::mount` nests it there; links in answers assume that prefix):
/// `/` version discovery, `/v2.0/...` the Neutron API, `/agent/v1/...` agent sync.
pub fn router(net: Arc<Networking>) -> Router {
    v2_routes("/v2.0")
        .route("/", get(versions_h))
        .route("/v2.0", get(resources_h))
        .route("/v2.0/", get(resources_h))
        .route("/v2.0/agents", get(agents::list_h))
        .route(
            "/v2.0/quotas/{project}",
            get(quotas::show_h)
                .put(quotas::update_h)
                .delete(quotas::update_h),
        )
        .route("/v2.0/quotas/{project}/default", get(quotas::default_h))
        .route(
            "/v2.0/quotas/{project}/details.json",
            get(quotas::details_h),
        )
        .route("/v2.0/quotas/{project}/details", get(quotas::details_h))
        .route(
            "/v2.0/agents/{id}",
            get(agents::show_h)
                .put(agents::update_h)
                .delete(agents::delete_h),
        )
        .route(
            "/agent/v1/hosts/{host}",
            axum::routing::put(agent_register_h),
        )
        .route("/agent/v1/hosts/{host}/state", get(agent_state_h))
        .route("/agent/v1/hosts/{host}/status", post(agent_status_h))
        .route(
            "/agent/v1/hosts/{host}/ports/{id}/status",
            post(agent_port_status_h),
        )
        .fallback(fallback_h)
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| {
                crate::server::json_errors(super::error::framework_body, req, next)
            },
        ))
        .with_state(net)
}

/// Unknown paths under the mount get a Neutron-shaped 404 rather than an empty one.
async fn fallback_h(uri: axum::http::Uri) -> Response {
    not_found_path(uri.path())
}

/// Where `weft serve` mounts [`router`].
pub const MOUNT: &str = "/networking";
