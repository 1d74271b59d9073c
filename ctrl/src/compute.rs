//! Mounting the Compute API (weft-compute's `compute`) in `weft serve`:
//! `/compute/v2.1`, catalog type `compute`, name `nova`; the lookups server
//! create makes in the image and networking services of this process; and
//! the build loop over this process's placement.

use crate::networking::Networking;
use crate::server::{json_errors, Server, ServiceMount};
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_compute::compute::error::{ComputeError, ComputeResult};
use weft_compute::compute::servers::interfaces::Vif;
use weft_compute::compute::servers::record::Server as ServerRecord;
use weft_compute::compute::servers::{request::CreateServer, Facts, ImageFacts};
use weft_compute::compute::{self, build, Compute, Ctx, Lookups};
use weft_compute::image::Images;
use weft_compute::placement::Placement;
use weft_identity::policy::Mode;

/// The services a server create consults, as the caller may see them.
struct InProcess {
    images: Arc<Images>,
    net: Arc<Networking>,
}

impl Lookups for InProcess {
    fn image(&self, ctx: &Ctx, id: &str) -> Option<ImageFacts> {
        let ictx = weft_compute::image::policy::Ctx::new(ctx.creds.clone());
        self.images.read(|st| {
            st.images
                .get(id)
                .filter(|i| weft_compute::image::service::visible(st, &ictx, i))
                .map(|i| ImageFacts {
                    status: i.status.as_str().to_string(),
                    min_disk: i.min_disk,
                    min_ram: i.min_ram,
                    size: i.data.as_ref().map_or(0, |d| d.size),
                })
        })
    }

    fn interfaces(&self, server: &ServerRecord) -> Vec<Vif> {
        crate::compute_host::vifs(&self.net, &server.id)
    }

    fn check_attach(
        &self,
        server: &ServerRecord,
        req: &weft_compute::compute::servers::interfaces::Attach,
    ) -> ComputeResult<()> {
        crate::compute_host::check_attach(&self.net, server, req)
    }

    fn create_snapshot_image(
        &self,
        ctx: &Ctx,
        server: &ServerRecord,
        name: &str,
        properties: BTreeMap<String, String>,
    ) -> ComputeResult<String> {
        use weft_compute::image::ImageError;
        let ictx = weft_compute::image::policy::Ctx::new(ctx.creds.clone());
        // Nova's snapshot: the base image's minimums, the flavor's disk.
        let base_min_ram = self
            .images
            .read(|st| st.images.get(&server.image_ref).map_or(0, |i| i.min_ram));
        let req = weft_compute::image::body::CreateReq {
            name: Some(name.to_string()),
            disk_format: Some("qcow2".into()),
            container_format: Some("bare".into()),
            visibility: Some("private".into()),
            min_disk: Some(server.flavor.disk),
            min_ram: Some(base_min_ram),
            ..Default::default()
        };
        self.images
            .write(|st, env| {
                weft_compute::image::service::create_image(st, env, &ictx, &req, properties.clone())
            })
            .map(|i| i.id)
            .map_err(|e| match e {
                ImageError::Forbidden(m) => ComputeError::Forbidden(m),
                ImageError::BadRequest(m) => ComputeError::BadRequest(m),
                e => ComputeError::Conflict(format!("image for the snapshot: {e}")),
            })
    }

    fn delete_image(&self, id: &str) {
        let admin = weft_compute::image::policy::Ctx::new(weft_identity::policy::Credentials {
            user_id: "nova".into(),
            roles: vec!["admin".into()],
            ..Default::default()
        });
        let gone = self
            .images
            .write(|st, env| weft_compute::image::service::delete_image(st, env, &admin, id));
        if gone.is_ok() {
            let _ = self.images.data_store().delete(id);
        }
    }

