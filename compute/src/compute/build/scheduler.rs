//! The filter scheduler, pure: placement says which hosts have room
//! (allocation candidates), then filters drop the hosts this server may not
//! go to, and weighers order the rest. Nova's shape, over plain data.

use std::collections::{BTreeMap, BTreeSet};

/// A host as the scheduler sees it: its record's facts plus what placement
/// reports free on its provider.
#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    /// Host name.
    pub name: String,
    /// Resource provider uuid.
    pub provider: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Enabled by the operator.
    pub enabled: bool,
    /// Heartbeating.
    pub up: bool,
    /// `QEMU`, `fake`...
    pub hypervisor_type: String,
    /// `x86_64`...
    pub arch: String,
    /// Free capacity (placement's capacity minus used), per class.
    pub free: BTreeMap<String, u64>,
    /// Metadata of the host aggregates it is in (key -> values), for the
    /// aggregate extra-specs filter.
    pub aggregate_metadata: BTreeMap<String, BTreeSet<String>>,
}

/// Server group policies (os-server-groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPolicy {
    /// All members on one host.
    Affinity,
    /// No two members on one host.
    AntiAffinity,
    /// Prefer one host.
    SoftAffinity,
    /// Prefer distinct hosts.
    SoftAntiAffinity,
}

/// What the server asks of its host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestSpec {
    /// Availability zone asked for.
    pub availability_zone: Option<String>,
    /// The one host an admin named (`zone:host`).
    pub force_host: Option<String>,
    /// Image properties `hw_architecture` / `architecture`.
    pub image_arch: Option<String>,
    /// Image property `img_hv_type` / `hypervisor_type`.
    pub image_hv_type: Option<String>,
    /// The server group's policy and the hosts its members are on.
    pub group: Option<(GroupPolicy, Vec<String>)>,
    /// The anti-affinity group's `max_server_per_host` (2.64; 1 if none).
    pub group_max_per_host: Option<u32>,
    /// Flavor extra specs scoped `aggregate_instance_extra_specs:` (the
    /// key after the scope must be in the host's aggregate metadata with
    /// that value).
    pub aggregate_specs: BTreeMap<String, String>,
}

/// Weigher multipliers (Nova's `ram_weight_multiplier` and
/// `cpu_weight_multiplier`): positive spreads, negative stacks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Free RAM weight.
    pub ram: f64,
    /// Free vCPU weight.
    pub cpu: f64,
    /// Soft (anti-)affinity weight.
    pub soft_group: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            ram: 1.0,
            cpu: 1.0,
            soft_group: 1.0,
        }
    }
}

/// Why a host was filtered out (for the fault message and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The host.
    pub host: String,
    /// The filter that dropped it.
    pub filter: &'static str,
}

fn filter(h: &HostState, spec: &RequestSpec) -> Option<&'static str> {
    if !h.enabled || !h.up {
        return Some("ComputeFilter");
    }
    if spec.force_host.as_ref().is_some_and(|f| *f != h.name) {
        return Some("ForcedHost");
    }
    if let Some(az) = &spec.availability_zone {
        if &h.availability_zone != az {
            return Some("AvailabilityZoneFilter");
        }
    }
    if spec.image_arch.as_ref().is_some_and(|a| a != &h.arch)
        || spec
            .image_hv_type
            .as_ref()
            .is_some_and(|t| !t.eq_ignore_ascii_case(&h.hypervisor_type))
    {
        return Some("ImagePropertiesFilter");
    }
    for (k, want) in &spec.aggregate_specs {
        if !h
            .aggregate_metadata
            .get(k)
            .is_some_and(|vals| vals.contains(want))
        {
            return Some("AggregateInstanceExtraSpecsFilter");
        }
    }
    match &spec.group {
        Some((GroupPolicy::Affinity, hosts)) if !hosts.is_empty() && !hosts.contains(&h.name) => {
            Some("ServerGroupAffinityFilter")
        }
        Some((GroupPolicy::AntiAffinity, hosts))
            if hosts.iter().filter(|x| **x == h.name).count() as u64
                >= u64::from(spec.group_max_per_host.unwrap_or(1)) =>
        {
            Some("ServerGroupAntiAffinityFilter")
        }
        _ => None,
    }
}

