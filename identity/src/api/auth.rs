//! Version discovery, tokens, and the `auth/*` discovery calls.

use super::resources::{domain_json, project_json};
use super::util::*;
use crate::error::IdentityError;
use crate::service::*;
use crate::state::{Scope, State};
use axum::extract::{Query, State as St};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

fn version_doc(id: &Identity) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/", id.v3_url())}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

/// `GET /identity`: the versions this server speaks (300, as Keystone).
pub async fn versions(St(id): St<Arc<Identity>>) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        axum::Json(json!({"versions": {"values": [version_doc(&id)]}})),
    )
        .into_response()
}

/// `GET /identity/v3`
pub async fn version(St(id): St<Arc<Identity>>) -> Response {
    axum::Json(json!({"version": version_doc(&id)})).into_response()
}

#[derive(Deserialize)]
pub struct AuthBody {
    auth: AuthSection,
}

#[derive(Deserialize)]
struct AuthSection {
    identity: IdentitySection,
    #[serde(default)]
    scope: Option<Value>,
}

#[derive(Deserialize)]
struct IdentitySection {
    methods: Vec<String>,
    password: Option<PasswordSection>,
    token: Option<TokenSection>,
    application_credential: Option<AppCredSection>,
}

#[derive(Deserialize)]
struct PasswordSection {
    user: PasswordUser,
}

#[derive(Deserialize)]
struct NameOrId {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct PasswordUser {
    id: Option<String>,
    name: Option<String>,
    domain: Option<NameOrId>,
    password: String,
}

#[derive(Deserialize)]
struct UserSection {
    id: Option<String>,
    name: Option<String>,
    domain: Option<NameOrId>,
}

#[derive(Deserialize)]
struct TokenSection {
    id: String,
}

#[derive(Deserialize)]
struct AppCredSection {
    id: Option<String>,
    name: Option<String>,
    secret: String,
    user: Option<UserSection>,
}

fn user_ref(id: Option<String>, name: Option<String>, domain: Option<NameOrId>) -> UserRef {
    let (domain_id, domain_name) = domain.map(|d| (d.id, d.name)).unwrap_or_default();
    UserRef {
        id,
        name,
        domain_id,
        domain_name,
    }
}

fn parse_scope(v: Option<Value>) -> Result<ScopeRequest, IdentityError> {
    let v = match v {
        None | Some(Value::Null) => return Ok(ScopeRequest::Unscoped),
        Some(Value::String(s)) if s == "unscoped" => return Ok(ScopeRequest::Unscoped),
        Some(v) => v,
    };
    let obj = v.as_object().ok_or_else(|| {
        IdentityError::bad("Invalid input for field 'auth.scope': not an object.")
    })?;
    let s = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).map(String::from);
    if let Some(p) = obj.get("project") {
        let dom = p.get("domain").cloned().unwrap_or(Value::Null);
        let sp = ScopeRequest::Project {
            id: s(p, "id"),
            name: s(p, "name"),
            domain_id: s(&dom, "id"),
            domain_name: s(&dom, "name"),
        };
        if s(p, "id").is_none()
            && (s(p, "name").is_none() || (s(&dom, "id").is_none() && s(&dom, "name").is_none()))
        {
            return Err(IdentityError::bad(
                "Invalid input for field 'auth.scope.project': give id, or name and domain.",
            ));
        }
        return Ok(sp);
    }
    if let Some(d) = obj.get("domain") {
        if s(d, "id").is_none() && s(d, "name").is_none() {
            return Err(IdentityError::bad(
                "Invalid input for field 'auth.scope.domain': give id or name.",
            ));
        }
        return Ok(ScopeRequest::Domain {
            id: s(d, "id"),
            name: s(d, "name"),
        });
    }
    if let Some(t) = obj.get("OS-TRUST:trust") {
        return s(t, "id").map(ScopeRequest::Trust).ok_or_else(|| {
            IdentityError::bad("Invalid input for field 'auth.scope.OS-TRUST:trust.id': missing.")
        });
    }
    if let Some(sys) = obj.get("system") {
        if sys.get("all").and_then(Value::as_bool) == Some(true) {
            return Ok(ScopeRequest::System);
        }
        return Err(IdentityError::bad(
            "Invalid input for field 'auth.scope.system': only {\"all\": true}.",
        ));
    }
    Err(IdentityError::bad(
        "Invalid input for field 'auth.scope': expected project, domain, system or OS-TRUST:trust.",
    ))
}

