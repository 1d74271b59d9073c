//! What the API offers: extensions, versions and the resource list.

use super::{base_url, Caller, Res, PREFIX, S};
use crate::networking::error::{NetError, NetResult};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The extensions this service really implements, so clients enable the right features.
pub const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("agent", "agent", "The agent management extension."),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("security-group", "security-group", "The security groups extension."),
    ("port-security", "Port Security", "Provides port security"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("net-mtu-writable", "Network MTU (writable)", "Provides a writable MTU attribute for a network resource."),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes."),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources."),
    ("revision-if-match", "If-Match constraints based on revision_number", "Extension indicating that If-Match based on revision_number is supported."),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("stateful-security-group", "Stateful security group", "Extension adding possibility to make security groups stateless."),
    ("security-groups-normalized-cidr", "Normalized CIDR field for security group rules", "Add new field with normalized remote_ip_prefix cidr in SG rule"),
];

fn ext_view(e: &(&str, &str, &str)) -> Value {
    json!({"alias": e.0, "name": e.1, "description": e.2, "updated": "2026-01-01T00:00:00-00:00", "links": []})
}

pub(super) async fn extensions_h(State(net): S, caller: Caller) -> NetResult<Response> {
    caller.ctx(&net)?;
    Ok(
        Json(json!({"extensions": EXTENSIONS.iter().map(ext_view).collect::<Vec<_>>()}))
            .into_response(),
    )
}

pub(super) async fn extension_h(
    State(net): S,
    caller: Caller,
    Path(alias): Path<String>,
) -> NetResult<Response> {
    caller.ctx(&net)?;
    let e = EXTENSIONS
        .iter()
        .find(|e| e.0 == alias)
        .ok_or_else(|| NetError::not_found("Extension", &alias))?;
    Ok(Json(json!({"extension": ext_view(e)})).into_response())
}

pub(super) async fn versions_h(headers: HeaderMap) -> Response {
    let href = format!("{}{PREFIX}/", base_url(&headers));
    Json(json!({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": href}]}]}))
        .into_response()
}

pub(super) async fn resources_h(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    let list: Vec<Value> = [
        Res::Networks,
        Res::Subnets,
        Res::Ports,
        Res::SecurityGroups,
        Res::Rules,
    ]
    .iter()
    .map(|r| {
        json!({"name": r.singular(), "collection": r.path(),
                        "links": [{"rel": "self", "href": format!("{base}{PREFIX}/{}", r.path())}]})
    })
    .collect();
    Json(json!({"resources": list})).into_response()
}
