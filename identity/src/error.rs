//! What can go wrong in the identity service, independent of HTTP.

/// Service errors; `api::error` maps each to an OpenStack-style HTTP body.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Bad input: names the field.
    #[error("{0}")]
    BadRequest(String),
    /// The request body is over the size limit (Keystone's `RequestTooLarge`):
    /// not a malformed request, so a client must not be told to fix its JSON.
    #[error("{0}")]
    TooLarge(String),
    /// Authentication failed (same answer for unknown user and wrong password).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this (policy, or a rule of the resource).
    #[error("{0}")]
    Forbidden(String),
    /// No such record (or the caller may not know it exists).
    #[error("Could not find {kind}: {id}.")]
    NotFound {
        /// The kind of record (`user`, `project`).
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// Two records would clash (a name taken in its domain, an assignment that exists).
    #[error("{0}")]
    Conflict(String),
    /// The store failed; `Conflict` when another writer kept winning.
    #[error(transparent)]
    Store(#[from] weft_store::StoreError),
    #[error("fernet keys in {path}: {message}")]
    /// The Fernet keys could not be read, made or written.
    Keys {
        /// Where they are.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The policy file or a rule in it does not load.
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    /// The stored state does not load.
    #[error(transparent)]
    Load(#[from] crate::state::LoadError),
    /// A file in the state directory could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl IdentityError {
    /// `NotFound` for a `kind` of record (`user`, `project`) and the id asked for.
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        IdentityError::NotFound {
            kind,
            id: id.into(),
        }
    }
    /// `BadRequest` with a message naming what is wrong.
    pub fn bad(msg: impl Into<String>) -> Self {
        IdentityError::BadRequest(msg.into())
    }
    /// `Conflict` with a message naming what clashes.
    pub fn conflict(msg: impl Into<String>) -> Self {
        IdentityError::Conflict(msg.into())
    }
}
