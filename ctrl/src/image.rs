//! Mounting the image service (weft-compute's `image`) in `weft serve`:
//! `/image`, catalog type `image`, name `glance`.

use crate::server::{json_errors, Server, ServiceMount};
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
    let router = image::router(images.clone()).layer(axum::middleware::from_fn(
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
