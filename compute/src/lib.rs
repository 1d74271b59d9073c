// Denied, not forbidden: `image::mapped` alone maps image files (mmap is
// unsafe in Rust's terms) and allows it for that one call.
#![deny(unsafe_code)]
#![deny(missing_docs)]
//! weft-compute: images, placement, flavors, servers, scheduler and the
//! compute agent.
//!
//! - [`image`]: the OpenStack Image service API v2 (Glance), served by
//!   `weft serve` under `/image`.
//! - [`placement`]: the OpenStack Placement API (resource providers,
//!   inventories, traits, aggregates, allocations, allocation candidates),
//!   served by `weft serve` under `/placement`.
//! - [`compute`]: the Compute API v2.1 (Nova) with microversions to 2.80:
//!   flavors and key pairs so far, served under `/compute/v2.1`.

pub mod compute;
pub mod image;
pub mod placement;
