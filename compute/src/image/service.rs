//! The image service: pure functions from (state, env, caller, request) to
//! (result, changes). No I/O: the replica commits the changes, the HTTP
//! shell renders the result and moves the data. Time and ids come in `Env`.

use super::body::{check_writable, property_value, CreateReq, Op, Patch};
use super::error::{ImageError, ImageResult};
use super::model::*;
use super::policy::Authz;
use super::state::{Change, State};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

pub use super::policy::Ctx;

/// Where new image ids come from (random in the server, fixed in tests).
pub trait Ids: Send {
    /// A fresh UUID.
    fn uuid(&mut self) -> String;
}

/// Random v4 UUIDs.
pub struct RandomIds;

impl Ids for RandomIds {
    fn uuid(&mut self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

/// How much data an image, and a project's images together, may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Glance's `image_size_cap`: bytes one image may hold (default 1 TiB).
    pub image_size_cap: u64,
    /// Bytes a project's images may hold together (Glance's
    /// `image_size_total`, in bytes); `None` is unlimited.
    pub project_quota: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            image_size_cap: 1 << 40,
            project_quota: None,
        }
    }
}

/// Everything a write needs besides the state: clock, ids, policy, limits.
pub struct Env<'a> {
    /// The time of the write, as records show it.
    pub now: String,
    /// Where new ids come from.
    pub ids: &'a mut dyn Ids,
    /// The policy.
    pub authz: &'a dyn Authz,
    /// Size cap and quota.
    pub limits: Limits,
    /// This replica's id: which uploads are its own.
    pub replica: &'a str,
}

/// A write's result and the changes to commit.
pub type Write<T> = ImageResult<(T, Vec<Change>)>;

// ---------------------------------------------------------------- visibility

/// Whether `ctx` may see `i` at all (Glance's DB-layer visibility): an admin
/// sees everything; others see their own, public and community images, and
/// shared ones they are a member of. Anything else is a 404, never a 403.
pub fn visible(st: &State, ctx: &Ctx, i: &Image) -> bool {
    if ctx.is_admin || ctx.owns(i) {
        return true;
    }
    match i.visibility {
        Visibility::Public | Visibility::Community => true,
        Visibility::Private => false,
        Visibility::Shared => ctx
            .project_id
            .as_deref()
            .is_some_and(|p| st.member(&i.id, p).is_some()),
    }
}

/// The policy target of an action on `i` by `ctx`.
pub fn target(st: &State, ctx: &Ctx, i: &Image) -> Value {
    let member = ctx
        .project_id
        .as_deref()
        .filter(|p| st.member(&i.id, p).is_some());
    json!({
        "project_id": i.owner,
        "owner": i.owner,
        "visibility": i.visibility.as_str(),
        "member_id": member,
    })
}

/// The image `id` if `ctx` may see it, else Glance's 404.
pub fn get_image<'s>(st: &'s State, ctx: &Ctx, id: &str) -> ImageResult<&'s Image> {
    st.images
        .get(id)
        .filter(|i| visible(st, ctx, i))
        .ok_or_else(|| ImageError::no_image(id))
}

/// The image `id`, visible to `ctx` and with `action` allowed by policy.
fn authorized<'s>(
    st: &'s State,
    env: &Env,
    ctx: &Ctx,
    id: &str,
    action: &str,
) -> ImageResult<&'s Image> {
    let i = get_image(st, ctx, id)?;
    env.authz.check(ctx, action, &target(st, ctx, i))?;
    Ok(i)
}

// ---------------------------------------------------------------- validation

