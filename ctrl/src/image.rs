//! Mounting the image service (weft-compute's `image`) in `weft serve`:
//! `/image`, catalog type `image`, name `glance`.

use crate::server::{json_errors, Server, ServiceMount, TrimmedSlash};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use weft_compute::image::{self, ImageConfig, Images};
use weft_identity::policy::Mode;

/// Opens the image service in `weft serve`'s state directory (records in
/// the store, files under `STATE_DIR/images`) and mounts it.
pub fn mount(server: &mut Server, cfg: &ImageConfig) -> Result<Arc<Images>, String> {
    let sc = server.config().clone();
    let mode = if sc.policy_permissive {
        Mode::Permissive
    } else {
        Mode::Enforce
    };
    let images = Images::open(
        server.store(),
        &sc.state_dir,
        cfg,
        sc.policy_file.as_deref(),
        mode,
        server.identity(),
    )?;
    let router = image::router(images.clone())
        .layer(axum::middleware::from_fn(exact_paths))
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| {
                json_errors(image::error::framework_body, req, next)
            },
        ));
    server
        .mount(ServiceMount::new(image::MOUNT, "image", "glance", router))
        .map_err(|e| e.to_string())?;
    server.follow(images.replica());
    Ok(images)
}

/// Glance routes paths exactly: `GET /v2/images/` is a 404 (tempest's
/// null-id negatives), not the list. The server trims a trailing slash for
/// every service (Keystone's and Neutron's clients rely on it), so here a
/// trimmed path is refused again, all but the version document at
/// `/image/`, which clients reach with or without the slash.
async fn exact_paths(req: Request, next: Next) -> Response {
    if req.extensions().get::<TrimmedSlash>().is_some() && req.uri().path() != "/" {
        let path = req.uri().path().to_string();
        return image::ImageError::NotFound(format!("The resource could not be found: {path}/"))
            .into_response();
    }
    next.run(req).await
}
