//! The server actions that change what a server is rather than its power:
//! rebuild, resize with confirm/revert, createImage (snapshot), and the
//! os-interface attach/detach. Pure checks and record changes; the host's
//! work runs in the build loop ([`crate::compute::build::ops`]) or, for
//! os-interface (synchronous in Nova too), in the handler.
//!
//! ```text
//!  rebuild       active|stopped|error ─► task rebuilding (REBUILD) ─► same vm_state
//!  resize        active|stopped ─► task resize_prep (RESIZE) ─► vm_state resized (VERIFY_RESIZE)
//!  confirmResize resized ─► task resize_confirming ─► prior vm_state, old allocation freed
//!  revertResize  resized ─► task resize_reverting (REVERT_RESIZE) ─► prior vm_state, old flavor
//!  createImage   active|stopped|paused|suspended ─► task image_snapshot ─► none
//! ```
//!
//! Resize is always on the server's own host: Nova's
//! `allow_resize_to_same_host = True`, which a single-host `weft serve`
//! needs and which weft makes the only behaviour (no cold migration to
//! another host). Placement is kept as Nova keeps it: when the resize
//! starts, the old flavor's allocation moves to the migration's consumer and
//! the server's consumer takes the new flavor (so the host holds both until
//! confirm frees the migration's, or revert moves it back).

use super::record::{vm_state, FlavorCopy, Migration, Server};
use super::{get, usage, ImageFacts, Quota};
use crate::compute::body::{self, only, required, str_field};
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::service::{Ctx, Env, Write};
use crate::compute::state::{Change, State};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Nova's default rules for these actions; chained to [`super::super::policy::DEFAULTS`].
pub const POLICY: &[(&str, &str)] = &[
    (
        "os_compute_api:servers:rebuild",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:servers:resize",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:servers:confirm_resize",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:servers:revert_resize",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:servers:create_image",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:os-attach-interfaces:list",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:os-attach-interfaces:show",
        "rule:project_reader_or_admin",
    ),
    (
        "os_compute_api:os-attach-interfaces:create",
        "rule:project_member_or_admin",
    ),
    (
        "os_compute_api:os-attach-interfaces:delete",
        "rule:project_member_or_admin",
    ),
];

/// `rebuild`'s body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rebuild {
    /// The image to boot from now.
    pub image_ref: String,
    /// A new display name.
    pub name: Option<String>,
    /// Replaces the metadata when given.
    pub metadata: Option<BTreeMap<String, String>>,
    /// 2.19.
    pub description: Option<String>,
}

/// An action of this module, as the body asked for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `rebuild`.
    Rebuild(Rebuild),
    /// `resize` to a flavor id.
    Resize(String),
    /// `confirmResize`.
    ConfirmResize,
    /// `revertResize`.
    RevertResize,
    /// `createImage` with its name and extra image properties.
    CreateImage {
        /// The new image's name.
        name: String,
        /// Properties the caller adds.
        metadata: BTreeMap<String, String>,
    },
}

fn obj<'a>(v: &'a Value, key: &str) -> ComputeResult<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| body::invalid(key, v, "is not of type 'object'"))
}

fn string_map(v: Option<&Value>, key: &str) -> ComputeResult<Option<BTreeMap<String, String>>> {
    let Some(v) = v else { return Ok(None) };
    obj(v, key)?
        .iter()
        .map(|(k, x)| match x {
            Value::String(s) if !k.is_empty() && k.len() <= 255 && s.len() <= 255 => {
                Ok((k.clone(), s.clone()))
            }
            _ => Err(body::invalid(
                key,
                x,
                "is not a string of at most 255 characters",
            )),
        })
        .collect::<ComputeResult<_>>()
        .map(Some)
}

