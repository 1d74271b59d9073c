#![deny(missing_docs)]
//! weft-hypervisor: the compute driver the compute agent calls to run
//! guests on its host.
//!
//! ```text
//!  agent ── InstanceSpec ──> Driver ──> LibvirtDriver ── virt ──> libvirtd ──> QEMU (KVM | TCG)
//!                              │                                     │
//!                              └──> FakeDriver (in memory)           ├─ tapXXXXXXXX-XX ──> weft switch
//!                                                                    ├─ instances/<uuid>/disk (qcow2)
//!  disk: qemu-img overlays on cache/<image id>                       └─ instances/<uuid>/console.log
//! ```
//!
//! - [`InstanceSpec`] and [`domain_xml`] are plain data and a pure function:
//!   what weft asks libvirt for is tested without libvirt.
//! - [`disk`]: the image cache and qcow2 overlays (`qemu-img`).
//! - [`Driver`]: spawn, destroy, power operations, state, list (reconcile),
//!   console output, host resources. [`LibvirtDriver`] implements it over
//!   libvirt (`qemu:///system`); [`FakeDriver`] in memory, for scheduler
//!   tests with many hosts (never a default).
//! - [`probe_accel`]: KVM when /dev/kvm is really usable by QEMU, else TCG.
//!
//! Non-goals: no libvirt networks, bridges or nwfilters (the switch owns the
//! wire: libvirt only makes the tap); no image download (the agent fetches
//! with its token and hands the bytes to [`disk::ImageCache::install`]); no
//! live migration.

pub mod disk;
mod driver;
mod error;
mod fake;
mod host;
mod libvirt;
mod spec;
mod sys;
mod xml;

pub use driver::{Driver, PowerState, RebootKind};
pub use error::Error;
pub use fake::FakeDriver;
pub use host::{console_tail, host_resources, probe_accel, AccelProbe, HostResources};
pub use libvirt::{LibvirtConfig, LibvirtDriver};
pub use spec::{tap_name, Accel, ExtraDisk, InstanceSpec, InterfaceSpec};
pub use xml::{domain_xml, interface_xml, resized_xml, METADATA_NS};
