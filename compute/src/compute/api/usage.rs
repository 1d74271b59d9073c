//! `GET /v2.1/os-simple-tenant-usage[/{tenant_id}]` (the computation in
//! [`crate::compute::usage`]): every project's usage (admin), or one
//! project's (its readers), from 2.40 with a next link when a page is full.

use super::{Caller, Mv, S};
use crate::compute::error::ComputeResult;
use crate::compute::service::Env;
use crate::compute::state::State as Records;
use crate::compute::usage::{self, UsageQuery};
use crate::compute::{Compute, Ctx};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The request's query and its usages, read at the request's `now`.
fn compute(
    c: &Compute,
    ctx: &Ctx,
    raw: &str,
    mv: (u32, u32),
    tenant: Option<&str>,
) -> ComputeResult<(UsageQuery, Vec<usage::TenantUsage>, Vec<usage::ServerUsage>)> {
    // The policy first (a member's list is a 403 whatever its dates).
    let (rule, target) = match tenant {
        Some(t) => ("show", json!({ "project_id": t })),
        None => ("list", json!({})),
    };
    c.read_env(|_, env: &Env| {
        env.authz.check(
            ctx,
            &format!("os_compute_api:os-simple-tenant-usage:{rule}"),
            &target,
        )
    })?;
    let now = chrono::Utc::now().naive_utc();
    let mut q = UsageQuery::parse(raw, mv, now)?;
    if tenant.is_some() {
        // One project's answer always lists its servers (Nova's show).
        q.detailed = true;
    }
    c.read_env(|st: &Records, _| {
        let all = st.servers.values().chain(st.deleted.values());
        let (tenants, page) = usage::usages(all, tenant, &q, now)?;
        Ok((q.clone(), tenants, page))
    })
}

/// The next page's link when this one is full (2.40).
fn next_link(
    base: &str,
    path: &str,
    raw: &str,
    q: &UsageQuery,
    page: &[usage::ServerUsage],
) -> Option<Value> {
    let last = page.last().filter(|_| page.len() == q.limit)?;
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        if k != "marker" {
            s.append_pair(&k, &v);
        }
    }
    s.append_pair("marker", &last.instance_id);
    Some(json!([{"rel": "next", "href": format!("{base}/v2.1/{path}?{}", s.finish())}]))
}

/// `GET /os-simple-tenant-usage`.
pub async fn list_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    RawQuery(raw): RawQuery,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let raw = raw.unwrap_or_default();
    let (q, tenants, page) = compute(&c, &ctx, &raw, mv, None)?;
    let mut out = json!({ "tenant_usages": tenants });
    if mv >= (2, 40) {
        if let Some(l) = next_link(&caller.base, "os-simple-tenant-usage", &raw, &q, &page) {
            out["tenant_usages_links"] = l;
        }
    }
    Ok(Json(out).into_response())
}

/// `GET /os-simple-tenant-usage/{tenant_id}`: `{}` when it used nothing.
pub async fn show_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(tenant): Path<String>,
    RawQuery(raw): RawQuery,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let raw = raw.unwrap_or_default();
    let (q, tenants, page) = compute(&c, &ctx, &raw, mv, Some(&tenant))?;
    let one = tenants
        .into_iter()
        .next()
        .map(|t| json!(t))
        .unwrap_or_else(|| json!({}));
    let mut out = json!({ "tenant_usage": one });
    if mv >= (2, 40) {
        let path = format!("os-simple-tenant-usage/{tenant}");
        if let Some(l) = next_link(&caller.base, &path, &raw, &q, &page) {
            out["tenant_usage_links"] = l;
        }
    }
    Ok(Json(out).into_response())
}
