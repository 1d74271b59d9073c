//! The HTTP edge: error bodies, the token and JSON extractors, shared helpers.

use crate::error::IdentityError;
use crate::service::{AuthContext, Identity};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// An error on its way out as Keystone's `{"error": {"code", "title", "message"}}`.
#[derive(Debug)]
pub struct ApiError(pub IdentityError);

impl<E: Into<IdentityError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, title) = match &self.0 {
            IdentityError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad Request"),
            IdentityError::TooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
            }
            IdentityError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            IdentityError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            IdentityError::NotFound { .. } => (StatusCode::NOT_FOUND, "Not Found"),
            IdentityError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
            // Other replicas kept committing first: the client may retry.
            IdentityError::Store(weft_store::StoreError::Conflict { .. }) => {
                (StatusCode::CONFLICT, "Conflict")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        };
        let message = if code == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("identity: {}", self.0);
            "An unexpected error prevented the server from fulfilling your request.".to_string()
        } else {
            self.0.to_string()
        };
        let body = json!({"error": {"code": code.as_u16(), "title": title, "message": message}});
        let mut resp = (code, axum::Json(body)).into_response();
        if code == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                "WWW-Authenticate",
                HeaderValue::from_static("Keystone uri=\"/identity/v3\""),
            );
        }
        if code == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was never read, so the connection cannot
            // carry another request: say it will be closed.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The caller's validated `X-Auth-Token`; 401 when missing or invalid.
/// Usable by any service whose router state yields an `Arc<Identity>`.
pub struct Auth(pub AuthContext);

/// Left in a request's extensions by a server-wide authentication layer
/// (ctrl's `observe::authenticate`) that found the token invalid: the
/// extractor answers 401 without validating it again.
#[derive(Debug, Clone, Copy)]
pub struct TokenRejected;

impl<S> FromRequestParts<S> for Auth
where
    Arc<Identity>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The server's authentication layer validated the token already.
        // Taken, not cloned: one extractor per request reads it.
        if let Some(ctx) = parts.extensions.remove::<AuthContext>() {
            return Ok(Auth(ctx));
        }
        let identity = Arc::<Identity>::from_ref(state);
        if parts.extensions.get::<TokenRejected>().is_some() {
            return Err(identity
                .validate_token("")
                .err()
                .unwrap_or_else(|| {
                    IdentityError::Unauthorized(
                        "The request you have made requires authentication.".into(),
                    )
                })
                .into());
        }
        let token = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                IdentityError::Unauthorized(
                    "The request you have made requires authentication.".into(),
                )
            })?;
        let ctx = identity.validate_token(token.trim())?;
        // Behind ctrl's layer the binding was checked already (for every
        // API); alone, the identity API refuses any token bound to a service.
        identity.check_audience(&ctx, "identity")?;
        Ok(Auth(ctx))
    }
}

/// A JSON body whose errors are 400s naming the field (`user.name`, `role`).
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                // Over the body limit is a 413 (Keystone's RequestTooLarge), not a bad request.
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    IdentityError::TooLarge("Request is too large.".into())
                } else {
                    IdentityError::bad(format!("Could not read the request body: {e}"))
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(IdentityError::bad("Expecting to find a JSON body in the request.").into());
        }
        parse_json(&bytes).map(JsonBody)
    }
}

/// Deserialize, naming the failing field in the 400.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = if inner.is_syntax() || inner.is_eof() {
                format!("Malformed JSON in the request body: {inner}")
            } else if path == "." {
                format!("Invalid input: {inner}")
            } else {
                format!("Invalid input for field '{path}': {inner}")
            };
            Err(IdentityError::bad(msg).into())
        }
    }
}

pub async fn not_found() -> ApiError {
    ApiError(IdentityError::NotFound {
        kind: "resource",
        id: "the requested URL".into(),
    })
}

/// Run blocking work (bcrypt, store commits) off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IdentityError> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError),
        Err(e) => Err(ApiError(IdentityError::Io(std::io::Error::other(
            e.to_string(),
        )))),
    }
}

/// `{"<key>": [...], "links": {...}}`
pub fn list_body(id: &Identity, key: &str, path: &str, items: Vec<Value>) -> Value {
    json!({
        key: items,
        "links": {"self": format!("{}/{}", id.v3_url(), path), "previous": null, "next": null},
    })
}

pub fn self_link(id: &Identity, path: &str) -> Value {
    json!({"self": format!("{}/{}", id.v3_url(), path)})
}

/// Query flags like `?effective` and `?include_names=true`.
pub fn flag(q: &std::collections::HashMap<String, String>, key: &str) -> bool {
    match q.get(key) {
        None => false,
        Some(v) => !matches!(
            v.to_ascii_lowercase().as_str(),
            "0" | "false" | "no" | "off"
        ),
    }
}

/// An optional field set to JSON null vs absent, for PATCH bodies.
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

use serde::Deserialize;

pub const NO_CONTENT: StatusCode = StatusCode::NO_CONTENT;

