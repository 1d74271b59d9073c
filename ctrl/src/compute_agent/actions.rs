//! The remote host's side of actions on its running servers (see
//! `weft_proto::compute_actions`): what its work list carries besides
//! builds and deletes, and the reports that finish them. Every decision is
//! the build loop's own code ([`host_job`], [`ops`]): ctrl runs the
//! control plane's steps (resize claims, confirm, the port release of a
//! detach) and the finish code; the agent only runs the driver's call.
//!
//! Replica-safe: the work is derived from stored state (task states,
//! stored host requests) on each poll, and a report is accepted only for a
//! server still in the task state it names, so a late or repeated report
//! changes nothing.

use super::AgentApi;
use std::sync::Arc;
use weft_compute::compute::build::host_job::{self, HostJob};
use weft_compute::compute::build::ops::{self, HostWork, Job};
use weft_compute::compute::build::remote;
use weft_compute::compute::error::{ComputeError, ComputeResult};
use weft_compute::compute::model::host_request::{Answer, Ask};
use weft_compute::compute::servers::record::Server;
use weft_compute::compute::state::State;
use weft_proto::compute::ComputeWork;
use weft_proto::compute_actions::{
    ActionOrder, ActionReport, ConsoleOrder, ConsoleReport, HostAction, InterfaceOrder,
    InterfaceReport,
};

/// Task states in which the agent may ask for a step token for a server:
/// a build and a teardown (ports, image), a rebuild (the new image), a
/// snapshot (the upload, as the user).
pub const TOKEN_TASKS: &[&str] = &["spawning", "deleting", "rebuilding", "image_snapshot"];

/// Whether `id` has an os-interface request pending on `host` (its agent
/// then makes and binds the port, with step tokens).
fn interface_pending(st: &State, host: &str, id: &str) -> bool {
    remote::pending(st, host)
        .iter()
        .any(|r| r.server_id == id && !matches!(r.ask, Ask::Console { .. }))
}

/// The server a step token is asked for: on `host`, and in a task state of
/// [`TOKEN_TASKS`] or with an os-interface request pending (which has no
/// task state); else 404/409.
pub fn token_server(api: &AgentApi, host: &str, id: &str) -> ComputeResult<Server> {
    match super::on_host(api, host, id, TOKEN_TASKS) {
        Err(ComputeError::Conflict(why)) => {
            let st = api.compute.snapshot();
            match st.servers.get(id) {
                Some(s) if interface_pending(&st, host, id) => Ok(s.clone()),
                _ => Err(ComputeError::Conflict(why)),
            }
        }
        r => r,
    }
}

/// The driver's part of `s`'s job, as an order; `None` when the job has no
/// host part left (then it is finished here, with the same code).
fn order(api: &AgentApi, s: &Server) -> Option<ActionOrder> {
    let c = &api.compute;
    let job = HostJob::of(s)?;
    let task_state = s.task_state.clone()?;
    let action = match job {
        HostJob::Power(_) => HostAction::Power,
        HostJob::Op(Job::Confirm) => {
            ops::confirm(c, api.claims.as_ref(), s);
            return None;
        }
        HostJob::Op(j) => {
            if j == Job::Resize && !ops::resize_claim(c, api.claims.as_ref(), s) {
                return None;
            }
            match ops::host_work(s, j) {
                None => {
                    ops::host_done(c, api.claims.as_ref(), s, j, Ok(()));
                    return None;
                }
                Some(HostWork::Rebuild { stopped }) => HostAction::Rebuild {
                    image_id: s.image_ref.clone(),
                    root_gb: s.flavor.disk,
                    stopped,
                },
                Some(HostWork::Resize(to)) => HostAction::Resize {
                    vcpus: to.vcpus,
                    memory_mb: to.ram,
                    root_gb: to.disk,
                },
                Some(HostWork::Snapshot(image_id)) => HostAction::Snapshot { image_id },
            }
        }
    };
    host_job::begin_event(c, s, job);
    Some(ActionOrder {
        server_id: s.id.clone(),
        task_state,
        action,
    })
}

