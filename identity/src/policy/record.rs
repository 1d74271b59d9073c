//! Permissive-mode records: what the rules would have denied, kept in memory
//! and appended as JSON lines to a file an operator (or `weft policy
//! workplan`) reads later.

use super::eval::python_str;
use super::{Credentials, PolicyError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The records file's name under a state directory.
pub const RECORDS_FILE: &str = "policy-denials.jsonl";

/// `DIR/policy-denials.jsonl`: where `weft serve --policy-permissive` should
/// record and `weft policy workplan --state-dir DIR` reads.
pub fn records_path(state_dir: &Path) -> PathBuf {
    state_dir.join(RECORDS_FILE)
}

/// How many records the enforcer keeps in memory; the file keeps them all.
pub const MEMORY_LIMIT: usize = 10_000;

/// The scope of the token that asked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Scope {
    /// A project-scoped token.
    Project {
        /// The project.
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        /// The project's domain.
        domain_id: Option<String>,
    },
    /// A domain-scoped token.
    Domain {
        /// The domain.
        id: String,
    },
    /// A system-scoped token.
    System,
    /// A token with no scope.
    Unscoped,
}

impl Scope {
    /// The scope of the credentials' token.
    pub fn of(creds: &Credentials) -> Scope {
        if let Some(id) = &creds.project_id {
            Scope::Project {
                id: id.clone(),
                domain_id: creds.project_domain_id.clone(),
            }
        } else if let Some(id) = &creds.domain_id {
            Scope::Domain { id: id.clone() }
        } else if creds.system_scope.is_some() {
            Scope::System
        } else {
            Scope::Unscoped
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Project { id, .. } => write!(f, "project {id}"),
            Scope::Domain { id } => write!(f, "domain {id}"),
            Scope::System => write!(f, "system"),
            Scope::Unscoped => write!(f, "no scope (unscoped token)"),
        }
    }
}

/// One would-be denial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The action (`identity:create_user`).
    pub action: String,
    /// The rule text in force for the action.
    pub rule: String,
    /// Who asked.
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The caller's domain.
    pub user_domain_id: Option<String>,
    /// The caller's effective roles on its scope.
    pub roles: Vec<String>,
    /// The token's scope.
    pub scope: Scope,
    /// Scalar fields of the target (`target.user.domain_id` -> value), secrets left out.
    #[serde(default)]
    pub target: BTreeMap<String, String>,
    /// Roles that, held on the same scope, would have allowed it (weakest first).
    #[serde(default)]
    pub would_satisfy: Vec<String>,
    /// When no role on the caller's scope is enough: roles that would allow it
    /// on a system-scoped token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub would_satisfy_system: Vec<String>,
}

/// In-memory list plus the append-only file; one lock so lines never interleave.
#[derive(Debug)]
pub(crate) struct Recorder {
    path: Option<PathBuf>,
    inner: Mutex<RecorderState>,
}

#[derive(Debug, Default)]
struct RecorderState {
    records: Vec<Record>,
    warned: bool,
}

impl Recorder {
    pub(crate) fn new(path: Option<PathBuf>) -> Recorder {
        Recorder {
            path,
            inner: Mutex::new(RecorderState::default()),
        }
    }

    pub(crate) fn push(&self, record: Record) {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(path) = &self.path {
            if let Err(e) = append_line(path, &record) {
                // The request still succeeds (permissive); say once why the
                // file is incomplete rather than failing every request.
                if !state.warned {
                    state.warned = true;
                    tracing::warn!(path = %path.display(), error = %e, "weft policy: cannot append a permissive-mode record");
                }
            }
        }
        if state.records.len() < MEMORY_LIMIT {
            state.records.push(record);
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<Record> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records
            .clone()
    }
}

fn append_line(path: &Path, record: &Record) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write per line: with O_APPEND, concurrent writers (several
    // processes) do not interleave lines this short.
    f.write_all(&line)
}

/// Reads a records file (JSON lines; blank lines skipped). A missing file is
/// an empty list: nothing was denied yet.
pub fn read_records(path: &Path) -> Result<Vec<Record>, PolicyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(PolicyError::File {
                path: path.to_path_buf(),
                message: format!("cannot read: {e}"),
            })
        }
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(line).map_err(|e| PolicyError::File {
            path: path.to_path_buf(),
            message: format!("line {}: not a policy record: {e}", n + 1),
        })?;
        out.push(record);
    }
    Ok(out)
}

const SUMMARY_LIMIT: usize = 32;

/// The target's scalar leaves as `path -> str()`, without secrets, capped.
pub(crate) fn summarize_target(target: &serde_json::Value) -> BTreeMap<String, String> {
    fn walk(v: &serde_json::Value, prefix: &mut String, out: &mut BTreeMap<String, String>) {
        if out.len() >= SUMMARY_LIMIT {
            return;
        }
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    let lower = k.to_ascii_lowercase();
                    if ["password", "secret", "blob", "token_id"]
                        .iter()
                        .any(|s| lower.contains(s))
                    {
                        continue;
                    }
                    let len = prefix.len();
                    if !prefix.is_empty() {
                        prefix.push('.');
                    }
                    prefix.push_str(k);
                    walk(child, prefix, out);
                    prefix.truncate(len);
                }
            }
            serde_json::Value::Array(_) => {}
            scalar => {
                if out.len() < SUMMARY_LIMIT {
                    out.insert(prefix.clone(), python_str(scalar));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(target, &mut String::new(), &mut out);
    out
}
