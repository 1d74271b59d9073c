//! The driver's one error type: each variant says what failed and on what,
//! so the agent can put it in a server's fault message as it is.

use std::path::{Path, PathBuf};

use uuid::Uuid;

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec or an argument is unusable (bad name, MAC, path...).
    #[error("invalid instance spec: {0}")]
    InvalidSpec(String),
    /// A spawn for a uuid that already has a domain on this host.
    #[error("instance {0} already exists on this host")]
    AlreadyExists(Uuid),
    /// A power operation on an instance this host does not have.
    #[error("instance {0} not found on this host")]
    NotFound(Uuid),
    /// The operation does not apply in the instance's current state
    /// (unpause of a running instance...).
    #[error("cannot {op} instance {uuid}: it is {state:?}")]
    InvalidState {
        /// The instance.
        uuid: Uuid,
        /// Its state.
        state: crate::PowerState,
        /// What was asked.
        op: &'static str,
    },
    /// libvirt refused or failed (the message is libvirt's own).
    #[error("libvirt: {op}: {message}")]
    Libvirt {
        /// What weft asked libvirt for.
        op: String,
        /// libvirt's error message.
        message: String,
    },
    /// `qemu-img` failed; its stderr.
    #[error("qemu-img: {0}")]
    QemuImg(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Something about the host could not be read.
    #[error("host: {0}")]
    Host(String),
}

impl Error {
    /// An I/O failure on `path` (the agent's disk steps report theirs so too).
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}
