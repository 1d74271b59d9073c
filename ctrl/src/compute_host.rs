//! What a compute host's build asks of the control plane, answered by the
//! services of this process (the in-process agent of `weft serve`): a
//! reader of the image's bytes for the host's cache, and the server's ports created or
//! bound to the host (so that the host's switch wires their taps), and
//! undone at teardown. A remote agent will ask the same over HTTP.
//!
//! Every step acts with a step token from the build's delegation, through
//! the checks an HTTP request passes (token validation and binding, then
//! the service's policy): the image and the ports the user asked for with
//! the server's trust, the port binding and teardown as the compute
//! service itself (see `crate::delegation`).

use crate::delegation::step_credentials;
use crate::networking::body::PortReq;
use crate::networking::service::{self, Ctx};
use crate::networking::Networking;
use serde_json::json;
use std::io::Read;
use std::sync::Arc;
use weft_compute::compute::build::trusts::Delegation;
use weft_compute::compute::error::{ComputeError, ComputeResult};
use weft_compute::compute::servers::interfaces::{Attach, Vif};
use weft_compute::compute::servers::record::{NicRequest, Server};
use weft_compute::image::store::Stored;
use weft_compute::image::Images;
use weft_identity::token::Audience;
use weft_identity::Identity;

/// The store hands out mapped windows of an image (a few MiB at a time, as
/// a download does), never the whole image in memory; this reads them in
/// order.
struct StoredReader {
    data: Box<dyn Stored>,
    at: u64,
}

impl Read for StoredReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        const WINDOW: usize = 8 << 20;
        if self.at >= self.data.len() || buf.is_empty() {
            return Ok(0);
        }
        let chunk = self.data.chunk(self.at, buf.len().min(WINDOW))?;
        if chunk.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "image data shorter than its stored length",
            ));
        }
        buf[..chunk.len()].copy_from_slice(&chunk);
        self.at += chunk.len() as u64;
        Ok(chunk.len())
    }
}

/// One plugged NIC of a server.
#[derive(Debug, Clone, PartialEq)]
pub struct Plugged {
    /// The port.
    pub port_id: String,
    /// Its MAC.
    pub mac: String,
    /// Its network's name (the key of the server's `addresses`).
    pub network_name: String,
    /// (address, 4 or 6).
    pub ips: Vec<(String, u8)>,
    /// The network's MTU.
    pub mtu: u32,
    /// The tap the switch expects (`tap` + 11 characters of the port id).
    pub devname: String,
    /// Made for this server (deleted with it) rather than given.
    pub created: bool,
}

/// The name a server's `addresses` show a network under.
fn network_name(n: &crate::networking::model::Network) -> String {
    if n.name.is_empty() {
        n.id.clone()
    } else {
        n.name.clone()
    }
}

/// The trust `s`'s build acts through (its routing slip).
fn trust_of(s: &Server) -> Result<&str, String> {
    s.trust_id.as_deref().ok_or_else(|| {
        format!(
            "server {} has no trust to build with (made before builds acted through trusts?)",
            s.id
        )
    })
}

/// The image and networking services of this process, as a build uses them
/// (cheap to clone: every compute host of the process shares them).
#[derive(Clone)]
pub struct HostServices {
    images: Arc<Images>,
    net: Arc<Networking>,
    identity: Arc<Identity>,
    delegation: Arc<dyn Delegation>,
}

impl HostServices {
    /// Over this process's image and networking services, acting with
    /// `delegation`'s step tokens, validated by `identity`.
    pub fn new(
        images: Arc<Images>,
        net: Arc<Networking>,
        identity: Arc<Identity>,
        delegation: Arc<dyn Delegation>,
    ) -> HostServices {
        HostServices {
            images,
            net,
            identity,
            delegation,
        }
    }

    /// The networking context of a step: for the user through `s`'s trust
    /// (`for_user`), else the compute service's own.
    fn net_ctx(&self, s: &Server, for_user: bool) -> Result<Ctx, String> {
        let trust = if for_user { Some(trust_of(s)?) } else { None };
        step_credentials(
            &self.identity,
            self.delegation.as_ref(),
            trust,
            Audience::Network,
            "networking",
        )
        .map(Ctx::new)
    }

