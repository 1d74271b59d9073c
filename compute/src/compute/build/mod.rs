//! Builds: the conductor's loop that takes servers from BUILD/scheduling to
//! a host (filter scheduler over placement candidates, claim with the
//! consumer generation, next host on a conflict) and on to the host's
//! driver; and the teardown of deleted servers. The decisions are pure
//! functions ([`scheduler`], [`plan`]); the loop around them does the I/O.
//!
//! ```text
//!  POST /servers ─► Server{building, scheduling} ─► kick
//!  loop: scheduling ─► candidates(VCPU, MEMORY_MB, DISK_GB) ─► filters ─► weighers
//!        ─► claim on the best host (409: the next) ─► {host, spawning} ─► Spawner::spawn
//!        ─► ACTIVE | ERROR(fault)          no host: ERROR "No valid host was found."
//!        deleting ─► Spawner::destroy ─► release the claim ─► record removed
//! ```

pub mod claims;
pub mod group_policy;
pub use super::model::host;
pub mod host_job;
pub mod ops;
pub mod plan;
pub mod reconcile;
pub mod remote;
pub mod scheduler;
pub mod trusts;

use super::error::{ComputeError, ComputeResult};
use super::servers::actions::Power;
use super::servers::interfaces::{Attach, Vif};
use super::servers::record::{vm_state, Fault, FlavorCopy, Server};
use super::state::{Change, State};
use super::{now_string, Compute};
use claims::{ClaimError, Claims};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// What a driver reports of a spawned server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spawned {
    /// Network name -> (address, version, MAC).
    pub addresses: BTreeMap<String, Vec<(String, u8, String)>>,
    /// Ports the build made (deleted with the server).
    pub created_ports: Vec<String>,
}

/// A domain's state as the host's driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Running guest code.
    Running,
    /// Defined, not running.
    Shutoff,
    /// Paused in memory.
    Paused,
    /// Saved to disk.
    Suspended,
    /// Not on the host.
    Absent,
}

/// A compute host's driver, as the build calls it: the in-process agent of
/// `weft serve` implements it over the hypervisor crate.
pub trait Spawner: Send + Sync {
    /// Image, disk, ports, domain: the server runs when this returns Ok.
    fn spawn(&self, server: &Server) -> Result<Spawned, String>;
    /// Domain, disk and the ports it made gone; idempotent.
    fn destroy(&self, server: &Server) -> Result<(), String>;
    /// A power action on the running server.
    fn power(&self, server: &Server, op: Power) -> Result<(), String>;
    /// The last `lines` lines of its serial console (all with `None`).
    fn console(&self, server: &Server, lines: Option<usize>) -> Result<String, String>;
    /// Every weft domain on the host: server id -> state (for reconcile).
    fn observe(&self) -> Result<BTreeMap<String, Observed>, String>;
    /// Destroys a domain no server owns any more (a leak after a restart).
    fn destroy_orphan(&self, server_id: &str) -> Result<(), String>;
    /// Recreates the root disk from `server.image_ref` (the new image) and
    /// boots it again, on the same ports and addresses.
    fn rebuild(&self, server: &Server) -> Result<(), String> {
        Err(unsupported(server, "rebuild"))
    }
    /// Redefines the server's domain with `to`'s vCPUs and RAM (and grows
    /// its root disk to `to.disk`), keeping its power state.
    fn resize(&self, server: &Server, to: &FlavorCopy) -> Result<(), String> {
        let _ = to;
        Err(unsupported(server, "resize"))
    }
    /// Uploads the server's root disk, as a standalone qcow2, to the
    /// (queued) image `image_id`.
    fn snapshot(&self, server: &Server, image_id: &str) -> Result<(), String> {
        let _ = image_id;
        Err(unsupported(server, "createImage"))
    }
    /// Binds (or makes) the port to this host and hot-plugs its NIC;
    /// `created` in the answer: the port was made for this attach.
    fn attach_interface(&self, server: &Server, req: &Attach) -> ComputeResult<(Vif, bool)> {
        let _ = req;
        Err(ComputeError::Conflict(unsupported(
            server,
            "attach_interface",
        )))
    }
    /// Unplugs the NIC of `port_id`, and unbinds the port (deletes it when
    /// it was made for the server).
    fn detach_interface(&self, server: &Server, port_id: &str) -> ComputeResult<()> {
        let _ = port_id;
        Err(ComputeError::Conflict(unsupported(
            server,
            "detach_interface",
        )))
    }
}

