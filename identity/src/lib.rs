// No unsafe code; `deny` rather than `forbid` only so that the policy tests'
// counting allocator (test-only) can opt out.
#![deny(unsafe_code)]
#![deny(missing_docs)]
//! weft-identity: a Keystone-v3-compatible identity service.
//!
//! ```text
//!  HTTP (api::router, axum)            weft serve mounts it under /identity
//!    │  X-Auth-Token ──► Identity::validate_token ──► AuthContext ──► policy::Enforcer
//!    ▼
//!  Identity (service.rs): writes = Tx over the snapshot (persistent maps) → Vec<Change>
//!    │                             → weft_store::Replica::write (commit on the revision read)
//!    │                    reads  = Arc<State> snapshot + index (no database on the hot path)
//!    ▼
//!  weft_store::Store (SQLite or PostgreSQL, service "identity")
//!     records: users, roles, ... and the Fernet keys (token.rs), shared by every replica
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
pub mod token;

pub use api::{router, Auth};
pub use error::IdentityError;
pub use service::{AuthContext, BootstrapReport, Identity, IdentityConfig, TrustInfo};
