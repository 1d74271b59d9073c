//! `POST /reshaper` (1.30): the body into inventories and consumer writes,
//! the atomic replacement in `reshaper.rs`.

use super::allocations::{dict_write, DictBody};
use super::{body, no_content, since, Caller, JsonBytes, Mv, S};
use crate::placement::error::PlacementResult;
use crate::placement::inventories::SetInventories;
use crate::placement::reshaper;
use crate::placement::service::Ctx;
use axum::response::Response;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole request: both parts are required, either may be empty.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReshapeBody {
    inventories: BTreeMap<String, SetInventories>,
    allocations: BTreeMap<String, DictBody>,
}

pub async fn reshape(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    JsonBytes(b): JsonBytes,
) -> PlacementResult<Response> {
    since(v, 30)?;
    c.admit(&pl, "placement:reshaper:reshape", None)?;
    let req: ReshapeBody = body(&b)?;
    let mut writes = Vec::with_capacity(req.allocations.len());
    for (consumer, d) in req.allocations {
        writes.push(dict_write(v, consumer, d, true)?);
    }
    let inventories = req.inventories;
    pl.write_async(Ctx { version: v }, move |st, env, ctx| {
        reshaper::reshape(st, env, ctx, &inventories, &writes)
    })
    .await?;
    Ok(no_content())
}