fn auth_request(body: AuthBody) -> Result<AuthRequest, IdentityError> {
    let idn = body.auth.identity;
    let mut req = AuthRequest {
        scope: parse_scope(body.auth.scope)?,
        ..Default::default()
    };
    if idn.methods.is_empty() {
        return Err(IdentityError::bad(
            "Invalid input for field 'auth.identity.methods': empty.",
        ));
    }
    for m in &idn.methods {
        match m.as_str() {
            "password" | "token" | "application_credential" => {}
            _ => {
                return Err(IdentityError::Unauthorized(format!(
                    "Attempted to authenticate with an unsupported method: {m}."
                )))
            }
        }
    }
    let has = |m: &str| idn.methods.iter().any(|x| x == m);
    if has("password") {
        let p = idn.password.ok_or_else(|| {
            IdentityError::bad("Invalid input for field 'auth.identity.password': missing.")
        })?;
        let u = p.user;
        if u.id.is_none()
            && (u.name.is_none()
                || u.domain
                    .as_ref()
                    .is_none_or(|d| d.id.is_none() && d.name.is_none()))
        {
            return Err(IdentityError::bad("Invalid input for field 'auth.identity.password.user': give id, or name and domain."));
        }
        req.password = Some(PasswordAuth {
            user: user_ref(u.id, u.name, u.domain),
            password: u.password,
        });
    }
    if has("token") {
        let t = idn.token.ok_or_else(|| {
            IdentityError::bad("Invalid input for field 'auth.identity.token': missing.")
        })?;
        req.token = Some(t.id);
    }
    if has("application_credential") {
        let a = idn.application_credential.ok_or_else(|| {
            IdentityError::bad(
                "Invalid input for field 'auth.identity.application_credential': missing.",
            )
        })?;
        if a.id.is_none() && (a.name.is_none() || a.user.is_none()) {
            return Err(IdentityError::bad(
                "Invalid input for field 'auth.identity.application_credential': give id, or name and user.",
            ));
        }
        req.app_cred = Some(AppCredAuth {
            id: a.id,
            name: a.name,
            user: a.user.map(|u| user_ref(u.id, u.name, u.domain)),
            secret: a.secret,
        });
    }
    Ok(req)
}

/// The service catalog as a token and `/auth/catalog` show it.
pub fn catalog_json(state: &State) -> Vec<Value> {
    state
        .services
        .values()
        .filter(|s| s.enabled)
        .map(|s| {
            let eps: Vec<Value> = state
                .endpoints
                .values()
                .filter(|e| e.service_id == s.id && e.enabled)
                .map(|e| json!({"id": e.id, "interface": e.interface, "region": e.region_id, "region_id": e.region_id, "url": e.url}))
                .collect();
            json!({"id": s.id, "type": s.service_type, "name": s.name.clone().unwrap_or_default(), "endpoints": eps})
        })
        .collect()
}

/// The `token` body for a context.
pub fn token_json(id: &Identity, ctx: &AuthContext, with_catalog: bool) -> Value {
    let state = id.snapshot();
    let mut t = json!({
        "methods": ctx.methods,
        "user": {
            "id": ctx.user_id,
            "name": ctx.user_name,
            "domain": {"id": ctx.user_domain_id, "name": ctx.user_domain_name},
            "password_expires_at": ctx.password_expires_at.map(fmt_time),
        },
        "audit_ids": ctx.audit_ids,
        "expires_at": fmt_time(ctx.expires_at),
        "issued_at": fmt_time(ctx.issued_at),
    });
    let roles: Vec<Value> = ctx
        .role_ids
        .iter()
        .zip(&ctx.roles)
        .map(|(i, n)| json!({"id": i, "name": n}))
        .collect();
    if let Some(p) = &ctx.project_id {
        t["project"] = json!({
            "id": p, "name": ctx.project_name,
            "domain": {"id": ctx.project_domain_id, "name": ctx.project_domain_name},
        });
        t["is_domain"] = json!(false);
        t["is_admin_project"] = json!(ctx.is_admin_project);
    }
    if let Some(d) = &ctx.domain_id {
        t["domain"] = json!({"id": d, "name": ctx.domain_name});
    }
    if ctx.system_scope {
        t["system"] = json!({"all": true});
    }
    let scoped = ctx.project_id.is_some() || ctx.domain_id.is_some() || ctx.system_scope;
    if scoped {
        t["roles"] = json!(roles);
        if with_catalog {
            t["catalog"] = json!(catalog_json(&state));
        }
    }
    if let Some(tr) = &ctx.trust {
        let rec = state.trusts.get(&tr.id);
        t["OS-TRUST:trust"] = json!({
            "id": tr.id,
            "impersonation": tr.impersonation,
            "trustee_user": {"id": tr.trustee_user_id},
            "trustor_user": {"id": tr.trustor_user_id},
            "remaining_uses": rec.and_then(|r| r.remaining_uses),
            "expires_at": rec.and_then(|r| r.expires_at).map(fmt_time),
        });
    }
    if let Some(acid) = &ctx.app_cred_id {
        let ac = state.app_creds.get(acid);
        t["application_credential"] = json!({
            "id": acid,
            "name": ac.map(|a| a.name.clone()),
            "restricted": ac.is_none_or(|a| !a.unrestricted),
        });
    }
    json!({"token": t})
}

