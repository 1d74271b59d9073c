//! The HTTP shell for image members: `/v2/images/{id}/members[/{member}]`.

use super::api::{Caller, S};
use super::body::{MemberReq, MemberStatusReq};
use super::error::ImageResult;
use super::members;
use super::model::member_view;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// `GET /v2/images/{id}/members`.
pub async fn list_h(State(im): S, caller: Caller, Path(id): Path<String>) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    let list = im.read_env(|st, env| -> ImageResult<Vec<_>> {
        Ok(members::list_members(st, env, &c, &id)?
            .into_iter()
            .map(member_view)
            .collect())
    })?;
    Ok(Json(json!({"members": list, "schema": "/v2/schemas/members"})).into_response())
}

/// `GET /v2/images/{id}/members/{member}`.
pub async fn show_h(
    State(im): S,
    caller: Caller,
    Path((id, member)): Path<(String, String)>,
) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    let v =
        im.read_env(|st, env| members::get_member(st, env, &c, &id, &member).map(member_view))?;
    Ok(Json(v).into_response())
}

/// `POST /v2/images/{id}/members` `{"member": "<project id>"}`.
pub async fn create_h(
    State(im): S,
    caller: Caller,
    Path(id): Path<String>,
    b: Bytes,
) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    let req = MemberReq::parse(&b)?;
    let m = im
        .write_async(move |st, env| members::add_member(st, env, &c, &id, &req.member))
        .await?;
    Ok(Json(member_view(&m)).into_response())
}

/// `PUT /v2/images/{id}/members/{member}` `{"status": "accepted"}`.
pub async fn update_h(
    State(im): S,
    caller: Caller,
    Path((id, member)): Path<(String, String)>,
    b: Bytes,
) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    let req = MemberStatusReq::parse(&b)?;
    let m = im
        .write_async(move |st, env| members::update_member(st, env, &c, &id, &member, &req.status))
        .await?;
    Ok(Json(member_view(&m)).into_response())
}

/// `DELETE /v2/images/{id}/members/{member}`.
pub async fn delete_h(
    State(im): S,
    caller: Caller,
    Path((id, member)): Path<(String, String)>,
) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    im.write_async(move |st, env| members::delete_member(st, env, &c, &id, &member))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
