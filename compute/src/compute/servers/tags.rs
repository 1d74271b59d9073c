//! Server tags (2.26): the tag API's writes and checks, and the list
//! filters `tags`, `tags-any`, `not-tags`, `not-tags-any`. Pure functions
//! over the compute [`State`].

use super::record::Server;
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::service::{Ctx, Env, Write};
use crate::compute::state::{Change, State};
use serde_json::json;

/// Nova's per-server limit.
pub const MAX_TAGS: usize = 50;

/// A tag: 1-60 characters, no `/` (it is a URL segment) and no `,` (the
/// list filters are comma-separated).
pub fn check(tag: &str) -> ComputeResult<()> {
    if tag.is_empty() || tag.chars().count() > 60 || tag.contains(['/', ',']) {
        return Err(ComputeError::BadRequest(format!(
            "Invalid input for field/attribute tag. Value: {tag}. Tags are 1 to 60 \
             characters without '/' or ','"
        )));
    }
    Ok(())
}

fn limit(n: usize) -> ComputeResult<()> {
    match n > MAX_TAGS {
        true => Err(ComputeError::BadRequest(format!(
            "The number of tags exceeded the per-server limit {MAX_TAGS}"
        ))),
        false => Ok(()),
    }
}

/// The server `ctx` may read (`index`/`show`) or change (the others)
/// under `os_compute_api:os-server-tags:{rule}`.
pub fn server<'a>(
    st: &'a State,
    env: &Env,
    ctx: &Ctx,
    id: &str,
    rule: &str,
) -> ComputeResult<&'a Server> {
    let s = super::get(st, ctx, id)?;
    env.authz.check(
        ctx,
        &format!("os_compute_api:os-server-tags:{rule}"),
        &json!({"project_id": s.project_id}),
    )?;
    Ok(s)
}

fn write(s: &Server, env: &Env, tags: Vec<String>) -> Write<Vec<String>> {
    let mut s = s.clone();
    s.tags = tags;
    s.updated = env.now.clone();
    Ok((s.tags.clone(), vec![Change::Server(Box::new(s))]))
}

/// `PUT /servers/{id}/tags`: the whole set replaced.
pub fn replace_all(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    id: &str,
    tags: &[String],
) -> Write<Vec<String>> {
    let s = server(st, env, ctx, id, "update_all")?;
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        check(t)?;
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    limit(out.len())?;
    write(s, env, out)
}

/// `PUT /servers/{id}/tags/{tag}`: whether the tag is new (201) or was
/// there (204).
pub fn add(st: &State, env: &mut Env, ctx: &Ctx, id: &str, tag: &str) -> Write<bool> {
    let s = server(st, env, ctx, id, "update")?;
    check(tag)?;
    if s.tags.iter().any(|t| t == tag) {
        return Ok((false, vec![]));
    }
    let mut tags = s.tags.clone();
    tags.push(tag.to_string());
    limit(tags.len())?;
    write(s, env, tags).map(|(_, c)| (true, c))
}

/// `DELETE /servers/{id}/tags/{tag}` (404 when it has no such tag).
pub fn remove(st: &State, env: &mut Env, ctx: &Ctx, id: &str, tag: &str) -> Write<()> {
    let s = server(st, env, ctx, id, "delete")?;
    if !s.tags.iter().any(|t| t == tag) {
        return Err(ComputeError::NotFound(format!(
            "Tag {tag} could not be found."
        )));
    }
    let tags = s.tags.iter().filter(|t| *t != tag).cloned().collect();
    write(s, env, tags).map(|(_, c)| ((), c))
}

/// `DELETE /servers/{id}/tags`.
pub fn remove_all(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<()> {
    let s = server(st, env, ctx, id, "delete_all")?;
    write(s, env, vec![]).map(|(_, c)| ((), c))
}

/// The list's tag filters (2.26), each a comma-separated set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagFilter {
    /// `tags`: every one of these.
    pub all: Option<Vec<String>>,
    /// `tags-any`: at least one.
    pub any: Option<Vec<String>>,
    /// `not-tags`: not every one of these.
    pub not_all: Option<Vec<String>>,
    /// `not-tags-any`: none of these.
    pub not_any: Option<Vec<String>>,
}

impl TagFilter {
    /// Takes `key=value` if it is one of the tag filters.
    pub fn take(&mut self, key: &str, value: &str) -> bool {
        let set = Some(value.split(',').map(str::to_string).collect());
        match key {
            "tags" => self.all = set,
            "tags-any" => self.any = set,
            "not-tags" => self.not_all = set,
            "not-tags-any" => self.not_any = set,
            _ => return false,
        }
        true
    }

    /// Whether `s` passes.
    pub fn matches(&self, s: &Server) -> bool {
        let has = |t: &String| s.tags.contains(t);
        self.all.as_ref().is_none_or(|w| w.iter().all(has))
            && self.any.as_ref().is_none_or(|w| w.iter().any(has))
            && self.not_all.as_ref().is_none_or(|w| !w.iter().all(has))
            && self.not_any.as_ref().is_none_or(|w| !w.iter().any(has))
    }
}
