//! Service errors, and the one place that turns them into HTTP responses.
//!
//! Bodies are what Glance (webob) answers with JSON:
//! `{"code": "404 Not Found", "title": "Not Found", "message": "..."}`;
//! openstacksdk shows the `message`. [`ImageError`] knows nothing of HTTP.

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use weft_store::StoreError;

/// Everything an image request can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Malformed or invalid input; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    /// No token, or one the identity service rejects.
    #[error("The request you have made requires authentication.")]
    Unauthenticated,
    /// Policy refused, or the attribute may not be written.
    #[error("{0}")]
    Forbidden(String),
    /// Absent, or not visible to the caller (Glance hides which).
    #[error("{0}")]
    NotFound(String),
    /// The image is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// Past the per-image size limit or the project's quota.
    #[error("{0}")]
    TooLarge(String),
    /// An upload whose body is not `application/octet-stream`.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// The image was deleted while its data was uploading.
    #[error("{0}")]
    Gone(String),
    /// A download's `Range` that cannot be served from data of `size` bytes.
    #[error("{message}")]
    RangeNotSatisfiable {
        /// What was wrong with it.
        message: String,
        /// The data's size, for `Content-Range: bytes */size`.
        size: u64,
    },
    /// The data is held by another replica's image store, not this one's.
    #[error("{0}")]
    Unavailable(String),
    /// The upload stopped before its end (client gone); never reaches a client.
    #[error("upload cut off: {0}")]
    CutOff(String),
    /// The data store failed (disk full, I/O error).
    #[error("image data store: {0}")]
    Io(String),
    /// Stored data is inconsistent (never caused by client input).
    #[error("internal: {0}")]
    Internal(String),
    /// The store failed, or other writers kept winning the commit race.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Results of the image service.
pub type ImageResult<T> = Result<T, ImageError>;

impl ImageError {
    /// `No image found with ID {id}` (Glance's words).
    pub fn no_image(id: &str) -> Self {
        ImageError::NotFound(format!("No image found with ID {id}"))
    }

    /// A policy denial of `action`.
    pub fn policy(action: &str) -> Self {
        ImageError::Forbidden(format!(
            "You are not authorized to complete {action} action."
        ))
    }
}

/// webob's JSON error body.
pub fn body(status: StatusCode, message: &str) -> serde_json::Value {
    let title = status.canonical_reason().unwrap_or("Error");
    serde_json::json!({
        "code": format!("{} {title}", status.as_u16()),
        "title": title,
        "message": message,
    })
}

impl IntoResponse for ImageError {
    fn into_response(self) -> Response {
        let status = match &self {
            ImageError::BadRequest(_) | ImageError::CutOff(_) => StatusCode::BAD_REQUEST,
            ImageError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ImageError::Forbidden(_) => StatusCode::FORBIDDEN,
            ImageError::NotFound(_) => StatusCode::NOT_FOUND,
            ImageError::Conflict(_) => StatusCode::CONFLICT,
            ImageError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ImageError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ImageError::Gone(_) => StatusCode::GONE,
            ImageError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ImageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ImageError::Store(StoreError::Conflict { .. }) => StatusCode::CONFLICT,
            ImageError::Io(_) | ImageError::Internal(_) | ImageError::Store(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let message = match &self {
            ImageError::Store(StoreError::Conflict { .. }) => {
                tracing::warn!(error = %self, "image write lost the commit race too often");
                "Concurrent updates kept conflicting with this request; retry it.".to_string()
            }
            ImageError::Io(_) | ImageError::Internal(_) | ImageError::Store(_) => {
                tracing::error!(error = %self, "image service failure");
                "The server has either erred or is incapable of performing the requested operation."
                    .to_string()
            }
            _ => self.to_string(),
        };
        let mut resp = (status, axum::Json(body(status, &message))).into_response();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The unread rest of an upload makes the connection unusable.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let ImageError::RangeNotSatisfiable { size, .. } = &self {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Keystone uri=\"/identity\""),
            );
        }
        resp
    }
}

/// The body for answers the framework gives on its own (405 from the
/// router, an extractor's rejection), for ctrl's `json_errors` layer.
pub fn framework_body(status: StatusCode, method: &Method, said: &str) -> serde_json::Value {
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("The method {method} is not allowed for this resource.")
        }
        _ if !said.is_empty() => said.to_string(),
        _ => status.canonical_reason().unwrap_or("Error").to_string(),
    };
    body(status, &message)
}
