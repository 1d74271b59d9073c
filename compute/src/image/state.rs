//! The whole image state as plain data, and the changes a write makes.
//!
//! Service functions read a [`State`] and return typed [`Change`]s; the
//! replica commits them through weft-store (service `image`, record kinds
//! `image` and `member`) and every replica applies the same commit here.

use super::model::{Image, Member};
use std::collections::BTreeMap;
use weft_store::{Model, Row, StoreError};

/// The service's name in the store.
pub const SERVICE: &str = "image";

/// One change of a write. Most changes are images, so they are not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An image written whole.
    Image(Image),
    /// A membership written whole.
    Member(Member),
    /// An image removed (its members are removed by their own changes).
    DeleteImage(String),
    /// A membership removed: (image id, member project id).
    DeleteMember(String, String),
}

/// Images and memberships, at a store revision.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The store revision this state is at.
    pub revision: u64,
    /// Images by id.
    pub images: BTreeMap<String, Image>,
    /// (image id, member project id) -> membership.
    pub members: BTreeMap<(String, String), Member>,
}

/// A member record's id in the store: both ids, which a UUID never contains `/` of.
fn member_key(image: &str, member: &str) -> String {
    format!("{image}/{member}")
}

/// The one place typed changes become store records.
pub fn to_store(changes: &[Change]) -> Result<Vec<weft_store::Change>, StoreError> {
    changes
        .iter()
        .map(|c| match c {
            Change::Image(i) => weft_store::Change::put_json("image", &i.id, i),
            Change::Member(m) => {
                weft_store::Change::put_json("member", member_key(&m.image_id, &m.member_id), m)
            }
            Change::DeleteImage(id) => Ok(weft_store::Change::delete("image", id)),
            Change::DeleteMember(i, m) => {
                Ok(weft_store::Change::delete("member", member_key(i, m)))
            }
        })
        .collect()
}

fn decode_put(kind: &str, id: &str, body: &str) -> Result<Change, StoreError> {
    let bad = |e: serde_json::Error| StoreError::Encode(format!("image {kind} {id}: {e}"));
    match kind {
        "image" => Ok(Change::Image(serde_json::from_str(body).map_err(bad)?)),
        "member" => Ok(Change::Member(serde_json::from_str(body).map_err(bad)?)),
        _ => Err(StoreError::Encode(format!(
            "unknown image kind {kind} ({id})"
        ))),
    }
}

fn from_store(c: &weft_store::Change) -> Result<Change, StoreError> {
    match c {
        weft_store::Change::Put { kind, id, body } => decode_put(kind, id, body),
        weft_store::Change::Delete { kind, id } => match kind.as_str() {
            "image" => Ok(Change::DeleteImage(id.clone())),
            "member" => {
                let (i, m) = id
                    .split_once('/')
                    .ok_or_else(|| StoreError::Encode(format!("bad member key {id}")))?;
                Ok(Change::DeleteMember(i.to_string(), m.to_string()))
            }
            _ => Err(StoreError::Encode(format!(
                "unknown image kind {kind} ({id})"
            ))),
        },
    }
}

impl Model for State {
    fn from_rows(revision: u64, rows: Vec<Row>) -> Result<State, StoreError> {
        let changes = rows
            .iter()
            .map(|r| decode_put(&r.kind, &r.id, &r.body))
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = State::default();
        st.apply_changes(&changes);
        st.revision = revision;
        Ok(st)
    }

    type Decoded = Vec<Change>;

    fn decode(changes: &[weft_store::Change]) -> Result<Vec<Change>, StoreError> {
        changes.iter().map(from_store).collect()
    }

    fn apply_decoded(&mut self, revision: u64, typed: &Vec<Change>) {
        self.apply_changes(typed);
        self.revision = revision;
    }

    fn revision(&self) -> u64 {
        self.revision
    }
}

impl State {
    /// Applies typed changes (the revision is the caller's to set).
    pub fn apply_changes(&mut self, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Image(i) => {
                    self.images.insert(i.id.clone(), i.clone());
                }
                Change::Member(m) => {
                    self.members
                        .insert((m.image_id.clone(), m.member_id.clone()), m.clone());
                }
                Change::DeleteImage(id) => {
                    self.images.remove(id);
                }
                Change::DeleteMember(i, m) => {
                    self.members.remove(&(i.clone(), m.clone()));
                }
            }
        }
    }

    /// The memberships of one image.
    pub fn members_of<'a>(&'a self, image: &str) -> impl Iterator<Item = &'a Member> + 'a {
        let lo = (image.to_string(), String::new());
        let image = image.to_string();
        self.members
            .range(lo..)
            .take_while(move |((i, _), _)| *i == image)
            .map(|(_, m)| m)
    }

    /// `project`'s membership of `image`, if any.
    pub fn member(&self, image: &str, project: &str) -> Option<&Member> {
        self.members.get(&(image.to_string(), project.to_string()))
    }

    /// Bytes of image data a project holds (what its quota counts).
    pub fn usage(&self, project: &str) -> u64 {
        self.images
            .values()
            .filter(|i| i.owner.as_deref() == Some(project))
            .filter_map(|i| i.data.as_ref())
            .map(|d| d.size)
            .sum()
    }
}
