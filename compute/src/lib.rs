#![forbid(unsafe_code)]
#![deny(missing_docs)]
//! weft-compute: images, placement, flavors, servers, scheduler and the
//! compute agent. Nothing here yet: the compute issues build it.
