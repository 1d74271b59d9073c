//! What the service says about itself: version discovery, `/v2/info/*`
//! and the JSON schemas clients may fetch.

use super::api::{Caller, S};
use super::error::{ImageError, ImageResult};
use super::model::{CONTAINER_FORMATS, DISK_FORMATS};
use super::service;
use super::MOUNT;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The minor versions of Image API v2 this service answers as (Glance
/// 2023.x lists v2.16 as current; import-related minors change nothing here
/// since import is not enabled).
const VERSIONS: &[&str] = &[
    "v2.16", "v2.15", "v2.9", "v2.8", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2", "v2.1",
    "v2.0",
];

fn base_url(h: &HeaderMap) -> String {
    let host = h
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let proto = h
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    format!("{proto}://{host}{MOUNT}")
}

/// `GET /image/`: 300 Multiple Choices with every version, as Glance answers.
pub async fn versions_h(h: HeaderMap) -> Response {
    let href = format!("{}/v2/", base_url(&h));
    let list: Vec<Value> = VERSIONS
        .iter()
        .enumerate()
        .map(|(n, v)| {
            json!({
                "id": v,
                "status": if n == 0 { "CURRENT" } else { "SUPPORTED" },
                "links": [{"rel": "self", "href": href}],
            })
        })
        .collect();
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": list})),
    )
        .into_response()
}

/// `GET /v2/info/import`: no import method is enabled (the import API is
/// not implemented; data goes in with `PUT .../file`).
pub async fn info_import_h(State(im): S, caller: Caller) -> ImageResult<Response> {
    caller.ctx(&im)?;
    Ok(Json(json!({"import-methods": {
        "description": "Import methods available.",
        "type": "array",
        "value": [],
    }}))
    .into_response())
}

/// `GET /v2/info/stores`: the one store there is.
pub async fn info_stores_h(State(im): S, caller: Caller) -> ImageResult<Response> {
    caller.ctx(&im)?;
    Ok(Json(json!({"stores": [{
        "id": "file",
        "description": "Image files under the server's state directory",
        "default": true,
    }]}))
    .into_response())
}

/// `POST /v2/images/{id}/import`: refused, with the reason, since
/// `/v2/info/import` enables no method.
pub async fn import_h(
    State(im): S,
    caller: Caller,
    Path(id): Path<String>,
) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    im.read(|st| service::get_image(st, &c, &id).map(|_| ()))?;
    Err(ImageError::BadRequest(
        "Image import is not enabled on this cloud (GET /v2/info/import lists no method): upload the data with PUT /v2/images/{id}/file."
            .into(),
    ))
}

fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}

/// Glance's image schema, trimmed to what this service stores.
fn image_schema() -> Value {
    let with_null = |l: &[&str]| -> Vec<Value> {
        std::iter::once(Value::Null)
            .chain(l.iter().map(|s| Value::String(s.to_string())))
            .collect()
    };
    let (containers, disks) = (with_null(CONTAINER_FORMATS), with_null(DISK_FORMATS));
    json!({
        "name": "image",
        "additionalProperties": {"type": "string"},
        "properties": {
            "id": {"type": "string", "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"},
            "name": {"type": ["null", "string"], "maxLength": 255},
            "status": {"type": "string", "readOnly": true, "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing", "pending_delete", "deactivated"]},
            "visibility": {"type": "string", "enum": ["community", "public", "private", "shared"]},
            "protected": {"type": "boolean"},
            "os_hidden": {"type": "boolean"},
            "checksum": {"type": ["null", "string"], "readOnly": true, "maxLength": 32},
            "os_hash_algo": {"type": ["null", "string"], "readOnly": true, "maxLength": 64},
            "os_hash_value": {"type": ["null", "string"], "readOnly": true, "maxLength": 128},
            "owner": {"type": ["null", "string"], "maxLength": 255},
            "size": {"type": ["null", "integer"], "readOnly": true},
            "virtual_size": {"type": ["null", "integer"], "readOnly": true},
            "container_format": {"type": ["null", "string"], "enum": containers},
            "disk_format": {"type": ["null", "string"], "enum": disks},
            "created_at": {"type": "string", "readOnly": true},
            "updated_at": {"type": "string", "readOnly": true},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}},
            "direct_url": {"type": "string", "readOnly": true},
            "min_ram": {"type": "integer"},
            "min_disk": {"type": "integer"},
            "self": {"type": "string", "readOnly": true},
            "file": {"type": "string", "readOnly": true},
            "schema": {"type": "string", "readOnly": true},
            "locations": {"type": "array", "items": {"type": "object"}},
            "kernel_id": nullable("string"),
            "ramdisk_id": nullable("string"),
        },
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    })
}

/// `GET /v2/schemas/image`.
pub async fn schema_image_h() -> Response {
    Json(image_schema()).into_response()
}

/// `GET /v2/schemas/images`.
pub async fn schema_images_h() -> Response {
    Json(json!({
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }))
    .into_response()
}

fn member_schema() -> Value {
    json!({
        "name": "member",
        "properties": {
            "image_id": {"type": "string"},
            "member_id": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "accepted", "rejected"]},
            "created_at": {"type": "string"},
            "updated_at": {"type": "string"},
            "schema": {"type": "string", "readOnly": true},
        },
    })
}

/// `GET /v2/schemas/member`.
pub async fn schema_member_h() -> Response {
    Json(member_schema()).into_response()
}

/// `GET /v2/schemas/members`.
pub async fn schema_members_h() -> Response {
    Json(json!({
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member_schema()},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }))
    .into_response()
}
