//! The status machine of an image's data, as pure functions: an upload
//! begins (`queued` -> `saving`, with a token naming it), then finishes
//! (`saving` -> `active`, with size and hashes) or is cut off (`saving` ->
//! `queued`). The shell (`data.rs`) moves the bytes between these commits.

use super::error::{ImageError, ImageResult};
use super::model::{Data, Image, Status};
use super::service::{get_image, target, Ctx, Env, Write};
use super::state::{Change, State};

/// What an upload may do, decided when it begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPlan {
    /// Names this upload in the record, so only it can finish or abort.
    pub upload: String,
    /// Bytes it may write: the size cap or what is left of the quota.
    pub limit: u64,
}

fn too_large_for_quota(project: &str, quota: u64, usage: u64, delta: u64) -> ImageError {
    ImageError::TooLarge(format!(
        "Project {project} is over a limit for [Resource image_size_total is over limit of {quota} due to current usage {usage} and delta {delta}]"
    ))
}

/// What is left of `project`'s quota, or the 413 Glance answers when the
/// project is already at or past it.
fn quota_room(st: &State, env: &Env, project: Option<&str>) -> ImageResult<u64> {
    let (Some(quota), Some(project)) = (env.limits.project_quota, project) else {
        return Ok(u64::MAX);
    };
    let usage = st.usage(project);
    if usage >= quota {
        return Err(too_large_for_quota(project, quota, usage, 0));
    }
    Ok(quota - usage)
}

/// `PUT /v2/images/{id}/file` begins: the image must be queued and have
/// both formats; `declared` (Content-Length) is checked against the limits
/// at once, so an over-large upload is refused before a byte is read.
pub fn begin_upload(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    id: &str,
    declared: Option<u64>,
) -> Write<UploadPlan> {
    let i = get_image(st, ctx, id)?;
    env.authz.check(ctx, "upload_image", &target(st, ctx, i))?;
    if i.status != Status::Queued {
        return Err(ImageError::Conflict(format!(
            "Image status transition from {} to saving is not allowed",
            i.status.as_str()
        )));
    }
    if i.disk_format.is_none() || i.container_format.is_none() {
        return Err(ImageError::BadRequest(
            "Properties disk_format, container_format must be set prior to saving data.".into(),
        ));
    }
    let cap = env.limits.image_size_cap;
    let room = quota_room(st, env, i.owner.as_deref())?;
    if let Some(n) = declared {
        if n > cap {
            return Err(over_cap(n, cap));
        }
        if n > room {
            let quota = env.limits.project_quota.unwrap_or(u64::MAX);
            let owner = i.owner.as_deref().unwrap_or("");
            return Err(too_large_for_quota(owner, quota, quota - room, n));
        }
    }
    let plan = UploadPlan {
        upload: env.ids.uuid(),
        limit: cap.min(room),
    };
    let mut i = i.clone();
    i.status = Status::Saving;
    i.upload = Some(plan.upload.clone());
    i.uploader = Some(env.replica.to_string());
    i.updated_at = env.now.clone();
    Ok((plan, vec![Change::Image(i)]))
}

/// The 413 for an image past `image_size_cap`.
pub fn over_cap(n: u64, cap: u64) -> ImageError {
    ImageError::TooLarge(format!(
        "Image data of {n} bytes or more exceeds the image size limit of {cap} bytes."
    ))
}

/// The 413 for data past what the plan allowed (cap or quota) while streaming.
pub fn over_limit(plan: &UploadPlan, env_limits_cap: u64, received: u64) -> ImageError {
    if plan.limit >= env_limits_cap {
        over_cap(received, env_limits_cap)
    } else {
        ImageError::TooLarge(format!(
            "Denying attempt to upload image because it exceeds the quota: the data ({received} bytes so far) exceeds the {} bytes left of the project's image_size_total.",
            plan.limit
        ))
    }
}

/// The upload `upload` of image `id` completed with `data`: the image
/// becomes active. If it was deleted meanwhile the answer is 410, as Glance
/// gives, and the shell discards the data.
pub fn finish_upload(
    st: &State,
    env: &mut Env,
    id: &str,
    upload: &str,
    data: Data,
) -> Write<Image> {
    let Some(i) = st.images.get(id) else {
        return Err(ImageError::Gone(format!(
            "Image {id} could not be found after upload. The image may have been deleted during the upload."
        )));
    };
    if i.status != Status::Saving || i.upload.as_deref() != Some(upload) {
        return Err(ImageError::Conflict(format!(
            "Image {id} is no longer being uploaded by this request (status {}).",
            i.status.as_str()
        )));
    }
    // Other uploads of the project may have finished since this one began.
    if let (Some(quota), Some(owner)) = (env.limits.project_quota, i.owner.as_deref()) {
        let usage = st.usage(owner);
        if usage + data.size > quota {
            return Err(too_large_for_quota(owner, quota, usage, data.size));
        }
    }
    let mut i = i.clone();
    i.status = Status::Active;
    i.upload = None;
    i.data = Some(Data {
        stored_by: i.uploader.take(),
        ..data
    });
    i.updated_at = env.now.clone();
    Ok((i.clone(), vec![Change::Image(i)]))
}

/// The upload `upload` of image `id` did not complete: back to queued, so
/// the data can be uploaded again. Nothing if another upload owns it now.
pub fn abort_upload(st: &State, env: &mut Env, id: &str, upload: &str) -> Write<()> {
    match st.images.get(id) {
        Some(i) if i.status == Status::Saving && i.upload.as_deref() == Some(upload) => {
            let mut i = i.clone();
            i.status = Status::Queued;
            i.upload = None;
            i.uploader = None;
            i.updated_at = env.now.clone();
            Ok(((), vec![Change::Image(i)]))
        }
        _ => Ok(((), vec![])),
    }
}

/// At start: the uploads this replica was receiving when it stopped will
/// never finish; their images go back to queued. Uploads other replicas
/// are receiving are left alone (their files are not this replica's to
/// judge), and so are their images. Records from before uploads named a
/// replica are recovered by whichever replica starts. Returns the ids.
pub fn recover(st: &State, env: &mut Env) -> Write<Vec<String>> {
    let stuck: Vec<&Image> = st
        .images
        .values()
        .filter(|i| i.status == Status::Saving && is_own_upload(i, env.replica))
        .collect();
    let ids = stuck.iter().map(|i| i.id.clone()).collect();
    let changes = stuck
        .into_iter()
        .map(|i| {
            let mut i = i.clone();
            i.status = Status::Queued;
            i.upload = None;
            i.uploader = None;
            i.updated_at = env.now.clone();
            Change::Image(i)
        })
        .collect();
    Ok((ids, changes))
}

/// Whether `i`'s upload under way is `replica`'s (or names no replica).
pub fn is_own_upload(i: &Image, replica: &str) -> bool {
    i.uploader.as_deref().is_none_or(|r| r == replica)
}