/// Adds the actions, console and interface requests of `host` to `work`.
pub fn add_work(api: &AgentApi, host: &str, work: &mut ComputeWork) {
    // The build loop acts on the hosts of this process itself.
    if !remote::is_remote(&api.compute, host) {
        return;
    }
    remote::expire(&api.compute, host);
    let st = api.compute.snapshot();
    for s in st
        .servers
        .values()
        .filter(|s| s.host.as_deref() == Some(host))
    {
        if let Some(o) = order(api, s) {
            work.actions.push(o);
        }
    }
    for r in remote::pending(&st, host) {
        let Some(s) = st.servers.get(&r.server_id) else {
            continue;
        };
        match r.ask {
            Ask::Console { lines } => work.consoles.push(ConsoleOrder {
                request_id: r.id.clone(),
                server_id: r.server_id.clone(),
                lines,
            }),
            Ask::Attach {
                port_id,
                net_id,
                fixed_ip,
            } => match api.services.group_ids(s) {
                Ok(groups) => work.interfaces.push(InterfaceOrder {
                    request_id: r.id.clone(),
                    server_id: s.id.clone(),
                    project_id: s.project_id.clone(),
                    hostname: s.hostname.clone(),
                    attach: true,
                    port_id,
                    network_id: net_id,
                    fixed_ip,
                    security_groups: groups,
                    mac: None,
                }),
                Err(message) => {
                    let _ = remote::answer(&api.compute, host, &r.id, Answer::Failed { message });
                }
            },
            Ask::Detach { port_id, mac } => work.interfaces.push(InterfaceOrder {
                request_id: r.id.clone(),
                server_id: s.id.clone(),
                project_id: s.project_id.clone(),
                hostname: s.hostname.clone(),
                attach: false,
                port_id: Some(port_id),
                network_id: None,
                fixed_ip: None,
                security_groups: None,
                mac: Some(mac),
            }),
        }
    }
}

/// `POST .../servers/{id}/acted`: the host's part of the action in
/// `task_state` ended; the build loop's finish code records it.
pub fn acted(api: &AgentApi, host: &str, id: &str, r: ActionReport) -> ComputeResult<()> {
    let s = super::on_host(api, host, id, &[r.task_state.as_str()])?;
    let job = HostJob::of(&s).ok_or_else(|| {
        ComputeError::Conflict(format!(
            "Instance {id} is in task_state {}, no action of a host.",
            r.task_state
        ))
    })?;
    let outcome = r.fault.map_or(Ok(()), Err);
    match job {
        HostJob::Power(p) => host_job::finish_power(&api.compute, id, p, outcome),
        HostJob::Op(j) => ops::host_done(&api.compute, api.claims.as_ref(), &s, j, outcome),
    }
    Ok(())
}

fn gone(id: &str) -> ComputeError {
    ComputeError::NotFound(format!("Request {id} could not be found."))
}

/// `POST .../consoles/{request}`: the console output asked for.
pub fn console_answered(
    api: &AgentApi,
    host: &str,
    request: &str,
    r: ConsoleReport,
) -> ComputeResult<()> {
    let answer = match (r.output, r.fault) {
        (_, Some(message)) => Answer::Failed { message },
        (Some(output), None) => Answer::Console { output },
        (None, None) => {
            return Err(ComputeError::BadRequest(
                "A console report needs output or fault.".into(),
            ))
        }
    };
    if remote::answer(&api.compute, host, request, answer)? {
        Ok(())
    } else {
        Err(gone(request))
    }
}

/// `POST .../interfaces/{request}`: the NIC plugged (the attachment is
/// recorded here, so it stands even if the asker gave up) or unplugged
/// (then the port is let go here, as the compute service).
pub fn interface_answered(
    api: &Arc<AgentApi>,
    host: &str,
    request: &str,
    r: InterfaceReport,
) -> ComputeResult<()> {
    use weft_compute::compute::servers::interfaces;
    let req = api
        .compute
        .snapshot()
        .host_requests
        .get(request)
        .filter(|q| q.host == host && q.answer.is_none())
        .cloned()
        .ok_or_else(|| gone(request))?;
    let s = api
        .compute
        .snapshot()
        .servers
        .get(&req.server_id)
        .cloned()
        .ok_or_else(|| gone(request))?;
    let answer = match (&req.ask, r.fault) {
        (_, Some(message)) => Answer::Failed { message },
        (Ask::Attach { .. }, None) => {
            let port = r.port_id.clone().ok_or_else(|| {
                ComputeError::BadRequest("An attach report needs port_id.".into())
            })?;
            let vif = crate::compute_host::vifs(&api.net, &s.id)
                .into_iter()
                .find(|v| v.port_id == port)
                .ok_or_else(|| {
                    ComputeError::Conflict(format!("Port {port} is not bound to {}.", s.id))
                })?;
            let created = r.created;
            api.compute
                .write(|st, env| interfaces::attached(st, env, &s.id, &vif, created))?;
            Answer::Attached {
                port_id: port,
                created,
            }
        }
        (Ask::Detach { port_id, mac }, None) => {
            api.services.detach(&s, port_id);
            api.compute
                .write(|st, env| interfaces::detached(st, env, &s.id, port_id, mac))?;
            Answer::Detached
        }
        (Ask::Console { .. }, None) => {
            return Err(ComputeError::BadRequest(format!(
                "Request {request} is a console request."
            )))
        }
    };
    remote::answer(&api.compute, host, request, answer)?;
    Ok(())
}