fn unsupported(s: &Server, what: &str) -> String {
    format!(
        "Cannot '{what}' instance {}: the driver of host {} does not support it",
        s.id,
        s.host.as_deref().unwrap_or("?")
    )
}

/// Builds run at once by default (Nova's `max_concurrent_builds`).
pub const MAX_CONCURRENT_BUILDS: usize = 10;

/// The build loop's state: who spawns on which host, what is in flight.
pub struct Builds {
    spawners: Mutex<BTreeMap<String, Arc<dyn Spawner>>>,
    in_flight: Mutex<BTreeSet<String>>,
    /// Build jobs running now, and how many may: every build holds a
    /// blocking thread and snapshots of the compute and placement state
    /// while it schedules; 500 creates at once on 1,000 fake hosts once
    /// took the RSS from 50 to 514 MiB (each write cloned the state that
    /// a build still held). The rest wait in `scheduling` for a slot.
    building: std::sync::atomic::AtomicUsize,
    max_building: std::sync::atomic::AtomicUsize,
    kick: tokio::sync::Notify,
    /// The control plane's release of a server's ports when no host of
    /// this process tears it down (see [`Builds::set_port_release`]).
    release_ports: Mutex<Option<PortRelease>>,
}

/// Releases a deleted server's ports (ctrl's networking, which this crate
/// does not link).
pub type PortRelease = Arc<dyn Fn(&Server) -> Result<(), String> + Send + Sync>;

impl Default for Builds {
    fn default() -> Self {
        Builds {
            spawners: Mutex::default(),
            in_flight: Mutex::default(),
            building: 0.into(),
            max_building: MAX_CONCURRENT_BUILDS.into(),
            kick: tokio::sync::Notify::new(),
            release_ports: Mutex::default(),
        }
    }
}

