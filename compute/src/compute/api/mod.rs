//! The HTTP shell of the compute API: the version documents, the
//! microversion layer, the caller, and the router; the resources' handlers
//! live in their own files.

mod aggregates;
mod flavors;
mod groups;
mod hosts;
mod hypervisors;
mod instance_actions;
mod keypairs;
mod migrations;
mod quotas;
mod server_ips;
mod server_ops;
mod server_tags;
mod servers;
mod services;
mod usage;

use super::error::{ComputeError, ComputeResult};
use super::microversion::{self, MAX, MIN};
use super::{Compute, Ctx};
use axum::extract::{FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) type S = axum::extract::State<Arc<Compute>>;

/// Where `weft serve` mounts [`router`]; catalog type `compute`, whose
/// endpoint is `MOUNT/v2.1`.
pub const MOUNT: &str = "/compute";

/// The microversion of this request (set by the layer in [`router`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mv(pub (u32, u32));

impl<St: Send + Sync> FromRequestParts<St> for Mv {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Mv>().copied().unwrap_or(Mv(MIN)))
    }
}

/// The caller: the context the server's authentication layer left in the
/// request, or, for this router used on its own, the token to validate here.
pub struct Caller {
    ctx: Option<weft_identity::AuthContext>,
    rejected: bool,
    token: Option<String>,
    /// `scheme://host` + [`MOUNT`], for `links`.
    pub base: String,
    /// The request's id (ctrl's `x-openstack-request-id`, or a fresh one
    /// for this router used on its own), for instance actions.
    pub request_id: String,
}

impl<St: Send + Sync> FromRequestParts<St> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            ctx: parts.extensions.remove::<weft_identity::AuthContext>(),
            rejected: parts
                .extensions
                .get::<weft_identity::api::TokenRejected>()
                .is_some(),
            token: parts
                .headers
                .get("x-auth-token")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_string()),
            base: base_url(&parts.headers),
            request_id: parts
                .headers
                .get("x-openstack-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .unwrap_or_else(|| format!("req-{}", uuid::Uuid::new_v4())),
        })
    }
}

impl Caller {
    /// The caller's context, or 401.
    pub fn ctx(&self, compute: &Compute) -> ComputeResult<Ctx> {
        if let Some(c) = &self.ctx {
            return Ok(Ctx::new(c.credentials()));
        }
        if self.rejected {
            return Err(ComputeError::Unauthenticated);
        }
        compute.authenticate(self.token.as_deref())
    }
}

fn base_url(h: &HeaderMap) -> String {
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let proto = h
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    format!("{proto}://{host}{MOUNT}")
}

fn version_doc(base: &str) -> Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": format!("{}.{}", MAX.0, MAX.1),
        "min_version": format!("{}.{}", MIN.0, MIN.1),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{base}/v2.1/")}],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2.1",
        }],
    })
}

/// `GET /`: the versions this endpoint offers.
async fn versions_h(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    Json(json!({ "versions": [version_doc(&base)] })).into_response()
}

/// `GET /v2.1`: this version's document (clients read the microversion range here).
async fn version_h(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    Json(json!({ "version": version_doc(&base) })).into_response()
}

