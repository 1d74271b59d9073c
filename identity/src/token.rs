//! Fernet tokens: a compact binary payload (no roles: they are resolved at
//! validation) and the key set (staged / primary / secondary keys, as
//! Keystone's `fernet-keys` directory, but kept as records in the store).
//!
//! Payload, version 1 (all integers big-endian):
//! ```text
//! u8 version | u8 methods bitmask | u8 scope tag | id user | [id scope] |
//! u8 flags (bit0: application credential) | [id app_cred] |
//! i64 issued_at_us | i64 expires_at_us | u8 n | n x 16-byte audit ids
//! id = 0x00 + 16 bytes (a 32-hex-digit id) | 0x01 + u8 len + utf-8 bytes
//! ```
//!
//! Version 2 is version 1 followed by one byte, the token's [`Audience`]:
//! the one service a delegated build step's token may be used on. Only
//! those tokens are sealed as version 2, so every token an older weft
//! issued (and every ordinary token) still reads as version 1.

use crate::model::Micros;
use base64::Engine;
use fernet::{Fernet, MultiFernet};
use std::path::Path;
use std::sync::Arc;

/// Method bit: authenticated with a password.
pub const METHOD_PASSWORD: u8 = 1;
/// Method bit: made from another token (rescoped).
pub const METHOD_TOKEN: u8 = 2;
/// Method bit: authenticated with an application credential.
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
/// What a token is scoped to, as sealed in it.
pub enum TokenScope {
    /// No scope.
    Unscoped,
    /// A project, by id.
    Project(String),
    /// A domain, by id.
    Domain(String),
    /// The whole deployment.
    System,
    /// Trust-scoped: the project comes from the trust.
    Trust(String),
}

/// The one service a token is bound to. A build's step tokens carry one, so
/// that a token taken from a compute host opens nothing but the service the
/// step was for: not identity (no new tokens, no trusts), not another API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Audience {
    /// The image API (`/image`, catalog type `image`).
    Image,
    /// The networking API (`/networking`, catalog type `network`).
    Network,
    /// Placement (`/placement`, catalog type `placement`).
    Placement,
}

impl Audience {
    /// Every audience, for parsers and tests.
    pub const ALL: [Audience; 3] = [Audience::Image, Audience::Network, Audience::Placement];

    /// The catalog type of the service, as errors and records name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Image => "image",
            Audience::Network => "network",
            Audience::Placement => "placement",
        }
    }

    fn tag(self) -> u8 {
        match self {
            Audience::Image => 1,
            Audience::Network => 2,
            Audience::Placement => 3,
        }
    }

    fn from_tag(t: u8) -> Option<Audience> {
        Audience::ALL.into_iter().find(|a| a.tag() == t)
    }

    /// The audience a catalog type names (`image`, `network`, `placement`).
    pub fn parse(s: &str) -> Option<Audience> {
        Audience::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// What a Fernet token carries (no roles: they are resolved at each validation).
pub struct Payload {
    /// The authenticated user (the trustee for a trust token).
    pub user_id: String,
    /// [`METHOD_PASSWORD`]-style bits.
    pub methods: u8,
    /// The scope.
    pub scope: TokenScope,
    /// The application credential it was made with, if any.
    pub app_cred_id: Option<String>,
    /// When it was issued (micros).
    pub issued_at: Micros,
    /// When it expires (micros).
    pub expires_at: Micros,
    /// This token's audit id, then the chain's first (when rescoped).
    pub audit_ids: Vec<[u8; 16]>,
    /// The one service it may be used on; `None`: any (every ordinary token).
    pub audience: Option<Audience>,
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
    /// The compact binary form sealed in the token.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        out.push(if self.audience.is_some() { 2 } else { 1 });
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
        if let Some(a) = self.audience {
            out.push(a.tag());
        }
        out
    }

    /// `None` for anything malformed (never panics on input).
    pub fn decode(b: &[u8]) -> Option<Payload> {
        let mut r = Reader(b);
        let version = r.u8()?;
        if version != 1 && version != 2 {
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
        let audience = match version {
            2 => Some(Audience::from_tag(r.u8()?)?),
            _ => None,
        };
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
            audience,
        })
    }
}

/// The Fernet keys of one state, ready to use: the primary (highest index)
/// encrypts; every key decrypts; 0 is the staged key (next primary). The
/// keys are records in the store, so every replica on a database holds the
/// same set and a rotation on one reaches all with the commit.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Option<Arc<MultiFernet>>,
    indexes: Vec<u64>,
    /// The revision whose commit last changed the keys: a token validated
    /// under another generation must be decrypted again, since its key may
    /// have been removed.
    pub generation: u64,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("indexes", &self.indexes)
            .field("generation", &self.generation)
            .finish()
    }
}

