//! The pure steps between records and the scheduler: what a server asks of
//! placement, how hosts look to the filters, and the request spec.

use super::scheduler::{HostState, RequestSpec};
use crate::compute::servers::record::{FlavorCopy, Server};
use crate::compute::state::State;
use std::collections::BTreeMap;

/// What a flavor takes from placement, as Nova asks: VCPU, MEMORY_MB and
/// DISK_GB (root + ephemeral + swap rounded up to GiB); zeros left out.
pub fn resources(f: &FlavorCopy) -> BTreeMap<String, u64> {
    let disk = f.disk + f.ephemeral + f.swap.div_ceil(1024);
    [
        ("VCPU", u64::from(f.vcpus)),
        ("MEMORY_MB", f.ram),
        ("DISK_GB", disk),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| (k.to_string(), n))
    .collect()
}

/// Every registered host as the filters see it; `free` is placement's
/// free capacity per root provider (hosts without room get none).
pub fn host_states(
    st: &State,
    free: &BTreeMap<String, BTreeMap<String, u64>>,
    now: &str,
) -> Vec<HostState> {
    st.hosts
        .values()
        .map(|h| HostState {
            name: h.name.clone(),
            provider: h.provider.clone(),
            availability_zone: crate::compute::aggregates::zone_of(st, h),
            enabled: h.enabled,
            up: h.is_up(now),
            hypervisor_type: h.hypervisor_type.clone(),
            arch: h.arch.clone(),
            free: free.get(&h.provider).cloned().unwrap_or_default(),
            aggregate_metadata: crate::compute::aggregates::metadata_of(st, &h.name),
        })
        .collect()
}

/// The request spec of a server: its zone, the aggregate extra specs of
/// its flavor, its server group's policy and members' hosts.
pub fn request_spec(st: &State, s: &Server) -> RequestSpec {
    let aggregate_specs = s
        .flavor
        .extra_specs
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("aggregate_instance_extra_specs:")
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    let (group, group_max_per_host) = match super::group_policy::of(st, s) {
        Some((p, hosts, max)) => (Some((p, hosts)), max),
        None => (None, None),
    };
    RequestSpec {
        availability_zone: s.availability_zone.clone(),
        force_host: s.forced_host.clone(),
        aggregate_specs,
        group,
        group_max_per_host,
        ..RequestSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavor_resources() {
        let f = FlavorCopy {
            id: "1".into(),
            name: "m".into(),
            vcpus: 2,
            ram: 512,
            disk: 1,
            ephemeral: 2,
            swap: 1500,
            extra_specs: BTreeMap::new(),
        };
        let r = resources(&f);
        assert_eq!(r["VCPU"], 2);
        assert_eq!(r["MEMORY_MB"], 512);
        assert_eq!(
            r["DISK_GB"], 5,
            "1 root + 2 ephemeral + 1500 MiB swap as 2 GiB"
        );
        let zero = FlavorCopy {
            disk: 0,
            ephemeral: 0,
            swap: 0,
            ..f
        };
        assert!(!resources(&zero).contains_key("DISK_GB"));
    }
}