fn check_format(field: &str, v: &Option<String>, allowed: &[&str]) -> ImageResult<()> {
    match v {
        Some(f) if !allowed.contains(&f.as_str()) => Err(ImageError::BadRequest(format!(
            "Invalid value '{f}' for '{field}': must be one of {}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

fn check_name(name: &Option<String>) -> ImageResult<()> {
    match name {
        Some(n) if n.chars().count() > 255 => Err(ImageError::BadRequest(
            "Provided object does not match schema 'image': name is longer than 255 characters"
                .into(),
        )),
        _ => Ok(()),
    }
}

fn check_tags(tags: &BTreeSet<String>) -> ImageResult<()> {
    match tags
        .iter()
        .find(|t| t.is_empty() || t.chars().count() > 255)
    {
        Some(t) => Err(ImageError::BadRequest(format!(
            "Invalid tag '{t}': a tag is 1 to 255 characters."
        ))),
        None => Ok(()),
    }
}

/// Visibility changes need their own rules: only an admin publishes, only
/// an owner (or admin) makes an image community.
fn check_visibility(env: &Env, ctx: &Ctx, v: Visibility, target: &Value) -> ImageResult<()> {
    match v {
        Visibility::Public => env.authz.check(ctx, "publicize_image", target),
        Visibility::Community => env.authz.check(ctx, "communitize_image", target),
        _ => Ok(()),
    }
}

fn parse_visibility(s: &str) -> ImageResult<Visibility> {
    Visibility::parse(s).ok_or_else(|| {
        ImageError::BadRequest(format!(
            "Invalid value '{s}' for 'visibility': must be one of public, private, shared, community"
        ))
    })
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

// ---------------------------------------------------------------- images

/// `POST /v2/images`.
pub fn create_image(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    req: &CreateReq,
    properties: BTreeMap<String, String>,
) -> Write<Image> {
    let owner = match &req.owner {
        Some(o) if !ctx.is_admin && ctx.project_id.as_deref() != Some(o.as_str()) => {
            return Err(ImageError::Forbidden(format!(
                "You are not permitted to create images owned by '{o}'."
            )))
        }
        Some(o) => Some(o.clone()),
        None => ctx.project_id.clone(),
    };
    let id = match &req.id {
        Some(id) if !is_uuid(id) => {
            return Err(ImageError::BadRequest(format!(
                "Invalid value '{id}' for 'id': not a UUID"
            )))
        }
        Some(id) if st.images.contains_key(id) => {
            return Err(ImageError::Conflict(format!(
                "An image with identifier {id} already exists"
            )))
        }
        Some(id) => id.clone(),
        None => env.ids.uuid(),
    };
    let visibility = match &req.visibility {
        Some(v) => parse_visibility(v)?,
        None => Visibility::Shared,
    };
    check_format("disk_format", &req.disk_format, DISK_FORMATS)?;
    check_format("container_format", &req.container_format, CONTAINER_FORMATS)?;
    check_name(&req.name)?;
    let tags: BTreeSet<String> = req.tags.clone().unwrap_or_default().into_iter().collect();
    check_tags(&tags)?;
    let image = Image {
        id,
        name: req.name.clone(),
        status: Status::Queued,
        visibility,
        protected: req.protected.unwrap_or(false),
        os_hidden: req.os_hidden.unwrap_or(false),
        owner,
        disk_format: req.disk_format.clone(),
        container_format: req.container_format.clone(),
        min_disk: req.min_disk.unwrap_or(0),
        min_ram: req.min_ram.unwrap_or(0),
        data: None,
        tags,
        properties,
        created_at: env.now.clone(),
        updated_at: env.now.clone(),
        upload: None,
        uploader: None,
    };
    let t = target(st, ctx, &image);
    env.authz.check(ctx, "add_image", &t)?;
    check_visibility(env, ctx, visibility, &t)?;
    Ok((image.clone(), vec![Change::Image(image)]))
}

fn want_string(attr: &str, v: &Value) -> ImageResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ImageError::BadRequest(format!(
            "Invalid value for '{attr}': {v} is not a string"
        ))),
    }
}

fn want_bool(attr: &str, v: &Value) -> ImageResult<bool> {
    v.as_bool().ok_or_else(|| {
        ImageError::BadRequest(format!("Invalid value for '{attr}': {v} is not a boolean"))
    })
}

fn want_count(attr: &str, v: &Value) -> ImageResult<u64> {
    v.as_u64().ok_or_else(|| {
        ImageError::BadRequest(format!(
            "Invalid value for '{attr}': {v} is not a non-negative integer"
        ))
    })
}

/// One core attribute set by add or replace.
fn set_core(
    env: &Env,
    ctx: &Ctx,
    st: &State,
    i: &mut Image,
    attr: &str,
    v: &Value,
) -> ImageResult<()> {
    let queued_only = |i: &Image| {
        if i.status != Status::Queued {
            return Err(ImageError::Forbidden(format!(
                "Attribute {attr} can be only replaced for a queued image."
            )));
        }
        Ok(())
    };
    match attr {
        "name" => {
            i.name = want_string(attr, v)?;
            check_name(&i.name)?;
        }
        "visibility" => {
            let vis = parse_visibility(want_string(attr, v)?.as_deref().unwrap_or(""))?;
            check_visibility(env, ctx, vis, &target(st, ctx, i))?;
            i.visibility = vis;
        }
        "protected" => i.protected = want_bool(attr, v)?,
        "os_hidden" => i.os_hidden = want_bool(attr, v)?,
        "min_disk" => i.min_disk = want_count(attr, v)?,
        "min_ram" => i.min_ram = want_count(attr, v)?,
        "owner" => {
            if !ctx.is_admin {
                return Err(ImageError::Forbidden(
                    "Only an administrator may change an image's owner.".into(),
                ));
            }
            i.owner = want_string(attr, v)?;
        }
        "disk_format" => {
            queued_only(i)?;
            i.disk_format = want_string(attr, v)?;
            check_format(attr, &i.disk_format, DISK_FORMATS)?;
        }
        "container_format" => {
            queued_only(i)?;
            i.container_format = want_string(attr, v)?;
            check_format(attr, &i.container_format, CONTAINER_FORMATS)?;
        }
        "tags" => {
            let Value::Array(a) = v else {
                return Err(ImageError::BadRequest(format!(
                    "Invalid value for 'tags': {v} is not a list"
                )));
            };
            let mut tags = BTreeSet::new();
            for t in a {
                tags.insert(want_string("tags", t)?.unwrap_or_default());
            }
            check_tags(&tags)?;
            i.tags = tags;
        }
        other => check_writable(other)?,
    }
    Ok(())
}

/// Applies one patch operation to `i` (Glance's semantics: `add` on an
/// existing property and `replace`/`remove` of a missing one are 409s; core
/// attributes take add and replace alike and cannot be removed).
fn apply_patch(env: &Env, ctx: &Ctx, st: &State, i: &mut Image, p: &Patch) -> ImageResult<()> {
    check_writable(&p.attr)?;
    let value = p.value.as_ref().unwrap_or(&Value::Null);
    if p.is_core() {
        return match p.op {
            Op::Add | Op::Replace => set_core(env, ctx, st, i, &p.attr, value),
            Op::Remove if p.attr == "tags" => {
                i.tags.clear();
                Ok(())
            }
            Op::Remove => Err(ImageError::Forbidden(format!(
                "Attribute '{}' is a core attribute and cannot be removed.",
                p.attr
            ))),
        };
    }
    let exists = i.properties.contains_key(&p.attr);
    match p.op {
        Op::Add if exists => Err(ImageError::Conflict(format!(
            "Property {} already present.",
            p.attr
        ))),
        Op::Replace | Op::Remove if !exists => Err(ImageError::Conflict(format!(
            "Property {} does not exist.",
            p.attr
        ))),
        Op::Add | Op::Replace => {
            i.properties
                .insert(p.attr.clone(), property_value(&p.attr, value)?);
            Ok(())
        }
        Op::Remove => {
            i.properties.remove(&p.attr);
            Ok(())
        }
    }
}

/// `PATCH /v2/images/{id}`: all operations apply, or none.
pub fn update_image(st: &State, env: &mut Env, ctx: &Ctx, id: &str, ops: &[Patch]) -> Write<Image> {
    let old = authorized(st, env, ctx, id, "modify_image")?;
    let mut i = old.clone();
    for p in ops {
        apply_patch(env, ctx, st, &mut i, p)?;
    }
    if i == *old {
        return Ok((i, vec![]));
    }
    i.updated_at = env.now.clone();
    Ok((i.clone(), vec![Change::Image(i)]))
}

/// `DELETE /v2/images/{id}`: the record and its memberships. Returns the
/// deleted image; the shell removes its data after the commit.
pub fn delete_image(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<Image> {
    let i = authorized(st, env, ctx, id, "delete_image")?;
    if i.protected {
        return Err(ImageError::Forbidden(format!(
            "Image {id} is protected and cannot be deleted."
        )));
    }
    let mut changes: Vec<Change> = st
        .members_of(id)
        .map(|m| Change::DeleteMember(m.image_id.clone(), m.member_id.clone()))
        .collect();
    changes.push(Change::DeleteImage(id.to_string()));
    Ok((i.clone(), changes))
}

/// `POST /v2/images/{id}/actions/deactivate`: only an active image (a
/// deactivated one is left as it is).
pub fn deactivate(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<()> {
    let i = authorized(st, env, ctx, id, "deactivate")?;
    match i.status {
        Status::Deactivated => Ok(((), vec![])),
        Status::Active => Ok(((), vec![with_status(i, Status::Deactivated, &env.now)])),
        s => Err(ImageError::Forbidden(format!(
            "Not allowed to deactivate image in status '{}'",
            s.as_str()
        ))),
    }
}

/// `POST /v2/images/{id}/actions/reactivate`.
pub fn reactivate(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<()> {
    let i = authorized(st, env, ctx, id, "reactivate")?;
    match i.status {
        Status::Active => Ok(((), vec![])),
        Status::Deactivated => Ok(((), vec![with_status(i, Status::Active, &env.now)])),
        s => Err(ImageError::Forbidden(format!(
            "Not allowed to reactivate image in status '{}'",
            s.as_str()
        ))),
    }
}

fn with_status(i: &Image, s: Status, now: &str) -> Change {
    let mut i = i.clone();
    i.status = s;
    i.updated_at = now.to_string();
    Change::Image(i)
}

/// `PUT /v2/images/{id}/tags/{tag}` (adding a present tag changes nothing).
pub fn add_tag(st: &State, env: &mut Env, ctx: &Ctx, id: &str, tag: &str) -> Write<()> {
    let i = authorized(st, env, ctx, id, "modify_image")?;
    if i.tags.contains(tag) {
        return Ok(((), vec![]));
    }
    let mut i = i.clone();
    i.tags.insert(tag.to_string());
    check_tags(&i.tags)?;
    i.updated_at = env.now.clone();
    Ok(((), vec![Change::Image(i)]))
}

/// `DELETE /v2/images/{id}/tags/{tag}`.
pub fn delete_tag(st: &State, env: &mut Env, ctx: &Ctx, id: &str, tag: &str) -> Write<()> {
    let i = authorized(st, env, ctx, id, "modify_image")?;
    if !i.tags.contains(tag) {
        return Err(ImageError::NotFound(format!("Tag {tag} not found")));
    }
    let mut i = i.clone();
    i.tags.remove(tag);
    i.updated_at = env.now.clone();
    Ok(((), vec![Change::Image(i)]))
}