impl KeySet {
    /// The set of `keys` (index -> key), or what is wrong with one.
    pub fn new(keys: &imbl::OrdMap<u64, String>, generation: u64) -> Result<KeySet, String> {
        // Primary (highest) first so it encrypts; staged (0) last.
        let mut order: Vec<u64> = keys.keys().copied().filter(|&i| i != 0).collect();
        order.reverse();
        if keys.contains_key(&0) {
            order.push(0);
        }
        let mut fernets = Vec::with_capacity(order.len());
        for i in &order {
            fernets.push(
                Fernet::new(keys[i].trim())
                    .ok_or_else(|| format!("key {i} is not a Fernet key"))?,
            );
        }
        Ok(KeySet {
            keys: (!fernets.is_empty()).then(|| Arc::new(MultiFernet::new(fernets))),
            indexes: keys.keys().copied().collect(),
            generation,
        })
    }

    /// Key indexes, ascending.
    pub fn indexes(&self) -> &[u64] {
        &self.indexes
    }

    /// `None` before any key exists (`Identity::open` makes them).
    pub fn seal(&self, p: &Payload) -> Option<String> {
        // Keystone strips the base64 padding so tokens are URL-safe.
        Some(
            self.keys
                .as_ref()?
                .encrypt(&p.encode())
                .trim_end_matches('=')
                .to_string(),
        )
    }

    /// The payload of a token sealed with one of these keys; None when none opens it or it does not decode.
    pub fn open_token(&self, token: &str) -> Option<Payload> {
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
        let bytes = self.keys.as_ref()?.decrypt(t).ok()?;
        Payload::decode(&bytes)
    }
}

/// A new random Fernet key.
pub fn generate_key() -> String {
    Fernet::generate_key()
}

/// The keys of a Keystone-style `fernet-keys` directory (file name = index),
/// ascending: what an older weft kept there, imported into the store once.
pub fn read_key_dir(dir: &Path) -> Result<Vec<(u64, String)>, crate::IdentityError> {
    let err = |message: String| crate::IdentityError::Keys {
        path: dir.to_path_buf(),
        message,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| err(e.to_string()))? {
        let e = e.map_err(|e| err(e.to_string()))?;
        if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
            let key = std::fs::read_to_string(e.path()).map_err(|e| err(e.to_string()))?;
            let key = key.trim().to_string();
            if Fernet::new(&key).is_none() {
                return Err(err(format!("key {n} is not a Fernet key")));
            }
            out.push((n, key));
        }
    }
    out.sort_unstable();
    Ok(out)
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
            audience: None,
        }
    }

    #[test]
    fn audience_round_trips_and_old_tokens_still_decode() {
        for a in Audience::ALL {
            let p = Payload {
                audience: Some(a),
                ..sample(TokenScope::Trust("fedcba9876543210fedcba9876543210".into()))
            };
            let b = p.encode();
            assert_eq!(b[0], 2, "an audience token is version 2");
            assert_eq!(Payload::decode(&b), Some(p));
            assert_eq!(Audience::parse(a.as_str()), Some(a));
        }
        // A version-1 payload (every token sealed before audiences) reads
        // with no audience.
        let old = sample(TokenScope::System).encode();
        assert_eq!(old[0], 1);
        assert_eq!(Payload::decode(&old).unwrap().audience, None);
        // An unknown audience tag, or a version-1 payload with a trailing
        // audience byte, is malformed.
        let mut bad = Payload {
            audience: Some(Audience::Image),
            ..sample(TokenScope::System)
        }
        .encode();
        *bad.last_mut().unwrap() = 9;
        assert_eq!(Payload::decode(&bad), None);
        let mut v1_tail = old.clone();
        v1_tail.push(1);
        assert_eq!(Payload::decode(&v1_tail), None);
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
    fn the_primary_seals_and_every_key_opens() {
        let p = sample(TokenScope::System);
        let mut keys = imbl::OrdMap::new();
        keys.insert(0, generate_key());
        keys.insert(1, generate_key());
        let one = KeySet::new(&keys, 1).unwrap();
        let t = one.seal(&p).unwrap();
        // Rotated: the old primary is a secondary and still opens `t`.
        keys.insert(2, keys[&0].clone());
        keys.insert(0, generate_key());
        let two = KeySet::new(&keys, 2).unwrap();
        assert_eq!(two.open_token(&t), Some(p.clone()));
        assert_ne!(two.seal(&p).unwrap(), t);
        // Its key dropped: `t` no longer opens.
        keys.remove(&1);
        let three = KeySet::new(&keys, 3).unwrap();
        assert_eq!(three.open_token(&t), None);
        assert_eq!(three.open_token("garbage"), None);
        assert_eq!(KeySet::default().seal(&p), None);
    }

    #[test]
    fn a_key_dir_reads_in_index_order() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (generate_key(), generate_key());
        std::fs::write(d.path().join("1"), format!("{a}\n")).unwrap();
        std::fs::write(d.path().join("0"), &b).unwrap();
        std::fs::write(d.path().join("notes.txt"), "ignored").unwrap();
        assert_eq!(read_key_dir(d.path()).unwrap(), vec![(0, b), (1, a)]);
        std::fs::write(d.path().join("2"), "not a key").unwrap();
        assert!(read_key_dir(d.path()).is_err());
    }
}
