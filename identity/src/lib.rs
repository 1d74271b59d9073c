//! weft-identity: a Keystone-v3-compatible identity service.

pub mod policy;
