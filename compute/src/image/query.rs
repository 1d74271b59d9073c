//! `GET /v2/images`: filters, sorting and marker/limit paging as Glance
//! does them, over the images the caller may see. Pure: a query string and
//! a state in, a page of images and the `next` link out.

use super::error::{ImageError, ImageResult};
use super::model::{Image, MemberStatus, Visibility};
use super::service::{visible, Ctx};
use super::state::State;
use std::cmp::Ordering;

/// Glance's `limit_param_default` and `api_limit_max`.
pub const DEFAULT_LIMIT: usize = 25;
/// The largest page, whatever `limit` asks.
pub const MAX_LIMIT: usize = 1000;

const SORT_KEYS: &[&str] = &[
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "virtual_size",
    "id",
    "created_at",
    "updated_at",
    "min_disk",
    "min_ram",
    "owner",
    "visibility",
];

/// A parsed list query.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pairs: Vec<(String, String)>,
    limit: usize,
    marker: Option<String>,
    sort: Vec<(String, bool)>,
    visibility: Option<String>,
    member_status: Option<MemberStatus>,
    tags: Vec<String>,
    /// (attribute, wanted value): core attributes and properties alike.
    eq: Vec<(String, String)>,
    size_min: Option<u64>,
    size_max: Option<u64>,
    os_hidden: bool,
}

fn bad(msg: String) -> ImageError {
    ImageError::BadRequest(msg)
}

fn parse_dir(d: &str) -> ImageResult<bool> {
    match d {
        "asc" => Ok(true),
        "desc" => Ok(false),
        _ => Err(bad(format!(
            "Invalid sort direction: {d}. It must be one of the following: asc, desc."
        ))),
    }
}

fn sort_key(k: &str) -> ImageResult<String> {
    if SORT_KEYS.contains(&k) {
        Ok(k.to_string())
    } else {
        Err(bad(format!("Invalid sort key: {k}. It is not supported.")))
    }
}

fn parse_bool(k: &str, v: &str) -> ImageResult<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(bad(format!("Invalid value '{v}' for '{k}': not a boolean"))),
    }
}

fn parse_u64(k: &str, v: &str) -> ImageResult<u64> {
    v.parse().map_err(|_| {
        bad(format!(
            "Invalid value '{v}' for '{k}': not a non-negative integer"
        ))
    })
}