/// Reads `key: v` when it is one of this module's actions (`None`: not ours).
pub fn parse(key: &str, v: &Value) -> Option<ComputeResult<Op>> {
    let op = match key {
        "rebuild" => (|| {
            let m = obj(v, key)?;
            only(
                m,
                &[
                    "imageRef",
                    "name",
                    "metadata",
                    "adminPass",
                    "description",
                    "preserve_ephemeral",
                    "OS-DCF:diskConfig",
                    "accessIPv4",
                    "accessIPv6",
                    "key_name",
                    "user_data",
                    "personality",
                ],
            )?;
            let image_ref = required(str_field(m, "imageRef", 255)?, "imageRef")?;
            if image_ref.is_empty() {
                return Err(body::invalid("imageRef", &json!(""), "is too short"));
            }
            let name = str_field(m, "name", 255)?;
            if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                return Err(body::invalid("name", &json!(name), "is not a valid name"));
            }
            Ok(Op::Rebuild(Rebuild {
                image_ref,
                name,
                metadata: string_map(m.get("metadata"), "metadata")?,
                description: str_field(m, "description", 255)?,
            }))
        })(),
        "resize" => (|| {
            let m = obj(v, key)?;
            only(m, &["flavorRef", "OS-DCF:diskConfig"])?;
            let f = match m.get("flavorRef") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(x) => return Err(body::invalid("flavorRef", x, "is not a flavor id")),
                None => return Err(required::<()>(None, "flavorRef").unwrap_err()),
            };
            Ok(Op::Resize(f))
        })(),
        "confirmResize" => Ok(Op::ConfirmResize),
        "revertResize" => Ok(Op::RevertResize),
        "createImage" => (|| {
            let m = obj(v, key)?;
            only(m, &["name", "metadata"])?;
            let name = required(str_field(m, "name", 255)?, "name")?;
            if name.trim().is_empty() {
                return Err(body::invalid("name", &json!(name), "is not a valid name"));
            }
            Ok(Op::CreateImage {
                name,
                metadata: string_map(m.get("metadata"), "metadata")?.unwrap_or_default(),
            })
        })(),
        _ => return None,
    };
    Some(op)
}

fn policy(ctx: &Ctx, env: &Env, s: &Server, rule: &str) -> ComputeResult<()> {
    env.authz.check(
        ctx,
        rule,
        &json!({"project_id": s.project_id, "user_id": s.user_id}),
    )
}

/// The server `ctx` may act on with `action` when its vm_state is one of
/// `allowed` and no task runs, with Nova's 409 wording otherwise.
pub fn actionable<'a>(
    st: &'a State,
    env: &Env,
    ctx: &Ctx,
    id: &str,
    (action, rule): (&str, &str),
    allowed: &[&str],
) -> ComputeResult<&'a Server> {
    let s = get(st, ctx, id)?;
    policy(ctx, env, s, rule)?;
    if s.locked && !ctx.is_admin {
        return Err(ComputeError::Conflict(format!("Instance {id} is locked")));
    }
    if !allowed.contains(&s.vm_state.as_str()) {
        return Err(ComputeError::Conflict(format!(
            "Cannot '{action}' instance {id} while it is in vm_state {}",
            s.vm_state
        )));
    }
    if let Some(t) = &s.task_state {
        return Err(ComputeError::Conflict(format!(
            "Cannot '{action}' instance {id} while it is in task_state {t}"
        )));
    }
    if s.host.is_none() {
        return Err(ComputeError::Conflict(format!(
            "Cannot '{action}' instance {id}: it was never placed on a host"
        )));
    }
    Ok(s)
}

/// `rebuild`: checks the new image fits the flavor, records it and the new
/// name/metadata, and leaves the host's work to the build loop.
pub fn rebuild(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    id: &str,
    req: &Rebuild,
    image: Option<&ImageFacts>,
) -> Write<Server> {
    let s = actionable(
        st,
        env,
        ctx,
        id,
        ("rebuild", "os_compute_api:servers:rebuild"),
        &[vm_state::ACTIVE, vm_state::STOPPED, vm_state::ERROR],
    )?;
    let bad = |m: String| Err(ComputeError::BadRequest(m));
    let Some(img) = image else {
        return bad(format!("Image {} could not be found.", req.image_ref));
    };
    if img.status != "active" {
        return bad(format!("Image {} is not active.", req.image_ref));
    }
    if s.flavor.ram < img.min_ram {
        return bad("Flavor's memory is too small for requested image.".into());
    }
    if s.flavor.disk != 0 && (s.flavor.disk < img.min_disk || s.flavor.disk << 30 < img.size) {
        return bad("Flavor's disk is too small for requested image.".into());
    }
    let mut s = s.clone();
    s.image_ref = req.image_ref.clone();
    if let Some(n) = &req.name {
        s.name = n.clone();
    }
    if let Some(md) = &req.metadata {
        s.metadata = md.clone();
    }
    if req.description.is_some() {
        s.description = req.description.clone();
    }
    s.task_state = Some("rebuilding".into());
    s.fault = None;
    s.updated = env.now.clone();
    Ok((s.clone(), vec![Change::Server(Box::new(s))]))
}

