//! Service errors and the one place that turns them into HTTP responses.
//!
//! Bodies are Neutron's: `{"NeutronError": {"type", "message", "detail"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Everything a networking request can fail with. The variants carry the
/// Neutron exception name (`type`) so clients that switch on it keep working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// 400: a field is missing, malformed or inconsistent; the message names it.
    #[error("{message}")]
    BadRequest { kind: &'static str, message: String },
    /// 401: no token, or a token the identity service rejects.
    #[error("Authentication required")]
    Unauthenticated,
    /// 403: policy refused the action (or one of its attributes).
    #[error("{message}")]
    Forbidden { message: String },
    /// 404: absent, or belonging to another project (Neutron hides which).
    #[error("{kind} {id} could not be found.")]
    NotFound { kind: &'static str, id: String },
    /// 409: the request collides with existing state.
    #[error("{message}")]
    Conflict { kind: &'static str, message: String },
    /// 503: a tenant segment pool is exhausted (Neutron's NoNetworkAvailable).
    #[error("{message}")]
    Unavailable { kind: &'static str, message: String },
    /// 500: storage failed; never caused by client input.
    #[error("storage: {0}")]
    Storage(String),
}

impl NetError {
    /// "Invalid input for {field}. Reason: {reason}." as Neutron words it.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        NetError::BadRequest {
            kind: "HTTPBadRequest",
            message: format!("Invalid input for {field}. Reason: {reason}."),
        }
    }

    pub fn bad(kind: &'static str, message: impl Into<String>) -> Self {
        NetError::BadRequest {
            kind,
            message: message.into(),
        }
    }

    pub fn conflict(kind: &'static str, message: impl Into<String>) -> Self {
        NetError::Conflict {
            kind,
            message: message.into(),
        }
    }

    pub fn not_found(kind: &'static str, id: &str) -> Self {
        NetError::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            NetError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            NetError::Unauthenticated => StatusCode::UNAUTHORIZED,
            NetError::Forbidden { .. } => StatusCode::FORBIDDEN,
            NetError::NotFound { .. } => StatusCode::NOT_FOUND,
            NetError::Conflict { .. } => StatusCode::CONFLICT,
            NetError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            NetError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Neutron's exception class name for the `type` field.
    pub fn type_name(&self) -> String {
        match self {
            NetError::BadRequest { kind, .. } => kind.to_string(),
            NetError::Unauthenticated => "NotAuthenticated".into(),
            NetError::Forbidden { .. } => "PolicyNotAuthorized".into(),
            NetError::NotFound { kind, .. } => format!("{}NotFound", kind.replace(' ', "")),
            NetError::Conflict { kind, .. } | NetError::Unavailable { kind, .. } => {
                kind.to_string()
            }
            NetError::Storage(_) => "HTTPInternalServerError".into(),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"NeutronError": {
            "type": self.type_name(),
            "message": self.to_string(),
            "detail": "",
        }})
    }
}

impl From<rusqlite::Error> for NetError {
    fn from(e: rusqlite::Error) -> Self {
        NetError::Storage(e.to_string())
    }
}

impl IntoResponse for NetError {
    fn into_response(self) -> Response {
        if let NetError::Storage(msg) = &self {
            tracing::error!(error = %msg, "networking storage failure");
        }
        (self.status(), axum::Json(self.body())).into_response()
    }
}

pub type NetResult<T> = Result<T, NetError>;