/// Min-max normalisation as Nova's weighers do: the best host of a weigher
/// gets 1, the worst 0 (all 0 when they are equal).
fn normalised(values: &[f64]) -> Vec<f64> {
    let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    values
        .iter()
        .map(|v| if hi > lo { (v - lo) / (hi - lo) } else { 0.0 })
        .collect()
}

/// The hosts, best first, that pass every filter; and the ones that did not.
/// Only hosts in `candidates` (providers placement found room on) are
/// considered. Ties keep name order, so the choice is deterministic.
pub fn select<'h>(
    hosts: &'h [HostState],
    candidates: &BTreeSet<String>,
    spec: &RequestSpec,
    w: Weights,
) -> (Vec<&'h HostState>, Vec<Rejected>) {
    let mut passed = Vec::new();
    let mut rejected = Vec::new();
    for h in hosts {
        if !candidates.contains(&h.provider) {
            rejected.push(Rejected {
                host: h.name.clone(),
                filter: "PlacementCandidates",
            });
            continue;
        }
        match filter(h, spec) {
            Some(f) => rejected.push(Rejected {
                host: h.name.clone(),
                filter: f,
            }),
            None => passed.push(h),
        }
    }
    let free = |h: &HostState, rc: &str| h.free.get(rc).copied().unwrap_or(0) as f64;
    let ram = normalised(
        &passed
            .iter()
            .map(|h| free(h, "MEMORY_MB"))
            .collect::<Vec<_>>(),
    );
    let cpu = normalised(&passed.iter().map(|h| free(h, "VCPU")).collect::<Vec<_>>());
    let group = passed
        .iter()
        .map(|h| match &spec.group {
            Some((GroupPolicy::SoftAffinity, on)) => f64::from(u8::from(on.contains(&h.name))),
            Some((GroupPolicy::SoftAntiAffinity, on)) => {
                -(on.iter().filter(|x| **x == h.name).count() as f64)
            }
            _ => 0.0,
        })
        .collect::<Vec<_>>();
    let group = normalised(&group);
    let mut scored: Vec<(f64, &HostState)> = passed
        .iter()
        .enumerate()
        .map(|(i, h)| {
            (
                w.ram * ram[i] + w.cpu * cpu[i] + w.soft_group * group[i],
                *h,
            )
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    (scored.into_iter().map(|(_, h)| h).collect(), rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, ram: u64, cpu: u64) -> HostState {
        HostState {
            name: name.into(),
            provider: format!("rp-{name}"),
            availability_zone: "nova".into(),
            enabled: true,
            up: true,
            hypervisor_type: "QEMU".into(),
            arch: "x86_64".into(),
            free: [("MEMORY_MB".to_string(), ram), ("VCPU".to_string(), cpu)].into(),
            aggregate_metadata: BTreeMap::new(),
        }
    }

    fn all(hosts: &[HostState]) -> BTreeSet<String> {
        hosts.iter().map(|h| h.provider.clone()).collect()
    }

    fn names(v: &[&HostState]) -> Vec<String> {
        v.iter().map(|h| h.name.clone()).collect()
    }

    #[test]
    fn spreads_by_free_ram_and_cpu() {
        let hosts = vec![host("a", 1000, 4), host("b", 8000, 8), host("c", 4000, 2)];
        let (order, rej) = select(
            &hosts,
            &all(&hosts),
            &RequestSpec::default(),
            Weights::default(),
        );
        assert!(rej.is_empty());
        assert_eq!(names(&order), ["b", "c", "a"]);
        // Stacking (negative multipliers) reverses it.
        let stack = Weights {
            ram: -1.0,
            cpu: -1.0,
            soft_group: 1.0,
        };
        let (order, _) = select(&hosts, &all(&hosts), &RequestSpec::default(), stack);
        assert_eq!(names(&order), ["a", "c", "b"]);
    }

    #[test]
    fn filters_drop_hosts_with_reasons() {
        let mut hosts = vec![
            host("a", 1000, 4),
            host("b", 8000, 8),
            host("c", 4000, 2),
            host("d", 9000, 9),
        ];
        hosts[0].enabled = false;
        hosts[1].availability_zone = "az2".into();
        hosts[2].arch = "aarch64".into();
        let mut cands = all(&hosts);
        cands.remove("rp-d");
        let spec = RequestSpec {
            image_arch: Some("x86_64".into()),
            ..Default::default()
        };
        let (order, rej) = select(&hosts, &cands, &spec, Weights::default());
        assert_eq!(names(&order), ["b"]);
        let why: Vec<(&str, &str)> = rej.iter().map(|r| (r.host.as_str(), r.filter)).collect();
        assert_eq!(
            why,
            [
                ("a", "ComputeFilter"),
                ("c", "ImagePropertiesFilter"),
                ("d", "PlacementCandidates")
            ]
        );
        let spec = RequestSpec {
            availability_zone: Some("nova".into()),
            ..Default::default()
        };
        let (order, _) = select(&hosts, &cands, &spec, Weights::default());
        assert_eq!(names(&order), ["c"]);
    }

    #[test]
    fn server_groups() {
        let hosts = vec![host("a", 1000, 4), host("b", 8000, 8), host("c", 4000, 2)];
        let c = all(&hosts);
        let spec = |p, on: &[&str]| RequestSpec {
            group: Some((p, on.iter().map(|s| s.to_string()).collect())),
            ..Default::default()
        };
        let (o, _) = select(
            &hosts,
            &c,
            &spec(GroupPolicy::Affinity, &["a"]),
            Weights::default(),
        );
        assert_eq!(names(&o), ["a"]);
        // The first member of an affinity group may go anywhere.
        let (o, _) = select(
            &hosts,
            &c,
            &spec(GroupPolicy::Affinity, &[]),
            Weights::default(),
        );
        assert_eq!(o.len(), 3);
        let (o, _) = select(
            &hosts,
            &c,
            &spec(GroupPolicy::AntiAffinity, &["b", "c"]),
            Weights::default(),
        );
        assert_eq!(names(&o), ["a"]);
        // max_server_per_host 2: a host with one member still takes one.
        let mut two = spec(GroupPolicy::AntiAffinity, &["b", "c", "c"]);
        two.group_max_per_host = Some(2);
        let (o, _) = select(&hosts, &c, &two, Weights::default());
        assert_eq!(names(&o), ["b", "a"]);
        let heavy = Weights {
            ram: 1.0,
            cpu: 1.0,
            soft_group: 10.0,
        };
        let (o, _) = select(&hosts, &c, &spec(GroupPolicy::SoftAffinity, &["a"]), heavy);
        assert_eq!(names(&o)[0], "a");
        let (o, _) = select(
            &hosts,
            &c,
            &spec(GroupPolicy::SoftAntiAffinity, &["b"]),
            heavy,
        );
        assert_ne!(names(&o)[0], "b");
    }

    #[test]
    fn aggregate_extra_specs() {
        let mut hosts = vec![host("a", 1000, 4), host("b", 8000, 8)];
        hosts[0]
            .aggregate_metadata
            .insert("ssd".into(), ["true".to_string()].into());
        let spec = RequestSpec {
            aggregate_specs: [("ssd".to_string(), "true".to_string())].into(),
            ..Default::default()
        };
        let (o, rej) = select(&hosts, &all(&hosts), &spec, Weights::default());
        assert_eq!(names(&o), ["a"]);
        assert_eq!(rej[0].filter, "AggregateInstanceExtraSpecsFilter");
    }
}
