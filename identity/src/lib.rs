//! weft-identity: a Keystone-v3-compatible identity service.
//!
//! ```text
//!  HTTP (api::router, axum)            weft serve mounts it under /identity
//!    │  X-Auth-Token ──► Identity::validate_token ──► AuthContext ──► policy::Enforcer
//!    ▼
//!  Identity (service.rs): writes = clone snapshot → change → one SQLite transaction → swap
//!    │                    reads  = Arc<State> snapshot + index (no database on the hot path)
//!    ▼
//!  Storage trait ── SqliteStore (WAL, identity.sqlite)      token.rs: Fernet keys + payload
//! ```
//!
//! Tokens carry no roles: roles are resolved from the in-memory state at every
//! validation, so removing an assignment takes effect at once.
//!
//! Non-goals: LDAP/federation/OAuth1, domain-specific drivers, credentials
//! (EC2), endpoint filtering, multi-factor rules.

pub mod api;
pub mod error;
pub mod model;
pub mod ops;
pub mod policy;
pub mod service;
pub mod state;
pub mod store;
pub mod token;

pub use api::{router, Auth};
pub use error::IdentityError;
pub use service::{AuthContext, BootstrapReport, Identity, IdentityConfig, TrustInfo};
