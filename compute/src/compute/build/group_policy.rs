//! Server groups as the build sees them: the group's policy and its
//! members' hosts for the scheduler's filters and weighers, and the late
//! check at placement. Builds run in parallel, each scheduling on a
//! snapshot; two members of an anti-affinity group could both pick one
//! host. So the write that places a server re-checks the hard policies
//! against the members placed by then (the same store write, on the
//! revision it read), and a loser schedules again, as Nova's compute
//! host re-checks and reschedules.

use super::scheduler::GroupPolicy;
use crate::compute::servers::record::Server;
use crate::compute::state::State;

/// The policy of `s`'s group, its `max_server_per_host` rule, and the
/// hosts its other members are on (one entry per member).
pub fn of(st: &State, s: &Server) -> Option<(GroupPolicy, Vec<String>, Option<u32>)> {
    let g = st.groups.get(s.server_group.as_deref()?)?;
    let policy = match g.policy.as_str() {
        "affinity" => GroupPolicy::Affinity,
        "anti-affinity" => GroupPolicy::AntiAffinity,
        "soft-affinity" => GroupPolicy::SoftAffinity,
        "soft-anti-affinity" => GroupPolicy::SoftAntiAffinity,
        _ => return None,
    };
    let hosts = st
        .servers
        .values()
        .filter(|m| m.id != s.id && m.server_group.as_deref() == Some(g.id.as_str()))
        .filter_map(|m| m.host.clone())
        .collect();
    Some((policy, hosts, g.max_server_per_host))
}

/// Whether `host` keeps `s`'s group's hard policy, given the members
/// placed in `st` (soft policies are preferences: always true).
pub fn allows(st: &State, s: &Server, host: &str) -> bool {
    match of(st, s) {
        Some((GroupPolicy::Affinity, hosts, _)) => {
            hosts.is_empty() || hosts.iter().any(|h| h == host)
        }
        Some((GroupPolicy::AntiAffinity, hosts, max)) => {
            (hosts.iter().filter(|h| *h == host).count() as u64) < u64::from(max.unwrap_or(1))
        }
        _ => true,
    }
}