fn subject_header(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(token) {
        h.insert("X-Subject-Token", v);
    }
    h
}

/// `POST /auth/tokens`
pub async fn issue(
    St(id): St<Arc<Identity>>,
    Query(q): Query<HashMap<String, String>>,
    JsonBody(body): JsonBody<AuthBody>,
) -> ApiResult<Response> {
    let req = auth_request(body)?;
    let id2 = id.clone();
    let (token, ctx) = blocking(move || id2.issue_token(&req)).await?;
    let body = token_json(&id, &ctx, !flag(&q, "nocatalog"));
    Ok((
        StatusCode::CREATED,
        subject_header(&token),
        axum::Json(body),
    )
        .into_response())
}

fn subject(id: &Identity, headers: &HeaderMap) -> ApiResult<(String, AuthContext)> {
    let t = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            IdentityError::bad("Invalid input for field 'X-Subject-Token': missing header.")
        })?
        .trim()
        .to_string();
    match id.validate_token(&t) {
        Ok(ctx) => Ok((t, ctx)),
        Err(IdentityError::Unauthorized(_)) => {
            Err(IdentityError::not_found("token", "the subject token").into())
        }
        Err(e) => Err(e.into()),
    }
}

fn token_target(ctx: &AuthContext) -> Value {
    json!({"target": {"token": {"user_id": ctx.user_id, "user": {"id": ctx.user_id, "domain": {"id": ctx.user_domain_id}}}}})
}

/// `GET /auth/tokens`
pub async fn validate(
    St(id): St<Arc<Identity>>,
    Auth(caller): Auth,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (t, subj) = subject(&id, &headers)?;
    id.authorize(&caller, "identity:validate_token", &token_target(&subj))?;
    let with_catalog = !flag(&q, "nocatalog");
    // The body of a token only changes with the state: render it once per revision.
    let body = id.rendered_token_body(&t, &subj, with_catalog, || {
        serde_json::to_vec(&token_json(&id, &subj, with_catalog))
            .unwrap_or_default()
            .into()
    });
    Ok((
        subject_header(&t),
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `HEAD /auth/tokens`
pub async fn check(
    St(id): St<Arc<Identity>>,
    Auth(caller): Auth,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (t, subj) = subject(&id, &headers)?;
    id.authorize(&caller, "identity:check_token", &token_target(&subj))?;
    Ok((StatusCode::OK, subject_header(&t)).into_response())
}

/// `DELETE /auth/tokens`
pub async fn revoke(
    St(id): St<Arc<Identity>>,
    Auth(caller): Auth,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let (t, subj) = subject(&id, &headers)?;
    id.authorize(&caller, "identity:revoke_token", &token_target(&subj))?;
    blocking(move || id.revoke_token(&t)).await?;
    Ok(NO_CONTENT)
}

/// `GET /auth/projects`
pub async fn auth_projects(St(id): St<Arc<Identity>>, Auth(ctx): Auth) -> JsonResult {
    let state = id.snapshot();
    let items = state
        .projects_of(&ctx.user_id)
        .iter()
        .filter_map(|p| state.projects.get(p))
        .map(|p| project_json(&id, p))
        .collect();
    Ok(axum::Json(list_body(
        &id,
        "projects",
        "auth/projects",
        items,
    )))
}

/// `GET /auth/domains`
pub async fn auth_domains(St(id): St<Arc<Identity>>, Auth(ctx): Auth) -> JsonResult {
    let state = id.snapshot();
    let items = state
        .domains
        .values()
        .filter(|d| {
            d.enabled
                && !state
                    .effective_role_ids(&ctx.user_id, &Scope::Domain(d.id.clone()))
                    .is_empty()
        })
        .map(|d| domain_json(&id, d))
        .collect();
    Ok(axum::Json(list_body(&id, "domains", "auth/domains", items)))
}

/// `GET /auth/system`
pub async fn auth_system(St(id): St<Arc<Identity>>, Auth(ctx): Auth) -> JsonResult {
    let state = id.snapshot();
    let has = !state
        .effective_role_ids(&ctx.user_id, &Scope::System)
        .is_empty();
    let sys: Vec<Value> = if has {
        vec![json!({"all": true})]
    } else {
        vec![]
    };
    Ok(axum::Json(
        json!({"system": sys, "links": self_link(&id, "auth/system")}),
    ))
}

/// `GET /auth/catalog`
pub async fn auth_catalog(St(id): St<Arc<Identity>>, Auth(ctx): Auth) -> JsonResult {
    if ctx.project_id.is_none() && ctx.domain_id.is_none() && !ctx.system_scope {
        return Err(IdentityError::Forbidden("The catalog needs a scoped token.".into()).into());
    }
    Ok(axum::Json(
        json!({"catalog": catalog_json(&id.snapshot()), "links": self_link(&id, "auth/catalog")}),
    ))
}
