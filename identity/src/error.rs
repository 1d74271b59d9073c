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
    #[error("{0}")]
    Forbidden(String),
    #[error("Could not find {kind}: {id}.")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    /// The store failed; `Conflict` when another writer kept winning.
    #[error(transparent)]
    Store(#[from] weft_store::StoreError),
    #[error("fernet keys in {path}: {message}")]
    Keys {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Load(#[from] crate::state::LoadError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl IdentityError {
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        IdentityError::NotFound {
            kind,
            id: id.into(),
        }
    }
    pub fn bad(msg: impl Into<String>) -> Self {
        IdentityError::BadRequest(msg.into())
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        IdentityError::Conflict(msg.into())
    }
}