impl Builds {
    /// How many builds may run at once (at least one).
    pub fn set_max_concurrent(&self, n: usize) {
        self.max_building
            .store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes a build slot if one is free.
    fn take_slot(&self) -> bool {
        use std::sync::atomic::Ordering::{AcqRel, Relaxed};
        let max = self.max_building.load(Relaxed);
        self.building
            .fetch_update(AcqRel, Relaxed, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    fn free_slot(&self) {
        self.building
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Wakes the loop (a server was created or deleted).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// What releases the ports of a server deleted here without its host:
    /// one on a remote host that is down (Nova's local delete deallocates
    /// its network too), or one never placed. A host's own teardown
    /// releases them otherwise.
    pub fn set_port_release(&self, f: PortRelease) {
        *self.release_ports.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    /// Registers the driver of a host this process runs.
    pub fn add_spawner(&self, host: &str, s: Arc<dyn Spawner>) {
        self.spawners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string(), s);
    }

    /// The driver of `host` if this process runs it.
    pub fn spawner(&self, host: &str) -> Option<Arc<dyn Spawner>> {
        self.spawners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
    }

    /// Marks `id` in flight; false if it already was.
    fn start(&self, id: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string())
    }

    fn done(&self, id: &str) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// Writes `f`'s update of server `id` if it still exists and `still`
/// holds of it (another replica or request may have moved it on).
pub(crate) fn update(
    c: &Compute,
    id: &str,
    still: impl Fn(&Server) -> bool,
    f: impl Fn(&mut Server, &str),
) -> bool {
    c.write(|st: &State, env| match st.servers.get(id) {
        Some(s) if still(s) => {
            let mut s = s.clone();
            f(&mut s, &env.now);
            s.updated = env.now.clone();
            Ok((true, vec![Change::Server(Box::new(s))]))
        }
        _ => Ok((false, vec![])),
    })
    .unwrap_or(false)
}

pub(crate) fn fail(c: &Compute, id: &str, message: String) {
    update(
        c,
        id,
        |_| true,
        |s, now| {
            s.vm_state = vm_state::ERROR.into();
            s.task_state = None;
            s.power_state = 0;
            s.fault = Some(Fault {
                code: 500,
                message: message.clone(),
                created: now.to_string(),
            });
        },
    );
}

/// Schedules one server: the first host, best first, that takes the claim.
fn schedule(c: &Compute, claims: &dyn Claims, s: &Server) -> Result<String, String> {
    let want = plan::resources(&s.flavor);
    let free = claims.candidates(&want)?;
    // The snapshot is let go before the claims: a reader holding it makes
    // every other write clone the whole state.
    let (hosts, spec) = {
        let st = c.snapshot();
        let hosts = plan::host_states(&st, &free, &now_string());
        (hosts, plan::request_spec(&st, s))
    };
    let cands: BTreeSet<String> = free.into_keys().collect();
    let (order, rejected) = scheduler::select(&hosts, &cands, &spec, c.weights());
    for h in order {
        match claims.claim(&s.id, &h.provider, &want, &s.project_id, &s.user_id) {
            Ok(()) => return Ok(h.name.clone()),
            Err(ClaimError::Conflict(why)) => {
                tracing::info!(server = %s.id, host = %h.name, %why, "claim refused, next host");
            }
            Err(ClaimError::Failed(why)) => return Err(why),
        }
    }
    tracing::info!(server = %s.id, ?rejected, "no valid host");
    Err(format!(
        "No valid host was found. There are not enough hosts available. ({} hosts, {} filtered)",
        hosts.len(),
        rejected.len()
    ))
}

/// What became of a placement write.
enum Placed {
    /// The server is on the host, spawning.
    Yes,
    /// Deleted (or moved on) meanwhile.
    Gone,
    /// Another member of its group took the host first.
    GroupRace,
}

/// Records `host` on the scheduled server if it is still waiting and the
/// host still keeps its group's policy ([`group_policy`]), closing the
/// scheduling event and opening the build's, in one write.
fn place(c: &Compute, id: &str, host: &str) -> Placed {
    use super::instance_actions::{begin, event, finish, step};
    c.write(|st: &State, env| {
        let Some(s) = st
            .servers
            .get(id)
            .filter(|x| x.task_state.as_deref() == Some("scheduling"))
        else {
            return Ok((Placed::Gone, vec![]));
        };
        if !group_policy::allows(st, s, host) {
            return Ok((Placed::GroupRace, vec![]));
        }
        let mut s = s.clone();
        s.host = Some(host.to_string());
        // Nova records the zone the server landed in when none was asked for,
        // so OS-EXT-AZ:availability_zone names it from then on.
        if s.availability_zone.is_none() {
            s.availability_zone = st
                .hosts
                .get(host)
                .map(|h| crate::compute::aggregates::zone_of(st, h));
        }
        s.allocated = true;
        s.task_state = Some("spawning".into());
        s.updated = env.now.clone();
        let mut changes = vec![Change::Server(Box::new(s))];
        changes.extend(step(st, id, "create", |a| {
            finish(a, &env.now, event::SCHEDULE, Ok(()));
            begin(a, &env.now, event::BUILD, Some(host));
        }));
        Ok((Placed::Yes, changes))
    })
    .unwrap_or(Placed::GroupRace)
}

/// Notes an event of server `id`'s latest `action`, in its own write.
fn note(
    c: &Compute,
    id: &str,
    action: &str,
    f: impl Fn(&mut crate::compute::model::action::InstanceAction, &str),
) {
    let _ = c.write(|st: &State, env| {
        let now = env.now.clone();
        Ok((
            (),
            super::instance_actions::step(st, id, action, |a| f(a, &now))
                .into_iter()
                .collect(),
        ))
    });
}

/// Schedules, claims and places one server; `Ok(None)` if it went away.
/// A placement lost to another member of its group gives the claim back
/// and schedules again (a few times, then no valid host).
fn schedule_and_place(
    c: &Compute,
    claims: &dyn Claims,
    s: &Server,
) -> Result<Option<String>, String> {
    for _ in 0..10 {
        let host = schedule(c, claims, s)?;
        match place(c, &s.id, &host) {
            Placed::Yes => return Ok(Some(host)),
            Placed::Gone => {
                // Deleted meanwhile: give the claim back.
                let _ = claims.release(&s.id);
                return Ok(None);
            }
            Placed::GroupRace => {
                tracing::info!(server = %s.id, %host, "group policy lost a race; rescheduling");
                let _ = claims.release(&s.id);
            }
        }
    }
    Err("No valid host was found. The server group's policy could not be kept.".into())
}

/// Builds one server (blocking): schedule, claim, spawn, report, with
/// the create action's events as it goes.
fn build_one(c: &Compute, claims: &dyn Claims, s: Server) {
    use super::instance_actions::{begin, event, finish};
    note(c, &s.id, "create", |a, now| {
        begin(a, now, event::SCHEDULE, None)
    });
    let host = match schedule_and_place(c, claims, &s) {
        Ok(Some(h)) => h,
        Ok(None) => return,
        Err(why) => {
            note(c, &s.id, "create", |a, now| {
                finish(a, now, event::SCHEDULE, Err(&why))
            });
            return fail(c, &s.id, why);
        }
    };
    let Some(spawner) = c.builds().spawner(&host) else {
        // A remote host's agent (`weft agent`) finds it in its work list,
        // spawning on it, and reports back ([`finish_build`]).
        tracing::info!(server = %s.id, %host, "placed on a remote host; its agent builds it");
        return;
    };
    let mut s = s;
    s.host = Some(host);
    finish_build(c, &s.id, spawner.spawn(&s));
}

/// Records how a build on its host ended: ACTIVE with what the driver
/// reported, or ERROR with the fault; closes the create action's build
/// event. Only a server still spawning is moved (deleted meanwhile: no-op).
pub fn finish_build(c: &Compute, id: &str, outcome: Result<Spawned, String>) {
    use super::instance_actions::{event, finish};
    match outcome {
        Ok(done) => {
            update(
                c,
                id,
                |x| x.task_state.as_deref() == Some("spawning"),
                |x, now| {
                    x.vm_state = vm_state::ACTIVE.into();
                    x.task_state = None;
                    x.power_state = 1;
                    x.launched_at = Some(now.to_string());
                    x.addresses = done.addresses.clone();
                    x.created_ports = done.created_ports.clone();
                },
            );
            note(c, id, "create", |a, now| {
                finish(a, now, event::BUILD, Ok(()))
            });
        }
        Err(why) => {
            let why = format!("Build of instance {id} aborted: {why}");
            note(c, id, "create", |a, now| {
                finish(a, now, event::BUILD, Err(&why))
            });
            fail(c, id, why)
        }
    }
}

/// Whether `s` is on a host another process runs (a remote agent) that
/// is up: its agent tears it down and says so ([`finish_teardown`]). A
/// server on a host that is down is deleted here, as Nova's API deletes
/// locally when the compute service is down.
fn remote_and_up(c: &Compute, s: &Server) -> bool {
    let Some(host) = s.host.as_deref() else {
        return false;
    };
    if c.builds().spawner(host).is_some() {
        return false;
    }
    let now = now_string();
    c.snapshot().hosts.get(host).is_some_and(|h| h.is_up(&now))
}

/// Tears one deleted server down (blocking) and removes its record.
fn teardown(c: &Compute, claims: &dyn Claims, s: Server) {
    if let Some(sp) = s.host.as_deref().and_then(|h| c.builds().spawner(h)) {
        if let Err(why) = sp.destroy(&s) {
            tracing::warn!(server = %s.id, %why, "teardown failed; retried on the next round");
            return;
        }
    } else {
        let release = c
            .builds()
            .release_ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(release) = release {
            if let Err(why) = release(&s) {
                tracing::warn!(server = %s.id, %why, "ports not released; retried on the next round");
                return;
            }
        }
    }
    finish_teardown(c, claims, &s);
}

/// The control plane's half of a teardown, once the host's is done: the
/// allocations released, the record removed, the trust deleted. Blocking.
pub fn finish_teardown(c: &Compute, claims: &dyn Claims, s: &Server) {
    if let Err(why) = claims.release(&s.id) {
        tracing::warn!(server = %s.id, %why, "allocation not released; retried");
        return;
    }
    // A server deleted while resized: the old flavor's hold goes too.
    if let Some(m) = &s.migration {
        if let Err(why) = claims.release(&m.id) {
            tracing::warn!(server = %s.id, %why, "migration allocation not released; retried");
            return;
        }
    }
    let id = s.id.clone();
    let removed = c.write(move |st: &State, env| {
        Ok((
            (),
            match st.servers.get(&id) {
                Some(s) => crate::compute::servers::tombstone::remove(st, s, &env.now),
                None => vec![],
            },
        ))
    });
    if removed.is_ok() {
        trusts::release(c, s);
    }
}

enum Job {
    Build,
    Teardown,
    Power(Power),
    Op(ops::Job),
}

/// Carries out a power action recorded in the server's task state, on a
/// host this process runs (a remote host's agent reports to
/// [`host_job::finish_power`] instead).
fn power_one(c: &Compute, s: Server, op: Power) {
    let Some(sp) = s.host.as_deref().and_then(|h| c.builds().spawner(h)) else {
        return;
    };
    host_job::begin_event(c, &s, host_job::HostJob::Power(op));
    let r = sp.power(&s, op);
    host_job::finish_power(c, &s.id, op, r);
}

/// One round: every server waiting for a build or a teardown gets a task.
fn round(c: &Arc<Compute>, claims: &Arc<dyn Claims>, rt: &tokio::runtime::Handle) {
    let st = c.snapshot();
    for s in st.servers.values() {
        let job = match s.task_state.as_deref() {
            Some("scheduling") => Job::Build,
            // Its agent tears it down (no job here: one would end at once
            // and kick the loop again, round after round).
            Some("deleting") if remote_and_up(c, s) => continue,
            Some("deleting") => Job::Teardown,
            Some(t) if ops::Job::from_task_state(t).is_some() => {
                match ops::Job::from_task_state(t) {
                    // Only the process that runs the host acts on it.
                    Some(j)
                        if s.host
                            .as_deref()
                            .is_some_and(|h| c.builds().spawner(h).is_some()) =>
                    {
                        Job::Op(j)
                    }
                    _ => continue,
                }
            }
            Some(t) => match Power::from_task_state(t) {
                // Only the process that runs the host acts on it.
                Some(p)
                    if s.host
                        .as_deref()
                        .is_some_and(|h| c.builds().spawner(h).is_some()) =>
                {
                    Job::Power(p)
                }
                _ => continue,
            },
            None => continue,
        };
        let is_build = matches!(job, Job::Build);
        if is_build && !c.builds().take_slot() {
            continue;
        }
        // A deleted server whose build still runs waits for it to end.
        if !c.builds().start(&s.id) {
            if is_build {
                c.builds().free_slot();
            }
            continue;
        }
        let (c, claims, s) = (c.clone(), claims.clone(), s.clone());
        rt.spawn_blocking(move || {
            let id = s.id.clone();
            match job {
                Job::Build => {
                    build_one(&c, claims.as_ref(), s);
                    c.builds().free_slot();
                }
                Job::Teardown => teardown(&c, claims.as_ref(), s),
                Job::Power(p) => power_one(&c, s, p),
                Job::Op(j) => ops::run(&c, claims.as_ref(), s, j),
            }
            c.builds().done(&id);
            c.builds().kick();
        });
    }
}

/// The build loop: a round on every kick, and every 2 s (so work another
/// replica committed, or a teardown to retry, is picked up).
pub async fn run(c: Arc<Compute>, claims: Arc<dyn Claims>) {
    let rt = tokio::runtime::Handle::current();
    loop {
        {
            let (c, claims, rt2) = (c.clone(), claims.clone(), rt.clone());
            let _ = tokio::task::spawn_blocking(move || {
                let _ = c.catch_up();
                round(&c, &claims, &rt2)
            })
            .await;
        }
        tokio::select! {
            _ = c.builds().kick.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
    }
}
