//! A remote compute host's part of actions on its running servers (power,
//! rebuild, resize, createImage), console output and os-interface, as its
//! work list carries them (`weft_proto::compute_actions`). ctrl decided
//! each one and finishes it with the build loop's own code once this host
//! reports; here only the driver's call runs, and the steps that act as
//! the user (the rebuild's image, the snapshot's upload, the attach's
//! port) take a step token ctrl mints for the one service.
//!
//! ```text
//!  actions ─► driver call (power | rebuild: image token ─► cache ─► new root disk
//!                         | resize | snapshot: flatten ─► image token ─► PUT image file)
//!          ─► acted {task_state, fault}
//!  consoles ─► console log tail ─► consoles/{request} {output | fault}
//!  interfaces ─► attach: port as user, bound as the service ─► hot-plug ─► {port_id, created}
//!              ─► detach: unplug NIC ─► {} (ctrl lets the port go)
//! ```

use crate::compute_remote::image_fetch::HttpImages;
use crate::compute_remote::RemoteCompute;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use weft_hypervisor::{InterfaceSpec, RebootKind};
use weft_proto::compute::NicOrder;
use weft_proto::compute_actions::{
    ActionOrder, ActionReport, ConsoleOrder, ConsoleReport, HostAction, InterfaceOrder,
    InterfaceReport,
};

/// How long a reported action is not taken again from a work list that
/// was read before the report reached ctrl.
const REPORTED_FOR: Duration = Duration::from_secs(5);

fn uuid(id: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(id).map_err(|e| format!("server id {id}: {e}"))
}

impl RemoteCompute {
    /// Starts the actions, console and interface requests not already
    /// running, each on a blocking thread.
    pub(crate) fn start_actions(
        self: &Arc<Self>,
        actions: Vec<ActionOrder>,
        consoles: Vec<ConsoleOrder>,
        interfaces: Vec<InterfaceOrder>,
    ) {
        let rt = Handle::current();
        for a in actions {
            let key = format!("{}/{}", a.server_id, a.task_state);
            if self.lately_reported(&key) || !self.take(&a.server_id) {
                continue;
            }
            let (me, rt2) = (self.clone(), rt.clone());
            rt.spawn_blocking(move || {
                let id = a.server_id.clone();
                let r = me.act(&rt2, &a);
                if let Err(e) = &r {
                    tracing::warn!(server = %id, task = %a.task_state, error = %e, "action failed");
                }
                let report = ActionReport {
                    task_state: a.task_state.clone(),
                    fault: r.err(),
                };
                match rt2.block_on(me.report(&id, "acted", serde_json::to_value(&report).ok())) {
                    Ok(()) => me.note_reported(key),
                    // Still in its task state at ctrl: the next poll asks again.
                    Err(e) => tracing::warn!(server = %id, error = %e, "action not reported"),
                }
                me.release(&id);
            });
        }
        for q in consoles {
            if !self.take(&q.request_id) {
                continue;
            }
            let (me, rt2) = (self.clone(), rt.clone());
            rt.spawn_blocking(move || {
                let report = match me.compute.console(&q.server_id, q.lines) {
                    Ok(out) => ConsoleReport {
                        output: Some(out),
                        fault: None,
                    },
                    Err(e) => ConsoleReport {
                        output: None,
                        fault: Some(e),
                    },
                };
                let path = me.path(&format!("/consoles/{}", q.request_id));
                me.post(
                    &rt2,
                    &path,
                    serde_json::to_value(&report).ok(),
                    "console output",
                );
                me.release(&q.request_id);
            });
        }
        for q in interfaces {
            if !self.take(&q.request_id) {
                continue;
            }
            let (me, rt2) = (self.clone(), rt.clone());
            rt.spawn_blocking(move || {
                let report = if q.attach {
                    me.attach(&rt2, &q)
                } else {
                    me.detach(&q)
                };
                let path = me.path(&format!("/interfaces/{}", q.request_id));
                me.post(
                    &rt2,
                    &path,
                    serde_json::to_value(&report).ok(),
                    "interface report",
                );
                me.release(&q.request_id);
            });
        }
    }