    fn facts(&self, ctx: &Ctx, req: &CreateServer) -> Facts {
        let image = self.image(ctx, &req.image_ref);
        let own = ctx.project_id.as_deref().unwrap_or("");
        self.net.read(|st| {
            let mut f = Facts {
                image,
                ..Facts::default()
            };
            for nic in &req.nics {
                if let Some(n) = &nic.network {
                    let seen = st.networks.get(n).is_some_and(|net| {
                        ctx.is_admin || net.shared || net.router_external || net.project_id == own
                    });
                    if !seen {
                        f.missing_networks.push(n.clone());
                    }
                }
                if let Some(p) = &nic.port {
                    match st.ports.get(p) {
                        Some(port) if ctx.is_admin || port.project_id == own => {
                            if !port.device_id.is_empty() {
                                f.ports_in_use.push(p.clone());
                            }
                        }
                        _ => f.missing_ports.push(p.clone()),
                    }
                }
            }
            if req.auto_network && req.nics.is_empty() {
                f.auto_candidates = Some(crate::compute_host::auto_candidates(st, own).len());
            }
            for g in &req.security_groups {
                // `default` is made with the project's first port, as Neutron does.
                let found = g == "default"
                    || st.security_groups.values().any(|sg| {
                        (sg.name == *g || sg.id == *g) && (ctx.is_admin || sg.project_id == own)
                    });
                if !found {
                    f.missing_groups.push(g.clone());
                }
            }
            f
        })
    }
}

/// A server's data for the switch's metadata service (keys, user data,
/// metadata, names), by the port's device id.
pub struct ServerInstances(pub Arc<Compute>);

impl crate::networking::InstanceInfo for ServerInstances {
    fn instance(&self, device_id: &str) -> Option<weft_proto::HostInstance> {
        let st = self.0.snapshot();
        let s = st.servers.get(device_id)?;
        let public_keys = match (&s.key_name, &s.public_key) {
            (Some(n), Some(k)) => [(n.clone(), k.clone())].into(),
            _ => Default::default(),
        };
        Some(weft_proto::HostInstance {
            uuid: s.id.clone(),
            name: s.name.clone(),
            hostname: s.hostname.clone(),
            availability_zone: s.availability_zone.clone().unwrap_or_else(|| "nova".into()),
            project_id: s.project_id.clone(),
            launch_index: s.launch_index,
            public_keys,
            meta: s.metadata.clone(),
            user_data: s.user_data.clone(),
        })
    }
}

/// Opens the compute service on the server's store, mounts it, and starts
/// its build loop on `rt` over `placement`.
pub fn mount(
    server: &mut Server,
    images: Arc<Images>,
    net: Arc<Networking>,
    placement: Arc<Placement>,
    rt: &tokio::runtime::Handle,
) -> Result<Arc<Compute>, String> {
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
    // Builds act through trusts, with roles the policy asks for.
    let roles = crate::delegation::derive_roles(sc.policy_file.as_deref())?;
    let delegate = Arc::new(crate::delegation::Delegate::open(
        server.identity(),
        &sc.state_dir,
        roles,
    )?);
    tracing::info!(trust_roles = ?delegate.roles().trust, service_roles = ?delegate.roles().service,
        user = %delegate.user().user_id, "compute: builds act through trusts");
    svc.set_delegation(delegate.clone());
    net.set_instance_info(Arc::new(ServerInstances(svc.clone())));
    svc.set_lookups(Arc::new(InProcess {
        images: images.clone(),
        net: net.clone(),
    }));
    let claims: Arc<dyn weft_compute::compute::build::claims::Claims> =
        Arc::new(crate::delegation::ServiceClaims {
            placement,
            identity: server.identity(),
            delegation: delegate.clone(),
        });
    // The API's own placement writes (service delete, aggregate membership).
    svc.set_placement(claims.clone());
    let services = crate::compute_host::HostServices::new(
        images,
        net.clone(),
        server.identity(),
        delegate.clone(),
    );
    // A server deleted while its remote host is down: ctrl releases its
    // ports itself, as the host's agent would have.
    let release = services.clone();
    svc.builds()
        .set_port_release(Arc::new(move |s| release.unplug(s)));
    // Remote compute hosts (`weft agent --compute-driver`) under /compute/agent/v1.
    let agents = crate::compute_agent::router(Arc::new(crate::compute_agent::AgentApi {
        compute: svc.clone(),
        claims: claims.clone(),
        services,
        net,
        delegation: delegate,
    }));
    let router = compute::router(svc.clone())
        .merge(agents)
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| {
                json_errors(compute::error::framework_body, req, next)
            },
        ));
    // Nova's catalog entry carries the version: clients append paths to it.
    let mut m = ServiceMount::new(compute::MOUNT, "compute", "nova", router);
    m.catalog_path = format!("{}/v2.1", compute::MOUNT);
    server.mount(m).map_err(|e| e.to_string())?;
    server.follow(svc.replica());
    rt.spawn(build::run(svc.clone(), claims));
    Ok(svc)
}
