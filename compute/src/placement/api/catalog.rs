//! `/resource_classes` (1.2) and `/traits` (1.6).

use super::{body, created_at, no_content, render, since, Base, Caller, JsonBytes, Mv, S};
use crate::placement::error::{PlacementError, PlacementResult};
use crate::placement::query::{known_class, Params};
use crate::placement::service::Ctx;
use crate::placement::{classes, traits};
use axum::extract::{Path, RawQuery};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

type R = PlacementResult<Response>;

pub async fn classes(axum::extract::State(pl): S, c: Caller, Mv(v): Mv, Base(base): Base) -> R {
    since(v, 2)?;
    c.admit(&pl, "placement:resource_classes:list", None)?;
    let st = pl.snapshot();
    let list: Vec<Value> = classes::list(&st)
        .iter()
        .map(|n| render::class(&base, n))
        .collect();
    Ok(Json(json!({"resource_classes": list})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClass {
    name: String,
}

pub async fn create_class(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Base(base): Base,
    JsonBytes(b): JsonBytes,
) -> R {
    since(v, 2)?;
    c.admit(&pl, "placement:resource_classes:create", None)?;
    let req: NewClass = body(&b)?;
    let name = req.name.clone();
    pl.write_async(Ctx { version: v }, move |st, env, ctx| {
        classes::create(st, env, ctx, &req.name)
    })
    .await?;
    Ok(created_at(&format!("{base}/resource_classes/{name}")))
}

pub async fn class(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Base(base): Base,
    Path(name): Path<String>,
) -> R {
    since(v, 2)?;
    c.admit(&pl, "placement:resource_classes:show", None)?;
    let st = pl.snapshot();
    if !known_class(&st, &name) {
        return Err(PlacementError::not_found(format!(
            "No such resource class {name}."
        )));
    }
    Ok(Json(render::class(&base, &name)).into_response())
}

/// `PUT /resource_classes/{name}`: from 1.7 a bodiless create-or-confirm;
/// from 1.2 to 1.6 a rename, with `{"name": new}`.
pub async fn ensure_class(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Base(base): Base,
    Path(name): Path<String>,
    req: axum::extract::Request,
) -> R {
    since(v, 2)?;
    c.admit(&pl, "placement:resource_classes:update", None)?;
    if !v.at_least(7) {
        let JsonBytes(b) =
            <JsonBytes as axum::extract::FromRequest<()>>::from_request(req, &()).await?;
        let to: NewClass = body(&b)?;
        let (old, new) = (name.clone(), to.name.clone());
        pl.write_async(Ctx { version: v }, move |st, env, ctx| {
            classes::rename(st, env, ctx, &old, &new)
        })
        .await?;
        return Ok(Json(render::class(&base, &to.name)).into_response());
    }
    let n = name.clone();
    let created = pl
        .write_async(Ctx { version: v }, move |st, env, ctx| {
            classes::ensure(st, env, ctx, &n)
        })
        .await?;
    let location = format!("{base}/resource_classes/{name}");
    let mut r = if created {
        created_at(&location)
    } else {
        no_content()
    };
    r.extensions_mut().insert(super::Uncached);
    if let Ok(h) = axum::http::HeaderValue::from_str(&location) {
        r.headers_mut().insert(axum::http::header::LOCATION, h);
    }
    Ok(r)
}

pub async fn delete_class(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(name): Path<String>,
) -> R {
    since(v, 2)?;
    c.admit(&pl, "placement:resource_classes:delete", None)?;
    pl.write_async(Ctx { version: v }, move |st, env, ctx| {
        classes::delete(st, env, ctx, &name)
    })
    .await?;
    Ok(no_content())
}

pub async fn traits(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    RawQuery(raw): RawQuery,
) -> R {
    since(v, 6)?;
    c.admit(&pl, "placement:traits:list", None)?;
    let q = Params::parse(raw.as_deref());
    for k in q.keys() {
        if k != "name" && k != "associated" {
            return Err(PlacementError::bad(format!(
                "Invalid query string parameters: Additional properties are not allowed \
                 ('{k}' was unexpected)"
            )));
        }
    }
    let st = pl.snapshot();
    let list = traits::list(&st, q.one("name")?, q.one("associated")?)?;
    Ok(Json(json!({"traits": list})).into_response())
}

pub async fn show_trait(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(name): Path<String>,
) -> R {
    since(v, 6)?;
    c.admit(&pl, "placement:traits:show", None)?;
    let st = pl.snapshot();
    if !traits::exists(&st, &name) {
        return Err(PlacementError::not_found(format!(
            "No such trait(s): {name}"
        )));
    }
    Ok(no_content())
}

pub async fn put_trait(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Base(base): Base,
    Path(name): Path<String>,
) -> R {
    since(v, 6)?;
    c.admit(&pl, "placement:traits:update", None)?;
    let n = name.clone();
    let created = pl
        .write_async(Ctx { version: v }, move |st, env, ctx| {
            traits::create(st, env, ctx, &n)
        })
        .await?;
    let location = format!("{base}/traits/{name}");
    let mut r = if created {
        created_at(&location)
    } else {
        no_content()
    };
    if let Ok(h) = axum::http::HeaderValue::from_str(&location) {
        r.headers_mut().insert(axum::http::header::LOCATION, h);
    }
    Ok(r)
}

pub async fn delete_trait(
    axum::extract::State(pl): S,
    c: Caller,
    Mv(v): Mv,
    Path(name): Path<String>,
) -> R {
    since(v, 6)?;
    c.admit(&pl, "placement:traits:delete", None)?;
    pl.write_async(Ctx { version: v }, move |st, env, ctx| {
        traits::delete(st, env, ctx, &name)
    })
    .await?;
    Ok(no_content())
}
