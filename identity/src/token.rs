//! Fernet tokens: a compact binary payload (no roles: they are resolved at
//! validation) and the key repository (staged / primary / secondary keys, as
//! Keystone's `fernet-keys` directory).
//!
//! Payload, version 1 (all integers big-endian):
//! ```text
//! u8 version | u8 methods bitmask | u8 scope tag | id user | [id scope] |
//! u8 flags (bit0: application credential) | [id app_cred] |
//! i64 issued_at_us | i64 expires_at_us | u8 n | n x 16-byte audit ids
//! id = 0x00 + 16 bytes (a 32-hex-digit id) | 0x01 + u8 len + utf-8 bytes
//! ```

use crate::model::Micros;
use arc_swap::ArcSwap;
use base64::Engine;
use fernet::{Fernet, MultiFernet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

pub const METHOD_PASSWORD: u8 = 1;
pub const METHOD_TOKEN: u8 = 2;
pub const METHOD_APP_CRED: u8 = 4;

/// Method names in the order Keystone lists them.
pub fn method_names(bits: u8) -> Vec<&'static str> {
    let mut v = Vec::new();
    if bits & METHOD_PASSWORD != 0 {
        v.push("password");
    }
    if bits & METHOD_TOKEN != 0 {
        v.push("token");
    }
    if bits & METHOD_APP_CRED != 0 {
        v.push("application_credential");
    }
    v
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenScope {
    Unscoped,
    Project(String),
    Domain(String),
    System,
    /// Trust-scoped: the project comes from the trust.
    Trust(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The authenticated user (the trustee for a trust token).
    pub user_id: String,
    pub methods: u8,
    pub scope: TokenScope,
    pub app_cred_id: Option<String>,
    pub issued_at: Micros,
    pub expires_at: Micros,
    /// This token's audit id, then the chain's first (when rescoped).
    pub audit_ids: Vec<[u8; 16]>,
}

/// The audit id as Keystone prints it: 22 url-safe base64 characters.
pub fn audit_str(a: &[u8; 16]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(a)
}

fn put_id(out: &mut Vec<u8>, id: &str) {
    let b = id.as_bytes();
    if b.len() == 32
        && b.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    {
        out.push(0);
        out.extend(hex::decode(id).expect("checked hex"));
    } else {
        out.push(1);
        let n = b.len().min(255);
        out.push(n as u8);
        out.extend(&b[..n]);
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    fn id(&mut self) -> Option<String> {
        match self.u8()? {
            0 => Some(hex::encode(self.take(16)?)),
            1 => {
                let n = self.u8()? as usize;
                String::from_utf8(self.take(n)?.to_vec()).ok()
            }
            _ => None,
        }
    }
}

impl Payload {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        out.push(1);
        out.push(self.methods);
        let (tag, sid) = match &self.scope {
            TokenScope::Unscoped => (0, None),
            TokenScope::Project(p) => (1, Some(p)),
            TokenScope::Domain(d) => (2, Some(d)),
            TokenScope::System => (3, None),
            TokenScope::Trust(t) => (4, Some(t)),
        };
        out.push(tag);
        put_id(&mut out, &self.user_id);
        if let Some(s) = sid {
            put_id(&mut out, s);
        }
        out.push(u8::from(self.app_cred_id.is_some()));
        if let Some(a) = &self.app_cred_id {
            put_id(&mut out, a);
        }
        out.extend(self.issued_at.to_be_bytes());
        out.extend(self.expires_at.to_be_bytes());
        let n = self.audit_ids.len().min(2);
        out.push(n as u8);
        for a in &self.audit_ids[..n] {
            out.extend(a);
        }
        out
    }

    /// `None` for anything malformed (never panics on input).
    pub fn decode(b: &[u8]) -> Option<Payload> {
        let mut r = Reader(b);
        if r.u8()? != 1 {
            return None;
        }
        let methods = r.u8()?;
        let tag = r.u8()?;
        let user_id = r.id()?;
        let scope = match tag {
            0 => TokenScope::Unscoped,
            1 => TokenScope::Project(r.id()?),
            2 => TokenScope::Domain(r.id()?),
            3 => TokenScope::System,
            4 => TokenScope::Trust(r.id()?),
            _ => return None,
        };
        let app_cred_id = match r.u8()? {
            0 => None,
            1 => Some(r.id()?),
            _ => return None,
        };
        let issued_at = r.i64()?;
        let expires_at = r.i64()?;
        let n = r.u8()? as usize;
        let mut audit_ids = Vec::with_capacity(n);
        for _ in 0..n {
            audit_ids.push(r.take(16)?.try_into().ok()?);
        }
        if !r.0.is_empty() || audit_ids.is_empty() {
            return None;
        }
        Some(Payload {
            user_id,
            methods,
            scope,
            app_cred_id,
            issued_at,
            expires_at,
            audit_ids,
        })
    }
}

/// The key directory: `0` is the staged key, the highest number the primary
/// (encrypts), everything in between secondaries (decrypt only).
pub struct KeyRepo {
    dir: PathBuf,
    keys: ArcSwap<MultiFernet>,
    seen_mtime: AtomicI64,
    checked_at: AtomicI64,
    /// Bumped each time the key set is reloaded (a rotation by another process).
    generation: AtomicI64,
}

fn key_err(dir: &Path, message: impl Into<String>) -> crate::IdentityError {
    crate::IdentityError::Keys {
        path: dir.to_path_buf(),
        message: message.into(),
    }
}

/// Key file indexes in `dir`, ascending.
fn key_indexes(dir: &Path) -> Result<Vec<u64>, crate::IdentityError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| key_err(dir, e.to_string()))? {
        let e = e.map_err(|e| key_err(dir, e.to_string()))?;
        if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn write_key(path: &Path) -> Result<(), crate::IdentityError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(Fernet::generate_key().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn dir_mtime(dir: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir)
        .map(|m| m.mtime() * 1_000_000_000 + m.mtime_nsec())
        .unwrap_or(0)
}

/// Create the repository (staged key 0 and primary key 1) if it has no keys.
pub fn setup_keys(dir: &Path) -> Result<(), crate::IdentityError> {
    std::fs::create_dir_all(dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let idx = key_indexes(dir)?;
    if !idx.contains(&0) {
        write_key(&dir.join("0"))?;
    }
    if idx.iter().all(|&i| i == 0) {
        write_key(&dir.join("1"))?;
    }
    Ok(())
}

/// Promote the staged key to primary, stage a new key, and drop the oldest
/// secondaries beyond `max_active` keys. Tokens made with any kept key stay valid.
pub fn rotate_keys(dir: &Path, max_active: usize) -> Result<Vec<u64>, crate::IdentityError> {
    setup_keys(dir)?;
    let idx = key_indexes(dir)?;
    let next = idx.last().copied().unwrap_or(0) + 1;
    std::fs::rename(dir.join("0"), dir.join(next.to_string()))?;
    write_key(&dir.join("0"))?;
    let mut idx = key_indexes(dir)?;
    while idx.len() > max_active.max(3) {
        let oldest = idx
            .iter()
            .copied()
            .find(|&i| i != 0)
            .expect("more than one key");
        std::fs::remove_file(dir.join(oldest.to_string()))?;
        idx.retain(|&i| i != oldest);
    }
    Ok(idx)
}

fn load_multi(dir: &Path) -> Result<MultiFernet, crate::IdentityError> {
    let mut idx = key_indexes(dir)?;
    if idx.is_empty() {
        return Err(key_err(
            dir,
            "no keys (run weft identity rotate-keys or weft bootstrap)",
        ));
    }
    // Primary (highest) first so it encrypts; staged (0) last.
    idx.sort_unstable_by(|a, b| match (a, b) {
        (0, 0) => std::cmp::Ordering::Equal,
        (0, _) => std::cmp::Ordering::Greater,
        (_, 0) => std::cmp::Ordering::Less,
        _ => b.cmp(a),
    });
    let mut keys = Vec::new();
    for i in idx {
        let text = std::fs::read_to_string(dir.join(i.to_string()))?;
        keys.push(
            Fernet::new(text.trim())
                .ok_or_else(|| key_err(dir, format!("key {i} is not a Fernet key")))?,
        );
    }
    Ok(MultiFernet::new(keys))
}

impl KeyRepo {
    pub fn open(dir: &Path) -> Result<KeyRepo, crate::IdentityError> {
        setup_keys(dir)?;
        Ok(KeyRepo {
            dir: dir.to_path_buf(),
            keys: ArcSwap::from_pointee(load_multi(dir)?),
            seen_mtime: AtomicI64::new(dir_mtime(dir)),
            checked_at: AtomicI64::new(0),
            generation: AtomicI64::new(0),
        })
    }

    /// Pick up a rotation done by another process, at most once a second.
    fn refresh(&self, now: Micros) {
        let last = self.checked_at.load(Ordering::Relaxed);
        if now - last < 1_000_000 {
            return;
        }
        self.checked_at.store(now, Ordering::Relaxed);
        let m = dir_mtime(&self.dir);
        if m != self.seen_mtime.load(Ordering::Relaxed) {
            match load_multi(&self.dir) {
                Ok(k) => {
                    self.keys.store(Arc::new(k));
                    self.seen_mtime.store(m, Ordering::Relaxed);
                    self.generation.fetch_add(1, Ordering::Release);
                }
                Err(e) => tracing::warn!("keeping the loaded fernet keys: {e}"),
            }
        }
    }

    /// The key set's generation (after picking up a rotation, if any): a
    /// token validated under another generation must be decrypted again,
    /// since its key may have been removed.
    pub fn generation(&self, now: Micros) -> i64 {
        self.refresh(now);
        self.generation.load(Ordering::Acquire)
    }

    pub fn seal(&self, p: &Payload, now: Micros) -> String {
        self.refresh(now);
        // Keystone strips the base64 padding so tokens are URL-safe.
        self.keys
            .load()
            .encrypt(&p.encode())
            .trim_end_matches('=')
            .to_string()
    }

    pub fn open_token(&self, token: &str, now: Micros) -> Option<Payload> {
        self.refresh(now);
        if token.len() > 1024 {
            return None;
        }
        let pad = (4 - token.len() % 4) % 4;
        let padded;
        let t = if pad == 0 {
            token
        } else {
            padded = format!("{token}{}", "=".repeat(pad));
            &padded
        };
        let bytes = self.keys.load().decrypt(t).ok()?;
        Payload::decode(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(scope: TokenScope) -> Payload {
        Payload {
            user_id: "0123456789abcdef0123456789abcdef".into(),
            methods: METHOD_PASSWORD | METHOD_TOKEN,
            scope,
            app_cred_id: Some("admin".into()),
            issued_at: 1_700_000_000_123_456,
            expires_at: 1_700_003_600_123_456,
            audit_ids: vec![[7; 16], [9; 16]],
        }
    }

    #[test]
    fn payload_round_trips_every_scope() {
        for s in [
            TokenScope::Unscoped,
            TokenScope::System,
            TokenScope::Project("p1".into()),
            TokenScope::Domain("default".into()),
            TokenScope::Trust("fedcba9876543210fedcba9876543210".into()),
        ] {
            let p = sample(s);
            assert_eq!(Payload::decode(&p.encode()), Some(p));
        }
    }

    #[test]
    fn truncated_or_padded_payloads_are_rejected() {
        let b = sample(TokenScope::System).encode();
        for n in 0..b.len() {
            assert_eq!(Payload::decode(&b[..n]), None, "prefix {n}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(Payload::decode(&longer), None);
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("keys");
        let repo = KeyRepo::open(&dir).unwrap();
        let p = sample(TokenScope::System);
        let t = repo.seal(&p, 0);
        rotate_keys(&dir, 3).unwrap();
        let repo2 = KeyRepo::open(&dir).unwrap();
        assert_eq!(repo2.open_token(&t, 0), Some(p.clone()));
        // Two more rotations with three active keys drop the key that made `t`.
        rotate_keys(&dir, 3).unwrap();
        rotate_keys(&dir, 3).unwrap();
        let repo3 = KeyRepo::open(&dir).unwrap();
        assert_eq!(repo3.open_token(&t, 0), None);
        assert_eq!(repo3.open_token("garbage", 0), None);
    }
}
