//! Image members: the projects a `shared` image is offered to, and their
//! answers. Pure functions, as in `service.rs`. The owner adds and removes
//! members; only the member itself accepts or rejects.

use super::error::{ImageError, ImageResult};
use super::model::{Image, Member, MemberStatus, Visibility};
use super::service::{get_image, target, Ctx, Env, Write};
use super::state::{Change, State};

fn member_not_found(image: &str, member: &str) -> ImageError {
    ImageError::NotFound(format!("{member} is not a member of image {image}"))
}

/// The memberships of `image` `ctx` may see: all of them for the owner (or
/// an admin), only its own for a member.
pub fn list_members<'s>(
    st: &'s State,
    env: &Env,
    ctx: &Ctx,
    image: &str,
) -> ImageResult<Vec<&'s Member>> {
    let i = get_image(st, ctx, image)?;
    env.authz.check(ctx, "get_members", &target(st, ctx, i))?;
    let all = ctx.is_admin || (ctx.project_id.is_some() && i.owner == ctx.project_id);
    Ok(st
        .members_of(image)
        .filter(|m| all || ctx.project_id.as_deref() == Some(m.member_id.as_str()))
        .collect())
}

/// One membership, if `ctx` may see it.
pub fn get_member<'s>(
    st: &'s State,
    env: &Env,
    ctx: &Ctx,
    image: &str,
    member: &str,
) -> ImageResult<&'s Member> {
    list_members(st, env, ctx, image)?
        .into_iter()
        .find(|m| m.member_id == member)
        .ok_or_else(|| member_not_found(image, member))
}

fn owned_shared<'s>(
    st: &'s State,
    env: &Env,
    ctx: &Ctx,
    image: &str,
    action: &str,
) -> ImageResult<&'s Image> {
    let i = get_image(st, ctx, image)?;
    env.authz.check(ctx, action, &target(st, ctx, i))?;
    if i.visibility != Visibility::Shared {
        return Err(ImageError::Forbidden(format!(
            "Image members can only be managed for images with visibility 'shared' (image {image} is '{}').",
            i.visibility.as_str()
        )));
    }
    Ok(i)
}

/// `POST /v2/images/{id}/members`: the project is offered the image (pending).
pub fn add_member(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    image: &str,
    member: &str,
) -> Write<Member> {
    let i = owned_shared(st, env, ctx, image, "add_member")?;
    if member.is_empty() || member.len() > 255 {
        return Err(ImageError::BadRequest(
            "Invalid value for 'member': a project id of 1 to 255 characters.".into(),
        ));
    }
    if i.owner.as_deref() == Some(member) {
        return Err(ImageError::BadRequest(format!(
            "Project {member} owns image {image} and cannot be its member."
        )));
    }
    if st.member(image, member).is_some() {
        return Err(ImageError::Conflict(format!(
            "Member {member} already exists for image {image}."
        )));
    }
    let m = Member {
        image_id: image.to_string(),
        member_id: member.to_string(),
        status: MemberStatus::Pending,
        created_at: env.now.clone(),
        updated_at: env.now.clone(),
    };
    Ok((m.clone(), vec![Change::Member(m)]))
}

/// `PUT /v2/images/{id}/members/{member}`: the member accepts, rejects, or
/// puts the offer back to pending. The owner cannot answer for it.
pub fn update_member(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    image: &str,
    member: &str,
    status: &str,
) -> Write<Member> {
    let i = get_image(st, ctx, image)?;
    let old = st
        .member(image, member)
        .filter(|m| {
            ctx.is_admin
                || i.owner == ctx.project_id
                || ctx.project_id.as_deref() == Some(m.member_id.as_str())
        })
        .ok_or_else(|| member_not_found(image, member))?;
    let mut t = target(st, ctx, i);
    t["member_id"] = serde_json::Value::String(member.to_string());
    env.authz.check(ctx, "modify_member", &t)?;
    let status = MemberStatus::parse(status).ok_or_else(|| {
        ImageError::BadRequest(format!(
            "Invalid value '{status}' for 'status': must be one of pending, accepted, rejected"
        ))
    })?;
    let mut m = old.clone();
    if m.status == status {
        return Ok((m, vec![]));
    }
    m.status = status;
    m.updated_at = env.now.clone();
    Ok((m.clone(), vec![Change::Member(m)]))
}

/// `DELETE /v2/images/{id}/members/{member}`: the owner withdraws the offer.
pub fn delete_member(st: &State, env: &mut Env, ctx: &Ctx, image: &str, member: &str) -> Write<()> {
    let i = get_image(st, ctx, image)?;
    env.authz.check(ctx, "delete_member", &target(st, ctx, i))?;
    if st.member(image, member).is_none() {
        return Err(member_not_found(image, member));
    }
    Ok((
        (),
        vec![Change::DeleteMember(image.to_string(), member.to_string())],
    ))
}
