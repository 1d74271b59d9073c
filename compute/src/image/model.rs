//! Image and member records as stored, and their API views (Glance's JSON).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Glance's image statuses. weft never enters `killed`, `pending_delete`,
/// `uploading` or `importing` (no import, no delayed delete), but reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Record only, no data yet (or an upload was cut off).
    Queued,
    /// Data is being uploaded.
    Saving,
    /// Data uploaded, hashes known.
    Active,
    /// An upload failed for good (Glance; weft goes back to `queued`).
    Killed,
    /// Deleted (Glance keeps rows; weft removes the record).
    Deleted,
    /// Delayed delete (Glance).
    PendingDelete,
    /// Data download refused until reactivated.
    Deactivated,
    /// Staged by the import API (Glance).
    Uploading,
    /// Being imported (Glance).
    Importing,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Saving => "saving",
            Status::Active => "active",
            Status::Killed => "killed",
            Status::Deleted => "deleted",
            Status::PendingDelete => "pending_delete",
            Status::Deactivated => "deactivated",
            Status::Uploading => "uploading",
            Status::Importing => "importing",
        }
    }
}

/// Who may see an image (Glance's four visibilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Every project (only an admin publishes).
    Public,
    /// The owner only.
    Private,
    /// The owner and the projects added as members.
    Shared,
    /// Every project may use it; listed only when asked for.
    Community,
}

impl Visibility {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Shared => "shared",
            Visibility::Community => "community",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Visibility> {
        Some(match s {
            "public" => Visibility::Public,
            "private" => Visibility::Private,
            "shared" => Visibility::Shared,
            "community" => Visibility::Community,
            _ => return None,
        })
    }
}

/// What the data hashes and header said, filled in when an upload completes.
#[allow(missing_docs)] // Glance's attribute names: the Image API v2 reference documents them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    pub size: u64,
    pub virtual_size: Option<u64>,
    /// md5, hex (Glance's `checksum`).
    pub checksum: String,
    /// sha512, hex (`os_hash_value`, with `os_hash_algo` = sha512).
    pub sha512: String,
    /// The replica that received the data (see [`Image::uploader`]): where
    /// it lives when replicas do not share an image directory. Not shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_by: Option<String>,
}

/// One image record.
#[allow(missing_docs)] // Glance's attribute names: the Image API v2 reference documents them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub status: Status,
    pub visibility: Visibility,
    pub protected: bool,
    pub os_hidden: bool,
    /// The owning project (Glance allows an ownerless image; weft's always have one).
    pub owner: Option<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    pub data: Option<Data>,
    pub tags: BTreeSet<String>,
    /// Free-form properties: strings, as Glance's schema types them.
    pub properties: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
    /// While `saving`: the upload under way, so only it can finish or abort.
    #[serde(default)]
    pub upload: Option<String>,
    /// While `saving`: the replica receiving the data. A replica that
    /// starts sets back to queued only the uploads it was receiving; the
    /// others are still under way elsewhere. `None` in records written
    /// before replicas were told apart: any replica recovers those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploader: Option<String>,
}

/// A member's answer to a share.
#[allow(missing_docs)] // Glance's attribute names: the Image API v2 reference documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    Pending,
    Accepted,
    Rejected,
}

impl MemberStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Pending => "pending",
            MemberStatus::Accepted => "accepted",
            MemberStatus::Rejected => "rejected",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<MemberStatus> {
        Some(match s {
            "pending" => MemberStatus::Pending,
            "accepted" => MemberStatus::Accepted,
            "rejected" => MemberStatus::Rejected,
            _ => return None,
        })
    }
}

/// A project an image is shared with.
#[allow(missing_docs)] // Glance's attribute names: the Image API v2 reference documents them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub image_id: String,
    pub member_id: String,
    pub status: MemberStatus,
    pub created_at: String,
    pub updated_at: String,
}

/// Attributes a client may never write (Glance answers 403 "is read-only").
pub const READ_ONLY: &[&str] = &[
    "id",
    "status",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "size",
    "virtual_size",
    "created_at",
    "updated_at",
    "direct_url",
    "self",
    "file",
    "schema",
    "stores",
];

/// Glance's core attributes: never free-form properties.
pub const CORE: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "owner",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "size",
    "virtual_size",
    "tags",
    "created_at",
    "updated_at",
    "direct_url",
    "locations",
    "self",
    "file",
    "schema",
    "stores",
];

/// Glance's default `disk_formats`.
pub const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];

/// Glance's default `container_formats`.
pub const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];

/// The image as `GET /v2/images/{id}` shows it: core attributes (nulls
/// included), then each property at top level, as Glance does.
pub fn image_view(i: &Image) -> Value {
    let d = i.data.as_ref();
    let mut m = Map::new();
    for (k, v) in &i.properties {
        m.insert(k.clone(), Value::String(v.clone()));
    }
    let core = json!({
        "id": i.id,
        "name": i.name,
        "status": i.status.as_str(),
        "visibility": i.visibility.as_str(),
        "protected": i.protected,
        "os_hidden": i.os_hidden,
        "owner": i.owner,
        "disk_format": i.disk_format,
        "container_format": i.container_format,
        "min_disk": i.min_disk,
        "min_ram": i.min_ram,
        "size": d.map(|d| d.size),
        "virtual_size": d.and_then(|d| d.virtual_size),
        "checksum": d.map(|d| d.checksum.clone()),
        "os_hash_algo": d.map(|_| "sha512"),
        "os_hash_value": d.map(|d| d.sha512.clone()),
        "tags": i.tags.iter().collect::<Vec<_>>(),
        "created_at": i.created_at,
        "updated_at": i.updated_at,
        "self": format!("/v2/images/{}", i.id),
        "file": format!("/v2/images/{}/file", i.id),
        "schema": "/v2/schemas/image",
    });
    if let Value::Object(c) = core {
        m.extend(c);
    }
    Value::Object(m)
}

/// A member as the members API shows it.
pub fn member_view(m: &Member) -> Value {
    json!({
        "image_id": m.image_id,
        "member_id": m.member_id,
        "status": m.status.as_str(),
        "created_at": m.created_at,
        "updated_at": m.updated_at,
        "schema": "/v2/schemas/member",
    })
}