/// `body[key]` as an object, or a 400 naming it.
pub fn section<'a>(body: &'a Value, key: &str) -> ApiResult<&'a Value> {
    match body.get(key) {
        Some(v) if v.is_object() => Ok(v),
        Some(_) => Err(IdentityError::bad(format!(
            "Invalid input for field '{key}': not an object."
        ))
        .into()),
        None => Err(IdentityError::bad(format!("Invalid input: missing field '{key}'.")).into()),
    }
}

/// Deserialize a section into a typed struct, naming a failing field as `prefix.path`.
pub fn typed<T: DeserializeOwned>(v: &Value, prefix: &str) -> ApiResult<T> {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Ok(t),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = if path == "." {
                prefix.to_string()
            } else {
                format!("{prefix}.{path}")
            };
            Err(IdentityError::bad(format!("Invalid input for field '{field}': {inner}")).into())
        }
    }
}

/// The keys of `obj` not in `known`: free-form attributes kept as given.
pub fn extras(obj: &Value, known: &[&str]) -> serde_json::Map<String, Value> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !known.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// A name: non-empty, at most 255 characters.
pub fn check_name(field: &str, name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.chars().count() > 255 {
        return Err(IdentityError::bad(format!(
            "Invalid input for field '{field}': must be 1 to 255 characters."
        ))
        .into());
    }
    Ok(())
}

/// Project and domain names: Keystone's resource schema allows 1 to 64
/// characters (users, roles and groups take 255, see [`check_name`]).
pub fn check_resource_name(field: &str, name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.chars().count() > 64 {
        return Err(IdentityError::bad(format!(
            "Invalid input for field '{field}': must be 1 to 64 characters."
        ))
        .into());
    }
    Ok(())
}

pub type JsonResult = ApiResult<axum::Json<Value>>;

pub fn created(v: Value) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    Ok((StatusCode::CREATED, axum::Json(v)))
}

/// The policy target of a list call, built the way Keystone's RBAC enforcer
/// builds it: `target` is what the caller's domain scope contributes, in the
/// shape the action's default rule reads; the query parameters the API takes
/// as `filters` go under `filter_attr` (rules read them as
/// `%(filter_attr.name)s`); any other query parameter is left out. At the
/// top level a query parameter could stand in for a path argument such as
/// `user_id` that a rule substitutes.
pub fn list_target(target: Option<Value>, q: &HashMap<String, String>, filters: &[&str]) -> Value {
    let mut t = json!({});
    if let Some(x) = target {
        t["target"] = x;
    }
    let f: serde_json::Map<String, Value> = filters
        .iter()
        .filter_map(|k| q.get(*k).map(|v| (k.to_string(), json!(v))))
        .collect();
    if !f.is_empty() {
        t["filter_attr"] = Value::Object(f);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Credentials, Enforcer, Mode};

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn store_conflicts_are_409_and_other_store_errors_500() {
        let conflict = weft_store::StoreError::Conflict {
            service: "identity".into(),
            expected: 3,
            actual: 4,
        };
        let r = ApiError(IdentityError::Store(conflict)).into_response();
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let down = weft_store::StoreError::Backend("connection refused".into());
        let r = ApiError(IdentityError::Store(down)).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn list_target_puts_filters_under_filter_attr_only() {
        let t = list_target(
            Some(json!({"domain_id": "d1"})),
            &q(&[
                ("domain_id", "d2"),
                ("name", "bob"),
                ("user_id", "u1"),
                ("target.domain_id", "d9"),
                ("scope.project.id", "p1"),
            ]),
            &["domain_id", "name", "scope.project.id"],
        );
        assert_eq!(
            t,
            json!({
                "target": {"domain_id": "d1"},
                "filter_attr": {"domain_id": "d2", "name": "bob", "scope.project.id": "p1"},
            })
        );
        // no filters given: no filter_attr key; no scope: no target key
        assert_eq!(
            list_target(None, &q(&[("limit", "3")]), &["name"]),
            json!({})
        );
    }

    #[test]
    fn a_query_parameter_cannot_satisfy_a_rule_on_a_path_argument() {
        let e = Enforcer::new(
            &[
                ("own", "user_id:%(user_id)s"),
                ("by_filter", "user_id:%(filter_attr.user.id)s"),
                ("in_domain", "domain_id:%(target.domain_id)s"),
            ],
            None,
            Mode::Enforce,
            None,
        )
        .unwrap();
        let c = Credentials {
            user_id: "u1".into(),
            domain_id: Some("d1".into()),
            ..Default::default()
        };
        let query = q(&[
            ("user_id", "u1"),
            ("user.id", "u1"),
            ("target.domain_id", "d1"),
        ]);
        let t = list_target(None, &query, &["user_id", "user.id", "target.domain_id"]);
        // at the top level `user_id=u1` would have matched `%(user_id)s`
        assert!(!e.check("own", &t, &c));
        assert!(!e.check("in_domain", &t, &c));
        // a rule may still read a filter where Keystone puts it
        assert!(e.check("by_filter", &t, &c));
        let t = list_target(Some(json!({"domain_id": "d1"})), &query, &[]);
        assert!(e.check("in_domain", &t, &c));
    }
}
