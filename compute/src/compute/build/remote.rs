//! Questions the API puts to a remote host's agent and waits for (console
//! output, os-interface): stored as a [`HostRequest`] that the agent finds
//! on its next poll (it polls every second) and answers through any ctrl
//! replica. The asker reads the answer from its own state, catching up with
//! the other replicas' commits while it waits, and removes the request.
//!
//! Why ask on demand rather than have the agent push console tails with
//! its heartbeat: a pushed tail is as old as the last push (10 s between
//! heartbeats) and costs a store write per server per push whether anyone
//! reads it or not; a request costs two writes only when someone asks, and
//! answers within about a poll interval.

use super::Compute;
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::model::host_request::{Answer, Ask, HostRequest};
use crate::compute::servers::record::Server;
use crate::compute::state::{Change, State};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the API waits for a host's answer (Nova's RPC timeout is 60 s;
/// an agent that is up answers within a poll or two).
pub const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `host` is run by another process (a remote agent).
pub fn is_remote(c: &Compute, host: &str) -> bool {
    c.builds().spawner(host).is_none()
}

/// Asks `s`'s host `ask` and waits for its answer (at most `timeout`).
/// A host that does not answer in time is a 409, as Nova's
/// "compute service unavailable".
pub async fn ask(
    c: &Arc<Compute>,
    s: &Server,
    ask: Ask,
    timeout: Duration,
) -> ComputeResult<Answer> {
    let host = s.host.clone().unwrap_or_default();
    let sid = s.id.clone();
    let id = c
        .write_async(move |_st: &State, env| {
            let r = HostRequest {
                id: env.ids.uuid(),
                server_id: sid.clone(),
                host: host.clone(),
                created: env.now.clone(),
                ask: ask.clone(),
                answer: None,
            };
            Ok((r.id.clone(), vec![Change::HostRequest(Box::new(r))]))
        })
        .await?;
    let t0 = Instant::now();
    let mut caught = Instant::now();
    let answer = loop {
        if let Some(a) = c
            .snapshot()
            .host_requests
            .get(&id)
            .and_then(|r| r.answer.clone())
        {
            break Some(a);
        }
        if t0.elapsed() >= timeout {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Another replica may have taken the answer.
        if caught.elapsed() >= Duration::from_millis(250) {
            let c2 = c.clone();
            let _ = tokio::task::spawn_blocking(move || c2.catch_up()).await;
            caught = Instant::now();
        }
    };
    let gone = id.clone();
    let _ = c
        .write_async(move |st: &State, _| {
            Ok((
                (),
                if st.host_requests.contains_key(&gone) {
                    vec![Change::DeleteHostRequest(gone.clone())]
                } else {
                    vec![]
                },
            ))
        })
        .await;
    answer.ok_or_else(|| {
        ComputeError::Conflict(format!(
            "Service is unavailable at this time. (the compute host of instance {} did not answer within {} s)",
            s.id,
            timeout.as_secs()
        ))
    })
}

/// Stores `answer` to request `id` if it is still asked of `host` (the
/// asker may have given up); false otherwise.
pub fn answer(c: &Compute, host: &str, id: &str, answer: Answer) -> ComputeResult<bool> {
    c.write(|st: &State, _| match st.host_requests.get(id) {
        Some(r) if r.host == host && r.answer.is_none() => {
            let mut r = r.clone();
            r.answer = Some(answer.clone());
            Ok((true, vec![Change::HostRequest(Box::new(r))]))
        }
        _ => Ok((false, vec![])),
    })
}

/// The unanswered requests to `host`.
pub fn pending(st: &State, host: &str) -> Vec<HostRequest> {
    st.host_requests
        .values()
        .filter(|r| r.host == host && r.answer.is_none())
        .cloned()
        .collect()
}

/// Removes `host`'s requests older than twice [`ASK_TIMEOUT`]: their
/// asker gave up, or died (a replica killed while it waited) before it
/// could remove them.
pub fn expire(c: &Compute, host: &str) {
    let old = |r: &HostRequest, now: &str| {
        let t = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok();
        match (t(&r.created), t(now)) {
            (Some(a), Some(n)) => (n - a).num_seconds() > 2 * ASK_TIMEOUT.as_secs() as i64,
            _ => true,
        }
    };
    let now = crate::compute::now_string();
    if !c
        .snapshot()
        .host_requests
        .values()
        .any(|r| r.host == host && old(r, &now))
    {
        return;
    }
    let _ = c.write(|st: &State, env| {
        let gone = st
            .host_requests
            .values()
            .filter(|r| r.host == host && old(r, &env.now))
            .map(|r| Change::DeleteHostRequest(r.id.clone()))
            .collect();
        Ok(((), gone))
    });
}