    /// A reader of `s`'s image data, for the host's image cache: read with
    /// the server's trust, under the image service's `get_image` and
    /// `download_image` rules.
    pub fn open_image(&self, s: &Server) -> Result<Box<dyn Read + Send>, String> {
        use weft_compute::image::{policy, service as images};
        let id = &s.image_ref;
        let creds = step_credentials(
            &self.identity,
            self.delegation.as_ref(),
            Some(trust_of(s)?),
            Audience::Image,
            "image",
        )?;
        let c = policy::Ctx::new(creds);
        let active = self.images.read_env(|st, env| {
            let i = images::get_image(st, &c, id)?;
            let target = images::target(st, &c, i);
            env.authz.check(&c, "get_image", &target)?;
            env.authz.check(&c, "download_image", &target)?;
            Ok::<_, weft_compute::image::error::ImageError>(i.status.as_str() == "active")
        });
        if !active.map_err(|e| format!("image {id}: {e}"))? {
            return Err(format!("image {id} is not active"));
        }
        let data = self
            .images
            .data_store()
            .open(id)
            .map_err(|e| format!("image {id}: {e}"))?
            .ok_or_else(|| format!("image {id} has no data"))?;
        Ok(Box::new(StoredReader { data, at: 0 }))
    }

    /// The network `auto` picks (see [`auto_candidates`]); the API has
    /// refused a create with none or several, so an error here means the
    /// networks changed since.
    pub fn auto_network(&self, s: &Server) -> Result<String, String> {
        self.net
            .read(|st| match auto_candidates(st, &s.project_id).as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(
                    "no network available for this project: create one, or pass --network".into(),
                ),
                _ => Err(
                    "Multiple possible networks found, use a Network ID to be more specific."
                        .into(),
                ),
            })
    }

    /// Security group names of the server as ids of its project.
    pub fn group_ids(&self, s: &Server) -> Result<Option<Vec<String>>, String> {
        if s.security_groups == ["default"] {
            return Ok(None);
        }
        self.net.read(|st| {
            s.security_groups
                .iter()
                .map(|g| {
                    st.security_groups
                        .values()
                        .find(|sg| sg.project_id == s.project_id && (sg.name == *g || sg.id == *g))
                        .map(|sg| sg.id.clone())
                        .ok_or_else(|| format!("security group {g} not found"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        })
    }

    /// Creates (or takes) every port of `s` for the user, with the trust,
    /// and binds it to `host` as the compute service; on a failure the
    /// ports made so far are deleted again.
    pub fn plug(&self, s: &Server, host: &str) -> Result<Vec<Plugged>, String> {
        let user = self.net_ctx(s, true)?;
        let own = self.net_ctx(s, false)?;
        let mut nics = s.nics.clone();
        if s.auto_network && nics.is_empty() {
            nics.push(NicRequest {
                network: Some(self.auto_network(s)?),
                port: None,
                fixed_ip: None,
            });
        }
        let groups = self.group_ids(s)?;
        let mut out: Vec<Plugged> = Vec::new();
        for nic in &nics {
            if nic.port.is_none() && nic.network.is_none() {
                continue;
            }
            match self.plug_one(s, (&user, &own), host, nic, groups.as_deref()) {
                Ok(p) => out.push(p),
                Err(e) => {
                    self.unplug_ports(&own, &out);
                    return Err(format!("port for network {:?}: {e}", nic.network));
                }
            }
        }
        Ok(out)
    }

    /// Takes `nic`'s port for `s` (or makes one on its network) as the user
    /// (`ctx.0`, through the trust), then binds it to `host` as the compute
    /// service (`ctx.1`: Neutron's rule asks for `service` or `admin`, which a
    /// user cannot delegate); a port made here is deleted again when the
    /// binding fails.
    fn plug_one(
        &self,
        s: &Server,
        (user, own): (&Ctx, &Ctx),
        host: &str,
        nic: &NicRequest,
        groups: Option<&[String]>,
    ) -> Result<Plugged, crate::networking::NetError> {
        let device = json!({"device_id": s.id, "device_owner": "compute:nova"});
        let bad = |e: serde_json::Error| crate::networking::NetError::BadRequest {
            kind: "BadRequest",
            message: e.to_string(),
        };
        let (p, created) = match (&nic.port, &nic.network) {
            (Some(port), _) => {
                let req: PortReq = serde_json::from_value(device).map_err(bad)?;
                let p = self
                    .net
                    .write(|st, env| service::update_port(st, env, user, port, &req))?;
                (p, false)
            }
            (None, network) => {
                let mut body = device;
                body["network_id"] = json!(network.clone().unwrap_or_default());
                body["project_id"] = json!(s.project_id);
                body["name"] = json!(format!("{}-port", s.hostname));
                if let Some(ip) = &nic.fixed_ip {
                    body["fixed_ips"] = json!([{"ip_address": ip}]);
                }
                if let Some(g) = groups {
                    body["security_groups"] = json!(g);
                }
                let req: PortReq = serde_json::from_value(body).map_err(bad)?;
                let p = self
                    .net
                    .write(|st, env| service::create_port(st, env, user, &req))?;
                (p, true)
            }
        };
        let bind: PortReq =
            serde_json::from_value(json!({"binding:host_id": host})).expect("static body");
        let id = p.id.clone();
        let p = match self
            .net
            .write(|st, env| service::update_port(st, env, own, &id, &bind))
        {
            Ok(p) => p,
            Err(e) => {
                if created {
                    let _ = self
                        .net
                        .write(|st, env| service::delete_port(st, env, own, &id));
                }
                return Err(e);
            }
        };
        let (network_name, mtu) = self.net.read(|st| {
            st.networks
                .get(&p.network_id)
                .map(|n| (network_name(n), n.mtu))
                .unwrap_or_default()
        });
        Ok(Plugged {
            devname: p.devname(),
            port_id: p.id.clone(),
            mac: p.mac_address.clone(),
            network_name,
            ips: p
                .fixed_ips
                .iter()
                .map(|f| {
                    (
                        f.ip_address.clone(),
                        if f.ip_address.contains(':') { 6 } else { 4 },
                    )
                })
                .collect(),
            mtu,
            created,
        })
    }

    /// os-interface attach, the control-plane half: the port (given, or
    /// made on the network) bound to `host` for `s`. Nova's errors: an
    /// unknown port or network is 404, a port someone uses is 409.
    pub fn attach(&self, s: &Server, host: &str, req: &Attach) -> ComputeResult<Plugged> {
        check_attach(&self.net, s, req)?;
        let nic = NicRequest {
            network: req.net_id.clone(),
            port: req.port_id.clone(),
            fixed_ip: req.fixed_ip.clone(),
        };
        let groups = self.group_ids(s).map_err(ComputeError::BadRequest)?;
        let user = self.net_ctx(s, true).map_err(ComputeError::Forbidden)?;
        let own = self.net_ctx(s, false).map_err(ComputeError::Internal)?;
        self.plug_one(s, (&user, &own), host, &nic, groups.as_deref())
            .map_err(|e| match e {
                crate::networking::NetError::BadRequest { message, .. } => {
                    ComputeError::BadRequest(message)
                }
                crate::networking::NetError::Conflict { message, .. } => {
                    ComputeError::Conflict(message)
                }
                e => ComputeError::Internal(format!("attach port: {e}")),
            })
    }

    /// Undoes [`HostServices::attach`] after a failed hot-plug.
    pub fn unattach(&self, s: &Server, p: &Plugged) {
        match self.net_ctx(s, false) {
            Ok(own) => self.unplug_ports(&own, std::slice::from_ref(p)),
            Err(e) => tracing::warn!(port = %p.port_id, error = %e, "port not released"),
        }
    }

    /// os-interface detach, the control-plane half: the port deleted if it
    /// was made for `s`, unbound otherwise.
    pub fn detach(&self, s: &Server, port_id: &str) {
        let p = Plugged {
            port_id: port_id.to_string(),
            mac: String::new(),
            network_name: String::new(),
            ips: vec![],
            mtu: 0,
            devname: String::new(),
            created: s.created_ports.iter().any(|c| c == port_id),
        };
        match self.net_ctx(s, false) {
            Ok(own) => self.unplug_ports(&own, &[p]),
            Err(e) => tracing::warn!(port = %port_id, error = %e, "port not released"),
        }
    }

    /// The interfaces of server `id`: the ports whose device it is.
    pub fn vifs(&self, id: &str) -> Vec<Vif> {
        vifs(&self.net, id)
    }

    /// Uploads the file at `path` as the data of queued image `id`, as its
    /// owner (blocking: call it off the async workers, within the runtime).
    pub fn upload_image(&self, s: &Server, id: &str, path: &std::path::Path) -> Result<(), String> {
        // As the user, through the server's trust, with an image-bound
        // token: the image is theirs and the image service's
        // `upload_image` rule decides, as for a client's PUT of the data.
        // A snapshot an admin of another project asked for is owned by the
        // admin's project (as Glance records it), which the trust does not
        // reach: the compute service uploads it with its own bound token,
        // and the same rule decides.
        let owner = self
            .images
            .read(|st| st.images.get(id).map(|i| i.owner.clone()))
            .ok_or_else(|| format!("image {id} was deleted"))?;
        let trust = match owner.as_deref() == Some(s.project_id.as_str()) {
            true => Some(trust_of(s)?),
            false => None,
        };
        let creds = step_credentials(
            &self.identity,
            self.delegation.as_ref(),
            trust,
            Audience::Image,
            "image",
        )?;
        let ctx = weft_compute::image::Ctx::new(creds);
        let rt = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        rt.block_on(weft_compute::image::data::upload_file(
            self.images.clone(),
            ctx,
            id.to_string(),
            path.to_path_buf(),
        ))
        .map_err(|e| e.to_string())
    }

    fn unplug_ports(&self, ctx: &Ctx, ports: &[Plugged]) {
        for p in ports {
            let id = p.port_id.clone();
            let r = if p.created {
                self.net
                    .write(|st, env| service::delete_port(st, env, ctx, &id))
            } else {
                let req: PortReq = serde_json::from_value(
                    json!({"device_id": "", "device_owner": "", "binding:host_id": ""}),
                )
                .expect("static body");
                self.net
                    .write(|st, env| service::update_port(st, env, ctx, &id, &req))
                    .map(|_| ())
            };
            if let Err(e) = r {
                tracing::warn!(port = %id, error = %e, "port not released");
            }
        }
    }

    /// Deletes the ports made for `s` and unbinds the ones it was given;
    /// ports already gone are fine (teardown is idempotent). Ports bound to
    /// the server but not in its record (a build cut off by a restart) are
    /// found by their device id. Done as the compute service, so a user who
    /// lost their role cannot keep their ports from being cleaned up; `Err`
    /// when the service's own token is refused (the teardown is retried).
    pub fn unplug(&self, s: &Server) -> Result<(), String> {
        let own = self.net_ctx(s, false)?;
        let given: Vec<String> = s.nics.iter().filter_map(|n| n.port.clone()).collect();
        let ports: Vec<Plugged> = self.net.read(|st| {
            st.ports
                .values()
                .filter(|p| {
                    s.created_ports.contains(&p.id)
                        || given.contains(&p.id)
                        || (p.device_id == s.id && p.device_owner == "compute:nova")
                })
                .map(|p| Plugged {
                    port_id: p.id.clone(),
                    mac: String::new(),
                    network_name: String::new(),
                    ips: vec![],
                    mtu: 0,
                    devname: String::new(),
                    created: !given.contains(&p.id),
                })
                .collect()
        });
        self.unplug_ports(&own, &ports);
        Ok(())
    }
}

/// os-interface attach's checks, as Nova's: an unknown (or another
/// project's) port or network is 404, a port someone uses is 409, neither
/// given is 400. Run before any host is asked (in-process or remote).
pub fn check_attach(net: &Networking, s: &Server, req: &Attach) -> ComputeResult<()> {
    net.read(|st| -> ComputeResult<()> {
        let visible = |owner: &str| owner == s.project_id;
        if let Some(id) = &req.port_id {
            let p = st
                .ports
                .get(id)
                .filter(|p| visible(&p.project_id))
                .ok_or_else(|| ComputeError::NotFound(format!("Port {id} could not be found.")))?;
            if !p.device_id.is_empty() {
                return Err(ComputeError::Conflict(format!(
                    "Port {id} is still in use."
                )));
            }
        }
        if let Some(id) = &req.net_id {
            st.networks
                .get(id)
                .filter(|n| n.shared || visible(&n.project_id))
                .ok_or_else(|| {
                    ComputeError::NotFound(format!("Network {id} could not be found."))
                })?;
        }
        if req.port_id.is_none() && req.net_id.is_none() {
            return Err(ComputeError::BadRequest(
                "Either port_id or net_id must be given to attach an interface".into(),
            ));
        }
        Ok(())
    })
}

/// The interfaces of server `id`: the ports whose device it is.
pub fn vifs(net: &Networking, id: &str) -> Vec<Vif> {
    net.read(|st| {
        let mut ports: Vec<_> = st
            .ports
            .values()
            .filter(|p| p.device_id == id && p.device_owner.starts_with("compute:"))
            .collect();
        ports.sort_by(|a, b| (&a.std.created_at, &a.id).cmp(&(&b.std.created_at, &b.id)));
        ports
            .into_iter()
            .map(|p| Vif {
                port_id: p.id.clone(),
                net_id: p.network_id.clone(),
                network_name: st
                    .networks
                    .get(&p.network_id)
                    .map(network_name)
                    .unwrap_or_default(),
                mac_addr: p.mac_address.clone(),
                fixed_ips: p
                    .fixed_ips
                    .iter()
                    .map(|f| (f.ip_address.clone(), f.subnet_id.clone()))
                    .collect(),
                port_state: p.status.clone(),
            })
            .collect()
    })
}

/// The networks `networks: "auto"` chooses between for `project`: its own,
/// or when it has none the shared ones (Nova's get-me-a-network would make
/// one; weft asks for one to exist). By id.
pub fn auto_candidates(st: &crate::networking::state::State, project: &str) -> Vec<String> {
    let own: Vec<String> = st
        .networks
        .values()
        .filter(|n| n.project_id == project)
        .map(|n| n.id.clone())
        .collect();
    if !own.is_empty() {
        return own;
    }
    st.networks
        .values()
        .filter(|n| n.shared)
        .map(|n| n.id.clone())
        .collect()
}
