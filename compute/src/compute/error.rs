//! Service errors, and the one place that turns them into HTTP responses.
//!
//! Bodies are Nova's: `{"itemNotFound": {"code": 404, "message": "..."}}`,
//! the key naming the fault (`badRequest`, `forbidden`, `conflictingRequest`,
//! ...). python-novaclient and openstacksdk show the `message`.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use weft_store::StoreError;

/// Everything a compute API request can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComputeError {
    /// Malformed or invalid input; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    /// No token, or one the identity service rejects.
    #[error("The request you have made requires authentication.")]
    Unauthenticated,
    /// Policy refused.
    #[error("{0}")]
    Forbidden(String),
    /// Absent, or not visible to the caller.
    #[error("{0}")]
    NotFound(String),
    /// A name taken, or a state that forbids the action.
    #[error("{0}")]
    Conflict(String),
    /// An `OpenStack-API-Version` outside what this server offers.
    #[error("{0}")]
    NotAcceptable(String),
    /// Stored data is inconsistent (never caused by client input).
    #[error("internal: {0}")]
    Internal(String),
    /// The store failed, or other writers kept winning the commit race.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Results of the compute API service.
pub type ComputeResult<T> = Result<T, ComputeError>;

impl ComputeError {
    /// Nova's policy denial.
    pub fn policy(action: &str) -> Self {
        ComputeError::Forbidden(format!("Policy doesn't allow {action} to be performed."))
    }

    /// `Flavor {id} could not be found.`
    pub fn no_flavor(id: &str) -> Self {
        ComputeError::NotFound(format!("Flavor {id} could not be found."))
    }

    /// `Keypair {name} not found for user {user}`.
    pub fn no_keypair(name: &str, user: &str) -> Self {
        ComputeError::NotFound(format!("Keypair {name} not found for user {user}"))
    }

    fn status_and_key(&self) -> (StatusCode, &'static str) {
        match self {
            ComputeError::BadRequest(_) => (StatusCode::BAD_REQUEST, "badRequest"),
            ComputeError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ComputeError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ComputeError::NotFound(_) => (StatusCode::NOT_FOUND, "itemNotFound"),
            ComputeError::Conflict(_) => (StatusCode::CONFLICT, "conflictingRequest"),
            ComputeError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "notAcceptable"),
            ComputeError::Store(StoreError::Conflict { .. }) => {
                (StatusCode::CONFLICT, "conflictingRequest")
            }
            ComputeError::Internal(_) | ComputeError::Store(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "computeFault")
            }
        }
    }
}

/// Nova's fault body: `{key: {"code": N, "message": M}}`.
pub fn body(status: StatusCode, key: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ key: {"code": status.as_u16(), "message": message} })
}

impl IntoResponse for ComputeError {
    fn into_response(self) -> Response {
        let (status, key) = self.status_and_key();
        if status.is_server_error() {
            tracing::error!(error = %self, "compute API request failed");
        }
        let message = match &self {
            ComputeError::Internal(_) | ComputeError::Store(_) if status.is_server_error() => {
                "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach the Nova API log if possible.".to_string()
            }
            e => e.to_string(),
        };
        (status, axum::Json(body(status, key, &message))).into_response()
    }
}

/// The body for errors axum itself answers (no route, wrong method, a
/// body that is not JSON), in Nova's shape, for `json_errors` in ctrl.
pub fn framework_body(status: StatusCode, method: &Method, said: &str) -> serde_json::Value {
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("The method {method} is not allowed for this resource.")
        }
        _ if !said.is_empty() => said.to_string(),
        _ => status.canonical_reason().unwrap_or("Error").to_string(),
    };
    let key = match status {
        StatusCode::NOT_FOUND => "itemNotFound",
        StatusCode::METHOD_NOT_ALLOWED => "HTTPMethodNotAllowed",
        StatusCode::CONFLICT => "conflictingRequest",
        StatusCode::FORBIDDEN => "forbidden",
        s if s.is_server_error() => "computeFault",
        _ => "badRequest",
    };
    body(status, key, &message)
}
