#![forbid(unsafe_code)]
#![deny(missing_docs)]
//! weft-ctrl: the API server, the networking service and the agent sync endpoints.
//! The agent itself is weft-agent; the wire types both speak are weft-proto.

pub mod compute;
pub mod compute_agent;
mod compute_agent_reconcile;
pub mod compute_host;
pub mod delegation;
pub mod image;
pub mod networking;
pub mod observe;
pub mod server;
pub mod zerocopy;
