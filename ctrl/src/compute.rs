//! Mounting the Compute API (weft-compute's `compute`) in `weft serve`:
//! `/compute/v2.1`, catalog type `compute`, name `nova`.

use crate::server::{json_errors, Server, ServiceMount};
use std::sync::Arc;
use weft_compute::compute::{self, Compute};
use weft_identity::policy::Mode;

/// Opens the compute service on the server's store and mounts it.
pub fn mount(server: &mut Server) -> Result<Arc<Compute>, String> {
    let sc = server.config().clone();
    let mode = if sc.policy_permissive {
        Mode::Permissive
    } else {
        Mode::Enforce
    };
    let svc = Compute::open(
        server.store(),
        &sc.state_dir,
        sc.policy_file.as_deref(),
        mode,
        server.identity(),
    )?;
    let router = compute::router(svc.clone()).layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| {
            json_errors(compute::error::framework_body, req, next)
        },
    ));
    // Nova's catalog entry carries the version: clients append paths to it.
    let mut m = ServiceMount::new(compute::MOUNT, "compute", "nova", router);
    m.catalog_path = format!("{}/v2.1", compute::MOUNT);
    server.mount(m).map_err(|e| e.to_string())?;
    server.follow(svc.replica());
    Ok(svc)
}