/// `resize`: a different flavor whose root disk is not smaller, within
/// the project's cores and RAM quota; the build loop moves the allocation
/// and redefines the domain.
pub fn resize(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    id: &str,
    flavor_ref: &str,
    quota: Quota,
) -> Write<()> {
    let s = actionable(
        st,
        env,
        ctx,
        id,
        ("resize", "os_compute_api:servers:resize"),
        &[vm_state::ACTIVE, vm_state::STOPPED],
    )?;
    let f = crate::compute::flavors::get(st, ctx, flavor_ref).map_err(|_| {
        ComputeError::BadRequest(format!("Unable to find flavor with ID {flavor_ref}"))
    })?;
    if f.id == s.flavor.id {
        return Err(ComputeError::BadRequest(
            "When resizing, instances must change flavor!".into(),
        ));
    }
    if f.disk < s.flavor.disk {
        return Err(ComputeError::BadRequest(
            "Resizing to a smaller disk flavor is not allowed.".into(),
        ));
    }
    let used = usage(st, &s.project_id);
    let cores = used.cores - u64::from(s.flavor.vcpus) + u64::from(f.vcpus);
    let ram = used.ram - s.flavor.ram + f.ram;
    let over_cores = f.vcpus > s.flavor.vcpus && cores > quota.cores;
    if over_cores || (f.ram > s.flavor.ram && ram > quota.ram) {
        let what = if over_cores { "cores" } else { "ram" };
        return Err(ComputeError::Forbidden(format!(
            "Quota exceeded for {what}: Requested a resize to flavor {}, over the project's limit",
            f.id
        )));
    }
    let new_flavor = FlavorCopy {
        id: f.id.clone(),
        name: f.name.clone(),
        vcpus: f.vcpus,
        ram: f.ram,
        disk: f.disk,
        ephemeral: f.ephemeral,
        swap: f.swap,
        extra_specs: f.extra_specs.clone(),
    };
    let mut s = s.clone();
    s.migration = Some(Migration {
        id: env.ids.uuid(),
        old_flavor: s.flavor.clone(),
        new_flavor,
        prior_vm_state: s.vm_state.clone(),
        moved: false,
    });
    s.task_state = Some("resize_prep".into());
    s.updated = env.now.clone();
    Ok(((), vec![Change::Server(Box::new(s))]))
}

/// `confirmResize` / `revertResize`: only a server waiting in VERIFY_RESIZE.
pub fn finish_resize(st: &State, env: &mut Env, ctx: &Ctx, id: &str, confirm: bool) -> Write<()> {
    let (action, task) = if confirm {
        ("confirmResize", "resize_confirming")
    } else {
        ("revertResize", "resize_reverting")
    };
    let rule = if confirm {
        "os_compute_api:servers:confirm_resize"
    } else {
        "os_compute_api:servers:revert_resize"
    };
    let s = get(st, ctx, id)?;
    policy(ctx, env, s, rule)?;
    if s.vm_state != vm_state::RESIZED || s.migration.is_none() {
        // Nova: no migration in `finished` status for this instance.
        return Err(ComputeError::NotFound(format!(
            "Instance {id} has not been resized."
        )));
    }
    if let Some(t) = &s.task_state {
        return Err(ComputeError::Conflict(format!(
            "Cannot '{action}' instance {id} while it is in task_state {t}"
        )));
    }
    let mut s = s.clone();
    s.task_state = Some(task.into());
    s.updated = env.now.clone();
    Ok(((), vec![Change::Server(Box::new(s))]))
}

/// The states createImage may start from.
pub const SNAPSHOT_FROM: &[&str] = &[vm_state::ACTIVE, vm_state::STOPPED, "paused", "suspended"];

/// `createImage`, once the image record exists: the build loop uploads
/// the disk to `image_id`.
pub fn snapshot(st: &State, env: &mut Env, ctx: &Ctx, id: &str, image_id: &str) -> Write<()> {
    let s = actionable(
        st,
        env,
        ctx,
        id,
        ("createImage", "os_compute_api:servers:create_image"),
        SNAPSHOT_FROM,
    )?;
    let mut s = s.clone();
    s.task_state = Some("image_snapshot".into());
    s.pending_image = Some(image_id.to_string());
    s.updated = env.now.clone();
    Ok(((), vec![Change::Server(Box::new(s))]))
}

/// The image properties Nova sets on a snapshot, beside the caller's.
pub fn snapshot_properties(
    s: &Server,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut p = extra.clone();
    for (k, v) in [
        ("image_type", "snapshot"),
        ("instance_uuid", s.id.as_str()),
        ("base_image_ref", s.image_ref.as_str()),
        ("user_id", s.user_id.as_str()),
        ("image_location", "snapshot"),
    ] {
        p.insert(k.to_string(), v.to_string());
    }
    p
}
