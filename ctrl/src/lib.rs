#![forbid(unsafe_code)]
//! weft-ctrl: the API server, the networking service and the agent sync.

pub mod agent;
pub mod networking;
pub mod observe;
pub mod server;