impl ListQuery {
    /// Parses a raw query string.
    pub fn parse(raw: &str) -> ImageResult<ListQuery> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut q = ListQuery {
            limit: DEFAULT_LIMIT,
            ..ListQuery::default()
        };
        let (mut keys, mut dirs, mut new_sort) = (Vec::new(), Vec::new(), None);
        for (k, v) in &pairs {
            match k.as_str() {
                "limit" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| bad("limit param must be an integer".into()))?;
                    if n < 0 {
                        return Err(bad("limit param must be positive".into()));
                    }
                    q.limit = (n as usize).min(MAX_LIMIT);
                }
                "marker" => q.marker = Some(v.clone()),
                "sort_key" => keys.extend(v.split(',').map(|s| s.trim().to_string())),
                "sort_dir" => dirs.extend(v.split(',').map(|s| s.trim().to_string())),
                "sort" => new_sort = Some(v.clone()),
                "visibility" => {
                    if v != "all" && Visibility::parse(v).is_none() {
                        return Err(bad(format!("Invalid visibility value: {v}")));
                    }
                    q.visibility = Some(v.clone());
                }
                "member_status" => {
                    q.member_status = match v.as_str() {
                        "all" => None,
                        s => Some(
                            MemberStatus::parse(s)
                                .ok_or_else(|| bad(format!("Invalid status value: {s}")))?,
                        ),
                    };
                    q.eq.push(("member_status".into(), v.clone()));
                }
                "tag" => q.tags.push(v.clone()),
                "size_min" => q.size_min = Some(parse_u64(k, v)?),
                "size_max" => q.size_max = Some(parse_u64(k, v)?),
                "os_hidden" => q.os_hidden = parse_bool(k, v)?,
                "protected" => {
                    parse_bool(k, v)?;
                    q.eq.push((k.clone(), v.to_ascii_lowercase()));
                }
                "status" => {
                    q.eq.push((k.clone(), v.to_ascii_lowercase()));
                }
                _ => q.eq.push((k.clone(), v.clone())),
            }
        }
        if pairs.iter().all(|(k, _)| k != "member_status") {
            q.member_status = Some(MemberStatus::Accepted);
        }
        q.eq.retain(|(k, _)| k != "member_status");
        if let Some(s) = new_sort {
            if !keys.is_empty() || !dirs.is_empty() {
                return Err(bad(
                    "The 'sort' parameter cannot be combined with 'sort_key' or 'sort_dir'.".into(),
                ));
            }
            for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, d) = part.split_once(':').unwrap_or((part, "desc"));
                q.sort.push((sort_key(k)?, parse_dir(d)?));
            }
        } else {
            if dirs.len() > 1 && dirs.len() != keys.len() {
                return Err(bad(
                    "Number of sort dirs does not match the number of sort keys".into(),
                ));
            }
            for d in &dirs {
                parse_dir(d)?;
            }
            if keys.is_empty() && !dirs.is_empty() {
                keys.push("created_at".into());
            }
            for (n, k) in keys.iter().enumerate() {
                let d = dirs
                    .get(n)
                    .or(dirs.first())
                    .map(String::as_str)
                    .unwrap_or("desc");
                q.sort.push((sort_key(k)?, parse_dir(d)?));
            }
        }
        if q.sort.is_empty() {
            q.sort.push(("created_at".into(), false));
        }
        q.pairs = pairs;
        Ok(q)
    }

    fn in_listing(&self, st: &State, ctx: &Ctx, i: &Image) -> bool {
        if !visible(st, ctx, i) {
            return false;
        }
        let own = ctx.project_id.is_some() && i.owner == ctx.project_id;
        let membership = ctx.project_id.as_deref().and_then(|p| st.member(&i.id, p));
        let member_ok = match self.member_status {
            None => membership.is_some(),
            Some(s) => membership.is_some_and(|m| m.status == s),
        };
        match self.visibility.as_deref() {
            // Glance's default listing: public, own, shared with the
            // caller and accepted; community images only when asked for.
            None => {
                ctx.is_admin
                    || own
                    || i.visibility == Visibility::Public
                    || (i.visibility == Visibility::Shared && member_ok)
            }
            Some("all") => {
                ctx.is_admin
                    || own
                    || matches!(i.visibility, Visibility::Public | Visibility::Community)
                    || (i.visibility == Visibility::Shared && member_ok)
            }
            Some("shared") => {
                i.visibility == Visibility::Shared && (ctx.is_admin || own || member_ok)
            }
            Some(v) => i.visibility.as_str() == v,
        }
    }

    fn matches(&self, i: &Image) -> bool {
        // Hidden images are listed only when asked for, and then alone.
        if i.os_hidden != self.os_hidden {
            return false;
        }
        let size = i.data.as_ref().map(|d| d.size);
        if self.size_min.is_some_and(|m| size.is_none_or(|s| s < m))
            || self.size_max.is_some_and(|m| size.is_none_or(|s| s > m))
        {
            return false;
        }
        if !self.tags.iter().all(|t| i.tags.contains(t)) {
            return false;
        }
        self.eq.iter().all(|(k, want)| {
            let want_any = want
                .strip_prefix("in:")
                .map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>())
                .unwrap_or_else(|| vec![want.clone()]);
            let have = attr(i, k);
            have.is_some_and(|h| want_any.contains(&h))
        })
    }

    /// The page: visible images that match, sorted, after the marker, at
    /// most `limit`; and the `next` link when the page is full (Glance
    /// gives one whenever it returned `limit` images).
    pub fn page<'s>(
        &self,
        st: &'s State,
        ctx: &Ctx,
    ) -> ImageResult<(Vec<&'s Image>, Option<String>)> {
        let mut all: Vec<&Image> = st
            .images
            .values()
            .filter(|i| self.in_listing(st, ctx, i) && self.matches(i))
            .collect();
        all.sort_by(|a, b| self.compare(a, b));
        let start = match &self.marker {
            None => 0,
            Some(m) => {
                let pos = all.iter().position(|i| &i.id == m);
                match pos {
                    Some(p) => p + 1,
                    None => {
                        return Err(bad(format!(
                            "Invalid marker. Image {m} could not be found."
                        )))
                    }
                }
            }
        };
        let page: Vec<&Image> = all.into_iter().skip(start).take(self.limit).collect();
        let next = (!page.is_empty() && page.len() == self.limit)
            .then(|| self.next_link(&page[page.len() - 1].id));
        Ok((page, next))
    }

    fn compare(&self, a: &Image, b: &Image) -> Ordering {
        for (k, asc) in &self.sort {
            let o = cmp_attr(a, b, k);
            let o = if *asc { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        // Glance adds `id` as the last key so pages are stable.
        let o = a.id.cmp(&b.id);
        if self.sort.last().is_some_and(|(_, asc)| !asc) {
            o.reverse()
        } else {
            o
        }
    }

    fn next_link(&self, marker: &str) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs.iter().filter(|(k, _)| k != "marker") {
            s.append_pair(k, v);
        }
        s.append_pair("marker", marker);
        format!("/v2/images?{}", s.finish())
    }
}

fn cmp_attr(a: &Image, b: &Image, k: &str) -> Ordering {
    let num = |i: &Image| -> Option<u64> {
        match k {
            "size" => i.data.as_ref().map(|d| d.size),
            "virtual_size" => i.data.as_ref().and_then(|d| d.virtual_size),
            "min_disk" => Some(i.min_disk),
            "min_ram" => Some(i.min_ram),
            _ => None,
        }
    };
    match k {
        "size" | "virtual_size" | "min_disk" | "min_ram" => num(a).cmp(&num(b)),
        _ => attr(a, k).cmp(&attr(b, k)),
    }
}

/// An attribute's value as a query compares it (core attributes by their
/// wire value, anything else as a property).
fn attr(i: &Image, k: &str) -> Option<String> {
    let d = i.data.as_ref();
    match k {
        "id" => Some(i.id.clone()),
        "name" => i.name.clone(),
        "status" => Some(i.status.as_str().to_string()),
        "visibility" => Some(i.visibility.as_str().to_string()),
        "owner" => i.owner.clone(),
        "disk_format" => i.disk_format.clone(),
        "container_format" => i.container_format.clone(),
        "protected" => Some(i.protected.to_string()),
        "checksum" => d.map(|d| d.checksum.clone()),
        "os_hash_value" => d.map(|d| d.sha512.clone()),
        "min_disk" => Some(i.min_disk.to_string()),
        "min_ram" => Some(i.min_ram.to_string()),
        "size" => d.map(|d| d.size.to_string()),
        "created_at" => Some(i.created_at.clone()),
        "updated_at" => Some(i.updated_at.clone()),
        other => i.properties.get(other).cloned(),
    }
}
