//! Placement's errors, and the one place that turns them into HTTP.
//!
//! Bodies are Placement's (the API-WG errors guideline):
//! `{"errors": [{"status", "title", "detail", "code", "request_id"}]}`.
//! `code` is one of Placement's symbols (`placement.concurrent_update`, ...);
//! the API shell drops it below microversion 1.23, where Placement did not
//! send it yet, and fills in `request_id` (see `api::versioned`).

use super::microversion::{self, VersionError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use weft_store::StoreError;

/// Placement's error code symbols (placement/errors.py).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `placement.undefined_code`: every error without a more precise one.
    Undefined,
    /// A provider or consumer generation the caller sent is stale.
    ConcurrentUpdate,
    /// A provider name (or uuid) already taken.
    DuplicateName,
    /// Inventory removed or shrunk below what allocations use.
    InventoryInUse,
    /// A provider with allocations cannot be deleted.
    ProviderInUse,
    /// A provider with children cannot be deleted.
    CannotDeleteParent,
    /// A provider named in a query does not exist.
    ProviderNotFound,
    /// A query key given twice where only one is allowed.
    DuplicateKey,
    /// A query value that does not parse.
    BadValue,
    /// A query key required alongside another is missing.
    MissingValue,
}

impl Code {
    /// The symbol clients switch on.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Undefined => "placement.undefined_code",
            Code::ConcurrentUpdate => "placement.concurrent_update",
            Code::DuplicateName => "placement.duplicate_name",
            Code::InventoryInUse => "placement.inventory.inuse",
            Code::ProviderInUse => "placement.resource_provider.inuse",
            Code::CannotDeleteParent => "placement.resource_provider.cannot_delete_parent",
            Code::ProviderNotFound => "placement.resource_provider.not_found",
            Code::DuplicateKey => "placement.query.duplicate_key",
            Code::BadValue => "placement.query.bad_value",
            Code::MissingValue => "placement.query.missing_value",
        }
    }
}

/// Everything a placement request can fail with. Knows nothing of HTTP:
/// only the `IntoResponse` impl below picks status codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Malformed body or query, or a value the API refuses.
    #[error("{message}")]
    BadRequest {
        /// Placement's symbol for it.
        code: Code,
        /// What is wrong, as Placement words it.
        message: String,
    },
    /// No token, or one identity rejects.
    #[error("The request you have made requires authentication.")]
    Unauthenticated,
    /// Policy refuses the action.
    #[error("Policy does not allow {action} to be performed.")]
    Forbidden {
        /// The policy action, e.g. `placement:resource_providers:create`.
        action: String,
    },
    /// The thing addressed does not exist (or not at this microversion).
    #[error("{0}")]
    NotFound(String),
    /// The path exists but not with this method (at this microversion).
    #[error("The method specified is not allowed for this resource.")]
    MethodNotAllowed,
    /// The request collides with current state.
    #[error("{message}")]
    Conflict {
        /// Placement's symbol for it.
        code: Code,
        /// What collided.
        message: String,
    },
    /// The client accepts no JSON, the only thing placement answers in.
    #[error("Only application/json is provided")]
    NotAcceptable,
    /// A body in another media type than JSON (or none named).
    #[error("The media type {0} is not supported, use application/json")]
    UnsupportedMediaType(String),
    /// The requested microversion is malformed (400) or not served (406).
    #[error("{0}")]
    Version(#[from] VersionError),
    /// Stored data is inconsistent (never caused by client input).
    #[error("internal: {0}")]
    Internal(String),
    /// The store failed, or other writers kept winning the commit race.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Shorthand for service results.
pub type PlacementResult<T> = Result<T, PlacementError>;

impl PlacementError {
    /// A 400 with the default code.
    pub fn bad(message: impl Into<String>) -> Self {
        PlacementError::BadRequest {
            code: Code::Undefined,
            message: message.into(),
        }
    }

    /// A 400 about a query parameter's value.
    pub fn bad_query(message: impl Into<String>) -> Self {
        PlacementError::BadRequest {
            code: Code::BadValue,
            message: message.into(),
        }
    }

    /// A 409 with `code`.
    pub fn conflict(code: Code, message: impl Into<String>) -> Self {
        PlacementError::Conflict {
            code,
            message: message.into(),
        }
    }

    /// A stale generation (409 `placement.concurrent_update`).
    pub fn stale(message: impl Into<String>) -> Self {
        PlacementError::conflict(Code::ConcurrentUpdate, message)
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        PlacementError::NotFound(message.into())
    }

    /// A provider that is not there.
    pub fn no_provider(uuid: &str) -> Self {
        PlacementError::NotFound(format!("No resource provider with uuid {uuid} found"))
    }

    /// Whether this refusal might not hold on fresher state (another replica
    /// may have created the thing a moment ago); store failures never do.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, PlacementError::Store(_) | PlacementError::Internal(_))
    }
}

impl IntoResponse for PlacementError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            PlacementError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, *code),
            PlacementError::Unauthenticated => (StatusCode::UNAUTHORIZED, Code::Undefined),
            PlacementError::Forbidden { .. } => (StatusCode::FORBIDDEN, Code::Undefined),
            PlacementError::NotFound(_) => (StatusCode::NOT_FOUND, Code::Undefined),
            PlacementError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, Code::Undefined),
            PlacementError::NotAcceptable => (StatusCode::NOT_ACCEPTABLE, Code::Undefined),
            PlacementError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, Code::Undefined)
            }
            PlacementError::Conflict { code, .. } => (StatusCode::CONFLICT, *code),
            PlacementError::Version(VersionError::Malformed(_)) => {
                (StatusCode::BAD_REQUEST, Code::Undefined)
            }
            PlacementError::Version(VersionError::Unacceptable(_)) => {
                (StatusCode::NOT_ACCEPTABLE, Code::Undefined)
            }
            PlacementError::Store(StoreError::Conflict { .. }) => {
                tracing::warn!(error = %self, "placement write lost the commit race too often");
                (StatusCode::CONFLICT, Code::ConcurrentUpdate)
            }
            PlacementError::Store(_) | PlacementError::Internal(_) => {
                tracing::error!(error = %self, "placement storage failure");
                (StatusCode::INTERNAL_SERVER_ERROR, Code::Undefined)
            }
        };
        let detail = match &self {
            PlacementError::Version(e) => format!("Invalid microversion: {e}"),
            PlacementError::Store(StoreError::Conflict { .. }) => {
                "Concurrent updates kept conflicting with this request; retry it.".to_string()
            }
            PlacementError::Store(_) | PlacementError::Internal(_) => {
                "An internal error occurred; the server log has the details.".to_string()
            }
            e => e.to_string(),
        };
        let mut body = serde_json::json!({
            "status": status.as_u16(),
            "title": status.canonical_reason().unwrap_or("Error"),
            "detail": detail,
            "code": code.as_str(),
        });
        if let PlacementError::Version(VersionError::Unacceptable(_)) = &self {
            // No version was agreed: say which ones are, so clients negotiate.
            body["min_version"] = microversion::MIN.to_string().into();
            body["max_version"] = microversion::MAX.to_string().into();
        }
        let mut resp = (status, axum::Json(serde_json::json!({"errors": [body]}))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Keystone uri=\"/identity\""),
            );
        }
        resp
    }
}