    fn lately_reported(&self, key: &str) -> bool {
        let mut m = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, t| t.elapsed() < REPORTED_FOR);
        m.contains_key(key)
    }

    fn note_reported(&self, key: String) {
        self.reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Instant::now());
    }

    fn post(&self, rt: &Handle, path: &str, body: Option<serde_json::Value>, what: &str) {
        let r = rt.block_on(self.ctrl.call(hyper::Method::POST, path, body, what));
        if let Err(e) = r {
            tracing::warn!(%path, error = %e, "{what} not reported");
        }
    }

    /// The driver's part of one action (blocking).
    fn act(&self, rt: &Handle, a: &ActionOrder) -> Result<(), String> {
        let id = &a.server_id;
        let d = self.compute.driver();
        let e = |x: weft_hypervisor::Error| x.to_string();
        match &a.action {
            HostAction::Power => power(d.as_ref(), uuid(id)?, &a.task_state),
            HostAction::Rebuild {
                image_id,
                root_gb,
                stopped,
            } => {
                let images = HttpImages {
                    agent: self,
                    rt,
                    server: id,
                };
                self.compute.rebuild(id, image_id, *root_gb, &images)?;
                // Nova: a server rebuilt while stopped stays stopped.
                if *stopped {
                    d.stop(uuid(id)?).map_err(e)?;
                }
                Ok(())
            }
            HostAction::Resize {
                vcpus,
                memory_mb,
                root_gb,
            } => self.compute.resize(id, *vcpus, *memory_mb, *root_gb),
            HostAction::Snapshot { image_id } => self.snapshot(rt, id, image_id),
        }
    }

    /// Flattens the root disk beside the instances (same filesystem, no
    /// partial file in the image cache) and uploads it as the user.
    fn snapshot(&self, rt: &Handle, id: &str, image_id: &str) -> Result<(), String> {
        let file = self
            .compute
            .instances_dir()
            .join(format!(".snapshot-{image_id}.qcow2"));
        let r = self.compute.snapshot(id, &file).and_then(|()| {
            // Sent as it is read: the flattened disk can be as large as the
            // guest's whole disk.
            rt.block_on(async {
                let t = self.token(id, "image", true).await?;
                self.ctrl
                    .put_file_as(
                        &t,
                        &format!("/image/v2/images/{image_id}/file"),
                        &file,
                        "snapshot upload",
                    )
                    .await
            })
            .map_err(|e| format!("image {image_id}: {e}"))
        });
        let _ = std::fs::remove_file(&file);
        r
    }

    /// os-interface attach: the port taken or made as the user and bound to
    /// this host (as a build's), then the NIC hot-plugged; a port made here
    /// goes again when the plug fails.
    fn attach(&self, rt: &Handle, q: &InterfaceOrder) -> InterfaceReport {
        let failed = |m: String| InterfaceReport {
            fault: Some(m),
            ..InterfaceReport::default()
        };
        let nic = NicOrder {
            port_id: q.port_id.clone(),
            network_id: q.network_id.clone(),
            fixed_ip: q.fixed_ip.clone(),
            security_groups: q.security_groups.clone(),
        };
        let who = (
            q.server_id.as_str(),
            q.project_id.as_str(),
            q.hostname.as_str(),
        );
        let (nic, made) = match rt.block_on(self.plug(who, &nic)) {
            Ok(x) => x,
            Err(e) => return failed(format!("attach port: {e}")),
        };
        let port_id = made.clone().or_else(|| q.port_id.clone());
        let spec = InterfaceSpec {
            tap: nic.tap.clone(),
            mac: nic.mac.clone(),
            mtu: nic.mtu,
        };
        let plugged = uuid(&q.server_id).and_then(|u| {
            self.compute
                .driver()
                .attach_interface(u, &spec)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = plugged {
            if let Some(p) = &made {
                self.drop_port(rt, &q.server_id, p);
            }
            return failed(format!(
                "Failed to attach network adapter device to {}: {e}",
                q.server_id
            ));
        }
        InterfaceReport {
            port_id,
            created: made.is_some(),
            fault: None,
        }
    }

    fn drop_port(&self, rt: &Handle, sid: &str, port: &str) {
        let r = rt.block_on(async {
            let own = self.token(sid, "network", false).await?;
            self.ctrl
                .call_as(
                    &own,
                    hyper::Method::DELETE,
                    &format!("/networking/v2.0/ports/{port}"),
                    None,
                    "port delete",
                )
                .await
        });
        if let Err(e) = r {
            tracing::warn!(%port, error = %e, "port of a failed attach not deleted");
        }
    }

    /// os-interface detach: the NIC unplugged here; ctrl lets the port go.
    fn detach(&self, q: &InterfaceOrder) -> InterfaceReport {
        let port = q.port_id.clone().unwrap_or_default();
        let spec = InterfaceSpec {
            tap: weft_hypervisor::tap_name(&port),
            mac: q.mac.clone().unwrap_or_default(),
            mtu: 1500,
        };
        let r = uuid(&q.server_id).and_then(|u| {
            self.compute
                .driver()
                .detach_interface(u, &spec)
                .map_err(|e| e.to_string())
        });
        InterfaceReport {
            port_id: Some(port),
            created: false,
            fault: r.err().map(|e| {
                format!(
                    "Failed to detach network adapter device from {}: {e}",
                    q.server_id
                )
            }),
        }
    }
}

/// The driver call a power action's task state (Nova's names) asks for.
fn power(d: &dyn weft_hypervisor::Driver, u: uuid::Uuid, task_state: &str) -> Result<(), String> {
    match task_state {
        "powering-on" => d.start(u),
        "powering-off" => d.stop(u),
        "rebooting" => d.reboot(u, RebootKind::Soft),
        "rebooting_hard" => d.reboot(u, RebootKind::Hard),
        "pausing" => d.pause(u),
        "unpausing" => d.unpause(u),
        "suspending" => d.suspend(u),
        "resuming" => d.resume(u),
        other => return Err(format!("no power action for task state {other}")),
    }
    .map_err(|e| e.to_string())
}
