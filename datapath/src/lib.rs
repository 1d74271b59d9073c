//! weft-datapath: the switch. Replaces an OVS integration bridge (br-int) plus the physical
//! bridges (br-phys) of a compute host, with the same local/global VLAN model as the Neutron
//! OVS agent.
//!
//! This crate's core is sans-IO: frames in, decisions out. It owns no sockets, threads or clocks
//! (time is an argument, `now_ns`). The I/O shells (taps, AF_PACKET rings, the switch daemon, the
//! control socket) live in `io/` and `daemon/` and drive the core through [`Worker`]. Every kind
//! of port (tap, AF_PACKET netdev, VXLAN endpoint) implements one [`io::Port`] trait (batched
//! rx/tx, its fd, counters), so the daemon drives them alike and wrappers work over any of them:
//! [`io::Capture`] (a pcap file per port, `capture = "/path.pcap"` in its config) and
//! [`io::FaultInjector`] (seeded drops, truncation and bit flips, for tests).
//!
//! ```text
//!  config.toml --SwitchConfig::load--> SwitchConfig --Snapshot::compile(cfg, prev)--> Snapshot
//!                                                                                       | swap_snapshot
//!                                                                                       v
//!  rx batch ----> Worker::process_batch(in_port, frames, now, out, results)      Datapath (Arc, shared)
//!                  |  FrameView::parse (once per frame; bad frame -> Drop{reason})  snapshot: ArcSwap
//!                  |  FlowKey (decision-relevant headers) -> flow cache (per worker)  MAC table
//!                  |      hit: reuse Decision (refresh learned source MAC)           counters
//!                  |      miss: pipeline stages:
//!                  |        classify (in_port -> local VLAN; uplink: segment -> local VLAN;
//!                  |                  VLAN 4095, tagged frames on VM ports, unknown segments: drop)
//!                  |        arp_spoof -> mac_spoof -> ip_spoof + DHCP guard (port_security ports)
//!                  |        dhcp (UDP 68 -> 67 from a port on an enable_dhcp subnet: Verdict::Dhcp,
//!                  |              the shell sends Worker::answer_dhcp's reply back out of it)
//!                  |        metadata (IPv4 to / ARP for 169.254.169.254: Verdict::Metadata; the
//!                  |              port's smoltcp stack answers HTTP, Worker::answer_metadata)
//!                  |        firewall: the decision only marks frames crossing a port with security
//!                  |                 groups; for those, per frame (cache hit or not): egress rules
//!                  |                 of the sender, ingress rules of each output, conntrack
//!                  |                 (`secgroup`, one table behind a mutex in the Datapath)
//!                  |        forward (learn src, look up dst per local VLAN) / flood (same VLAN,
//!                  |                 never the ingress port)
//!                  |        uplink translation as egress edits (flat: untagged, vlan: push VID,
//!                  |                 vxlan: push the local VLAN for the tunnel shell, see `tunnel`)
//!                  v
//!  out: Vec<Output { port, edit: Keep | StripTag | PushTag(vid) | RewriteVid(vid) }>
//!        --egress::apply_edit(edit, frame, vnet_hdr, buf)--> tx batch per port
//!        (offload::complete_checksum / gso_segment where the destination lacks the offload)
//! ```
//!
//! Using it from an I/O shell:
//!
//! ```
//! use std::sync::Arc;
//! use weft_datapath::{Datapath, Snapshot, SwitchConfig, Verdict};
//! let cfg = SwitchConfig::from_toml(r#"
//!     [[network]]
//!     name = "n1"
//!     type = "local"
//!     [[port]]
//!     name = "tap1"
//!     network = "n1"
//!     mac = "fa:16:3e:00:00:01"
//!     fixed_ips = ["10.0.0.1"]
//!     [[port]]
//!     name = "tap2"
//!     network = "n1"
//!     mac = "fa:16:3e:00:00:02"
//!     fixed_ips = ["10.0.0.2"]
//! "#, "host.toml").unwrap();
//! let dp = Arc::new(Datapath::new(Snapshot::compile(&cfg, None).unwrap()));
//! let mut worker = dp.worker();                 // one per packet thread
//! let snap = dp.snapshot();
//! let tap1 = snap.port_by_name("tap1").unwrap().no;
//! let frame = weft_datapath::build::FrameBuilder::arp(
//!     "fa:16:3e:00:00:01".parse().unwrap(), 1,
//!     "10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()).build();
//! let mut out = Vec::new();
//! let verdict = worker.process(tap1, &frame, 0, &mut out);
//! assert_eq!(verdict, Verdict::Forward);
//! assert_eq!(out.len(), 1); // flooded to tap2 only
//! ```
//!
//! Contract with the I/O shells:
//! - Frames passed to [`Worker::process`] / [`Worker::process_batch`] start at the Ethernet
//!   header: strip the virtio-net header first and keep it beside the frame; after the verdict,
//!   [`apply_edit`] writes the frame for each [`Output`] and moves `csum_start`/`hdr_len` of the
//!   header by the tag; use [`complete_checksum`] / [`gso_segment`] for destinations that cannot
//!   take CHECKSUM_PARTIAL / GSO frames (uplinks, AF_PACKET ports).
//! - `now_ns` is a monotonic clock in nanoseconds (e.g. CLOCK_MONOTONIC); call
//!   [`Datapath::age_macs`] about once a second.
//! - One [`Worker`] per packet thread (it owns a flow cache and counters); share the
//!   `Arc<Datapath>` with the control socket for [`Datapath::counters`], [`Datapath::mac_table`],
//!   [`Datapath::trace_description`] and reloads: `Snapshot::compile(&new_cfg,
//!   Some(&dp.snapshot()))`, [`Snapshot::diff`] to open/close ports, then
//!   [`Datapath::swap_snapshot`]. A failed compile/parse leaves the running snapshot untouched.
//! - The MAC table size is taken from the first snapshot's `[switch] mac_table_size`.
//!
//! Non-goals: no OpenFlow (wire protocol or tables an operator programs), no per-packet punts to
//! a controller, no kernel datapath, no L3 routing; no Geneve/GRE endpoint (VXLAN only), no
//! security-group enforcement yet.

#![deny(missing_docs)]

pub mod build;
pub mod config;
pub mod counters;
mod csum;
pub mod daemon;
mod datapath;
pub mod describe;
pub mod dhcp;
pub mod egress;
mod flow_key;
pub mod frame;
pub mod gro;
mod hash;
pub mod io;
pub mod mac;
mod mac_table;
pub mod metadata;
pub mod metrics;
pub mod offload;
mod pipeline;
pub mod secgroup;
pub mod snapshot;
pub mod tunnel;
pub mod verdict;

pub use config::{
    AddressPair, ConfigError, IoBackend, NetworkConfig, NetworkType, PhysnetConfig, PortConfig,
    PortKind, SubnetConfig, SwitchConfig, SwitchSettings, TunnelConfig,
};
pub use counters::{Counters, PortCounters, StageCounters};
pub use datapath::{Datapath, FrameResult, Worker};
pub use describe::{parse_description, DescribeError};
pub use egress::{apply_edit, EditError};
pub use frame::{FrameView, ParseError};
pub use mac::MacAddr;
pub use mac_table::MacEntry;
pub use offload::{complete_checksum, gso_segment, OffloadError, Segments, VirtioNetHdr};
pub use pipeline::TraceStep;
pub use snapshot::{NetworkInfo, PortInfo, PortRole, Snapshot, SnapshotDiff, TunnelInfo};
pub use verdict::{DropReason, EgressEdit, Output, PortNo, Stage, Verdict};
