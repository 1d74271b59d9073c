//! Service errors, and the one place that turns them into HTTP responses.
//!
//! Bodies are Neutron's: `{"NeutronError": {"type", "message", "detail"}}`.
//! [`NetError`] itself knows nothing of HTTP; only its `IntoResponse` impl
//! below picks status codes.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use weft_store::StoreError;

/// Everything a networking request can fail with. The variants carry the
/// Neutron exception name (`type`) so clients that switch on it keep working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// A field is missing, malformed or inconsistent; the message names it.
    #[error("{message}")]
    BadRequest {
        /// Neutron's exception name (`InvalidInput`, `BadRequest`).
        kind: &'static str,
        /// What is wrong, naming the field.
        message: String,
    },
    /// No token, or a token the identity service rejects.
    #[error("Authentication required")]
    Unauthenticated,
    /// Policy refused the action (or one of its attributes).
    #[error("{message}")]
    Forbidden {
        /// What was refused.
        message: String,
    },
    /// Absent, or belonging to another project (Neutron hides which).
    #[error("{kind} {id} could not be found.")]
    NotFound {
        /// The resource kind (`Network`, `Port`).
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request collides with existing state.
    #[error("{message}")]
    Conflict {
        /// Neutron's exception name (`NetworkInUse`, `IpAddressAlreadyAllocated`).
        kind: &'static str,
        /// What collides.
        message: String,
    },
    /// An `If-Match: revision_number=N` constraint the resource no longer meets.
    #[error("{message}")]
    PreconditionFailed {
        /// Neutron's "Constrained to N, but current revision is M".
        message: String,
    },
    /// A pool is exhausted: tenant segments (Neutron's NoNetworkAvailable),
    /// MACs on a network (MacAddressGenerationFailure).
    #[error("{message}")]
    Unavailable {
        /// Neutron's exception name (`NoNetworkAvailable`).
        kind: &'static str,
        /// What ran out.
        message: String,
    },
    /// Stored data is inconsistent (never caused by client input).
    #[error("internal: {0}")]
    Internal(String),
    /// The store failed, or other writers kept winning the commit race
    /// until the replica's retries ran out (`StoreError::Conflict`).
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl NetError {
    /// "Invalid input for {field}. Reason: {reason}." as Neutron words it.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        NetError::BadRequest {
            kind: "HTTPBadRequest",
            message: format!("Invalid input for {field}. Reason: {reason}."),
        }
    }

    /// A 400 about a resource kind.
    pub fn bad(kind: &'static str, message: impl Into<String>) -> Self {
        NetError::BadRequest {
            kind,
            message: message.into(),
        }
    }

    /// A 409 about a resource kind.
    pub fn conflict(kind: &'static str, message: impl Into<String>) -> Self {
        NetError::Conflict {
            kind,
            message: message.into(),
        }
    }

    /// A 404 for a resource kind and id.
    pub fn not_found(kind: &'static str, id: &str) -> Self {
        NetError::NotFound {
            kind,
            id: id.to_string(),
        }
    }
}

impl IntoResponse for NetError {
    fn into_response(self) -> Response {
        let (status, kind, message) = match &self {
            NetError::BadRequest { kind, message } => {
                (StatusCode::BAD_REQUEST, kind.to_string(), message.clone())
            }
            NetError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "NotAuthenticated".into(),
                self.to_string(),
            ),
            NetError::Forbidden { message } => (
                StatusCode::FORBIDDEN,
                "PolicyNotAuthorized".into(),
                message.clone(),
            ),
            NetError::NotFound { kind, .. } => (
                StatusCode::NOT_FOUND,
                format!("{}NotFound", kind.replace(' ', "")),
                self.to_string(),
            ),
            NetError::Conflict { kind, message } => {
                (StatusCode::CONFLICT, kind.to_string(), message.clone())
            }
            NetError::PreconditionFailed { message } => (
                StatusCode::PRECONDITION_FAILED,
                "HTTPPreconditionFailed".into(),
                message.clone(),
            ),
            NetError::Unavailable { kind, message } => (
                StatusCode::SERVICE_UNAVAILABLE,
                kind.to_string(),
                message.clone(),
            ),
            NetError::Store(StoreError::Conflict { .. }) => {
                tracing::warn!(error = %self, "networking write lost the commit race too often");
                (
                    StatusCode::CONFLICT,
                    "HTTPConflict".into(),
                    "Concurrent updates kept conflicting with this request; retry it.".into(),
                )
            }
            NetError::Store(_) | NetError::Internal(_) => {
                tracing::error!(error = %self, "networking storage failure");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "HTTPInternalServerError".into(),
                    "Request Failed: internal server error while processing your request.".into(),
                )
            }
        };
        (status, axum::Json(neutron_body(&kind, &message))).into_response()
    }
}

fn neutron_body(kind: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"NeutronError": {
        "type": kind,
        "message": message,
        "detail": "",
    }})
}

/// Neutron's body for answers the framework gives on its own (see
/// `server::json_errors`): a method the path does not take, a body over the
/// limit, an extractor's rejection. The type is webob's exception name.
pub fn framework_body(status: StatusCode, method: &Method, said: &str) -> serde_json::Value {
    let reason = status.canonical_reason().unwrap_or("Error");
    let (kind, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "HTTPMethodNotAllowed".to_string(),
            format!("The method {method} is not allowed for this resource."),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "HTTPRequestEntityTooLarge".to_string(),
            "Request is too large.".to_string(),
        ),
        _ => (
            format!("HTTP{}", reason.replace([' ', '-'], "")),
            if said.is_empty() { reason } else { said }.to_string(),
        ),
    };
    neutron_body(&kind, &message)
}

/// What the networking service's calls return.
pub type NetResult<T> = Result<T, NetError>;
