//! The metadata stage (what Neutron's metadata agent and its proxy do, done in the switch):
//! IPv4 to 169.254.169.254, or ARP for it, from a VM port that has metadata data
//! ([`Snapshot::metadata`]) stops here as [`Fwd::Metadata`]; the I/O shell hands it to
//! [`crate::Worker::answer_metadata`] and sends what comes back out of the same port. Decided
//! on the flow key alone (its for_metadata bit), so the flow cache holds it like any other
//! decision, and a frame to any other address pays one bit test here.

use super::{Decision, FlowKey, Fwd, Tracer};
use crate::flow_key::{L3_ARP, L3_V4};
use crate::snapshot::Snapshot;
use crate::verdict::{PortNo, Stage};

/// `Some(decision)` when the switch's metadata service takes this frame; None: next stage.
#[inline]
pub(crate) fn metadata<T: Tracer>(
    snap: &Snapshot,
    port: PortNo,
    k: &FlowKey,
    t: &mut T,
) -> Option<Decision> {
    if !k.for_metadata() || !matches!(k.l3_kind(), L3_V4 | L3_ARP) {
        return None;
    }
    let m = snap.metadata(port)?;
    trace!(
        t,
        Stage::Forward,
        "to 169.254.169.254: answered by the switch's metadata service for this port ({}), not forwarded",
        match &m.instance {
            Some(i) => format!("instance {}", i.uuid),
            None => "no instance: 404".into(),
        }
    );
    Some(Decision {
        drop: None,
        fwd: Fwd::Metadata,
        learn_slot: None,
        valid_until: u64::MAX,
        firewall: false,
        vlan: 0,
    })
}