/// Parses the requested microversion (406/400 outside the range) and says
/// on the answer which one served it, under both header names, as Nova does.
async fn microversion_layer(mut req: Request, next: Next) -> Response {
    let mv = match microversion::requested(req.headers()) {
        Ok(mv) => mv,
        Err(e) => return e.into_response(),
    };
    req.extensions_mut().insert(Mv(mv));
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let v = format!("{}.{}", mv.0, mv.1);
    if let Ok(val) = HeaderValue::from_str(&format!("compute {v}")) {
        h.insert("openstack-api-version", val);
    }
    if let Ok(val) = HeaderValue::from_str(&v) {
        h.insert("x-openstack-nova-api-version", val);
    }
    h.insert(
        header::VARY,
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
    resp
}

/// The compute API's routes, relative to [`MOUNT`].
pub fn router(compute: Arc<Compute>) -> Router {
    let v21 = server_routes()
        .merge(host_routes())
        .merge(other_routes())
        .layer(axum::middleware::from_fn(microversion_layer))
        .with_state(compute);
    Router::new()
        .route("/", get(versions_h))
        .route("/v2.1", get(version_h))
        .merge(v21)
}

/// `/servers` and everything under a server.
fn server_routes() -> Router<Arc<Compute>> {
    Router::new()
        .route(
            "/v2.1/servers",
            get(servers::list_h).post(servers::create_h),
        )
        .route("/v2.1/servers/detail", get(servers::detail_h))
        .route(
            "/v2.1/servers/{id}",
            get(servers::show_h)
                .put(servers::update_h)
                .delete(servers::delete_h),
        )
        .route("/v2.1/servers/{id}/action", post(servers::action_h))
        .route(
            "/v2.1/servers/{id}/os-interface",
            get(server_ops::list_h).post(server_ops::attach_h),
        )
        .route(
            "/v2.1/servers/{id}/os-interface/{port}",
            get(server_ops::show_h).delete(server_ops::detach_h),
        )
        .route(
            "/v2.1/servers/{id}/metadata",
            get(servers::metadata_h)
                .put(servers::put_metadata_h)
                .post(servers::post_metadata_h),
        )
        .route(
            "/v2.1/servers/{id}/metadata/{key}",
            get(servers::meta_item_h)
                .put(servers::put_meta_item_h)
                .delete(servers::delete_meta_item_h),
        )
        .route(
            "/v2.1/servers/{id}/os-instance-actions",
            get(instance_actions::list_h),
        )
        .route(
            "/v2.1/servers/{id}/os-instance-actions/{request_id}",
            get(instance_actions::show_h),
        )
        .route("/v2.1/servers/{id}/ips", get(server_ips::index_h))
        .route(
            "/v2.1/servers/{id}/tags",
            get(server_tags::index_h)
                .put(server_tags::replace_h)
                .delete(server_tags::delete_all_h),
        )
        .route(
            "/v2.1/servers/{id}/tags/{tag}",
            get(server_tags::check_h)
                .put(server_tags::add_h)
                .delete(server_tags::delete_h),
        )
        .route("/v2.1/servers/{id}/ips/{label}", get(server_ips::show_h))
        .route(
            "/v2.1/servers/{id}/migrations",
            get(migrations::server_list_h),
        )
        .route(
            "/v2.1/servers/{id}/migrations/{migration}",
            get(migrations::server_show_h),
        )
}

/// The admin's view of the hosts: services, hypervisors, zones, aggregates.
fn host_routes() -> Router<Arc<Compute>> {
    Router::new()
        .route("/v2.1/os-services", get(hosts::services_h))
        .route(
            "/v2.1/os-services/{id}",
            axum::routing::put(services::update_h).delete(services::delete_h),
        )
        .route("/v2.1/os-hypervisors", get(hosts::hypervisors_h))
        .route(
            "/v2.1/os-hypervisors/detail",
            get(hosts::hypervisors_detail_h),
        )
        .route(
            "/v2.1/os-hypervisors/statistics",
            get(hypervisors::statistics_h),
        )
        .route("/v2.1/os-hypervisors/{id}", get(hypervisors::show_h))
        .route(
            "/v2.1/os-hypervisors/{id}/uptime",
            get(hypervisors::uptime_h),
        )
        .route(
            "/v2.1/os-hypervisors/{id}/search",
            get(hypervisors::search_h),
        )
        .route(
            "/v2.1/os-hypervisors/{id}/servers",
            get(hypervisors::servers_h),
        )
        .route("/v2.1/os-migrations", get(migrations::list_h))
        .route("/v2.1/os-simple-tenant-usage", get(usage::list_h))
        .route("/v2.1/os-simple-tenant-usage/{tenant}", get(usage::show_h))
        .route("/v2.1/os-availability-zone", get(hosts::zones_h))
        .route(
            "/v2.1/os-availability-zone/detail",
            get(hosts::zones_detail_h),
        )
        .route(
            "/v2.1/os-aggregates",
            get(aggregates::list_h).post(aggregates::create_h),
        )
        .route(
            "/v2.1/os-aggregates/{id}",
            get(aggregates::show_h)
                .put(aggregates::update_h)
                .delete(aggregates::delete_h),
        )
        .route(
            "/v2.1/os-aggregates/{id}/action",
            post(aggregates::action_h),
        )
}

/// Flavors, server groups, quotas and limits, key pairs.
fn other_routes() -> Router<Arc<Compute>> {
    Router::new()
        .route(
            "/v2.1/flavors",
            get(flavors::list_h).post(flavors::create_h),
        )
        .route("/v2.1/flavors/detail", get(flavors::detail_h))
        .route(
            "/v2.1/flavors/{id}",
            get(flavors::show_h)
                .put(flavors::update_h)
                .delete(flavors::delete_h),
        )
        .route(
            "/v2.1/flavors/{id}/os-extra_specs",
            get(flavors::specs_h).post(flavors::set_specs_h),
        )
        .route(
            "/v2.1/flavors/{id}/os-extra_specs/{key}",
            get(flavors::spec_h)
                .put(flavors::put_spec_h)
                .delete(flavors::delete_spec_h),
        )
        .route(
            "/v2.1/flavors/{id}/os-flavor-access",
            get(flavors::access_h),
        )
        .route("/v2.1/flavors/{id}/action", post(flavors::action_h))
        .route(
            "/v2.1/os-server-groups",
            get(groups::list_h).post(groups::create_h),
        )
        .route(
            "/v2.1/os-server-groups/{id}",
            get(groups::show_h).delete(groups::delete_h),
        )
        .route(
            "/v2.1/os-quota-sets/{project}",
            get(quotas::show_h)
                .put(quotas::update_h)
                .delete(quotas::delete_h),
        )
        .route(
            "/v2.1/os-quota-sets/{project}/detail",
            get(quotas::detail_h),
        )
        .route(
            "/v2.1/os-quota-sets/{project}/defaults",
            get(quotas::defaults_h),
        )
        .route("/v2.1/limits", get(quotas::limits_h))
        .route(
            "/v2.1/os-keypairs",
            get(keypairs::list_h).post(keypairs::create_h),
        )
        .route(
            "/v2.1/os-keypairs/{name}",
            get(keypairs::show_h).delete(keypairs::delete_h),
        )
}
