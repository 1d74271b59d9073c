//! The HTTP shell for image records: `/v2/images` and its tags and actions,
//! and the router of the whole service (members, data and discovery
//! routes live in their own files).

use super::body::{self, CreateReq, PATCH_MEDIA_TYPE, PATCH_MEDIA_TYPE_V20};
use super::error::{ImageError, ImageResult};
use super::model::image_view;
use super::query::ListQuery;
use super::service::{self, Ctx};
use super::{api_members, data, discovery, Images};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) type S = State<Arc<Images>>;

/// Where `weft serve` mounts [`router`]; catalog type `image`.
pub const MOUNT: &str = "/image";

/// The caller: the context the server's authentication layer left in the
/// request (every token is validated once, in one place), or, for this
/// router used on its own, the token to validate here.
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
            token: parts
                .headers
                .get("x-auth-token")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_string()),
        })
    }
}

impl Caller {
    /// The caller's context, or 401.
    pub fn ctx(&self, images: &Images) -> ImageResult<Ctx> {
        if let Some(c) = &self.ctx {
            return Ok(Ctx::new(c.credentials()));
        }
        if self.rejected {
            return Err(ImageError::Unauthenticated);
        }
        images.authenticate(self.token.as_deref())
    }
}

fn content_type(h: &HeaderMap) -> &str {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("")
}

/// `GET /v2/images`.
async fn list_h(State(im): S, caller: Caller, RawQuery(q): RawQuery) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    let q = ListQuery::parse(q.as_deref().unwrap_or(""))?;
    let target = json!({"project_id": c.project_id});
    im.authz().check(&c, "get_images", &target)?;
    let (images, next) = im.read(|st| -> ImageResult<_> {
        let (page, next) = q.page(st, &c)?;
        Ok((page.into_iter().map(image_view).collect::<Vec<_>>(), next))
    })?;
    let mut body = json!({
        "images": images,
        "first": "/v2/images",
        "schema": "/v2/schemas/images",
    });
    if let Some(n) = next {
        body["next"] = Value::String(n);
    }
    Ok(Json(body).into_response())
}

/// `POST /v2/images`.
async fn create_h(State(im): S, caller: Caller, b: Bytes) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    let (req, props) = CreateReq::parse(&b)?;
    let img = im
        .write_async(move |st, env| service::create_image(st, env, &c, &req, props.clone()))
        .await?;
    let location = format!("/v2/images/{}", img.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(image_view(&img)),
    )
        .into_response())
}

/// `GET /v2/images/{id}`.
async fn show_h(State(im): S, caller: Caller, Path(id): Path<String>) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    let v = im.read_env(|st, env| -> ImageResult<Value> {
        let i = service::get_image(st, &c, &id)?;
        env.authz
            .check(&c, "get_image", &service::target(st, &c, i))?;
        Ok(image_view(i))
    })?;
    Ok(Json(v).into_response())
}

/// `PATCH /v2/images/{id}` with Glance's JSON-patch media type.
async fn update_h(
    State(im): S,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Bytes,
) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    let ct = content_type(&headers);
    if ct != PATCH_MEDIA_TYPE && ct != PATCH_MEDIA_TYPE_V20 {
        return Err(ImageError::UnsupportedMedia(format!(
            "Unsupported Content-Type '{ct}': use {PATCH_MEDIA_TYPE}"
        )));
    }
    let ops = body::parse_patch(&b)?;
    let img = im
        .write_async(move |st, env| service::update_image(st, env, &c, &id, &ops))
        .await?;
    Ok(Json(image_view(&img)).into_response())
}

/// `DELETE /v2/images/{id}`: the record, then its data.
async fn delete_h(State(im): S, caller: Caller, Path(id): Path<String>) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    let target = id.clone();
    im.write_async(move |st, env| service::delete_image(st, env, &c, &target))
        .await?;
    let store = im.data_store();
    // The record is gone either way; a file left here is removed by the
    // next start's sweep.
    match tokio::task::spawn_blocking(move || store.delete(&id)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "image data not removed"),
        Err(e) => tracing::warn!(error = %e, "image data not removed"),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v2/images/{id}/actions/{deactivate|reactivate}`.
async fn action_h(
    State(im): S,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    let f = match action.as_str() {
        "deactivate" => service::deactivate,
        "reactivate" => service::reactivate,
        _ => {
            return Err(ImageError::NotFound(format!(
                "The resource could not be found: action '{action}'"
            )))
        }
    };
    im.write_async(move |st, env| f(st, env, &c, &id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /v2/images/{id}/tags/{tag}`.
async fn add_tag_h(
    State(im): S,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    im.write_async(move |st, env| service::add_tag(st, env, &c, &id, &tag))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v2/images/{id}/tags/{tag}`.
async fn delete_tag_h(
    State(im): S,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    im.write_async(move |st, env| service::delete_tag(st, env, &c, &id, &tag))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Unknown paths get a JSON 404 rather than an empty one.
async fn fallback_h(uri: axum::http::Uri) -> Response {
    let status = StatusCode::NOT_FOUND;
    let msg = format!("The resource could not be found: {}", uri.path());
    (status, Json(super::error::body(status, &msg))).into_response()
}

/// The image service relative to its mount point, [`MOUNT`]: `/` version
/// discovery, `/v2/...` the Image API. Links in answers are Glance's
/// (`/v2/images/...`): clients resolve them against the catalog endpoint.
pub fn router(images: Arc<Images>) -> Router {
    Router::new()
        .route("/", get(discovery::versions_h))
        .route("/versions", get(discovery::versions_h))
        .route("/v2/images", get(list_h).post(create_h))
        .route(
            "/v2/images/{id}",
            get(show_h).patch(update_h).delete(delete_h),
        )
        .route(
            "/v2/images/{id}/file",
            put(data::upload_h).get(data::download_h),
        )
        .route("/v2/images/{id}/actions/{action}", post(action_h))
        .route(
            "/v2/images/{id}/tags/{tag}",
            put(add_tag_h).delete(delete_tag_h),
        )
        .route(
            "/v2/images/{id}/members",
            get(api_members::list_h).post(api_members::create_h),
        )
        .route(
            "/v2/images/{id}/members/{member}",
            get(api_members::show_h)
                .put(api_members::update_h)
                .delete(api_members::delete_h),
        )
        .route("/v2/images/{id}/import", post(discovery::import_h))
        .route("/v2/info/import", get(discovery::info_import_h))
        .route("/v2/info/stores", get(discovery::info_stores_h))
        .route("/v2/schemas/image", get(discovery::schema_image_h))
        .route("/v2/schemas/images", get(discovery::schema_images_h))
        .route("/v2/schemas/member", get(discovery::schema_member_h))
        .route("/v2/schemas/members", get(discovery::schema_members_h))
        .fallback(fallback_h)
        .with_state(images)
}
