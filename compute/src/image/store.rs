//! Where image data lives. [`ImageStore`] is the interface; [`FileStore`]
//! keeps each image in one file under `STATE_DIR/images` (or `--image-dir`,
//! a directory replicas share, e.g. over NFS, as Glance's file store needs
//! across API nodes). An object store (the S3 API) can implement the same
//! trait later: stage, commit, open, delete, sweep.
//!
//! A file is written under a staging name (`.staging-<replica>-<id>-<n>`),
//! fsynced, then renamed to `<id>` and the directory fsynced: a kill -9 at
//! any point leaves either the whole image or none, and
//! [`ImageStore::sweep`] at the next start of the same replica removes what
//! its dead uploads left. Staging names carry the replica so that, in a
//! shared directory, a replica never takes another's upload under way for
//! a leftover.
//!
//! Reading hands out [`Bytes`] that are windows of the file mapped into
//! memory (`mmap`): the response body is the page cache itself, with no
//! `read()` copy into a userspace buffer. Each window is registered as the
//! file's bytes ([`super::zerocopy`]), so `weft serve`'s connections send
//! it with `sendfile`, sparing the kernel's copy into the socket as well.

use axum::body::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Data being written for one image, not yet visible under its name.
/// Dropping it without [`Staged::commit`] discards it.
pub trait Staged: Send {
    /// Appends `buf`.
    fn write(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes the data durable and visible as the image's data, replacing any.
    fn commit(self: Box<Self>) -> io::Result<()>;
}

/// One image's stored data, read in pieces (a download, or a `Range` of it).
pub trait Stored: Send + Sync {
    /// Its length in bytes.
    fn len(&self) -> u64;
    /// Whether it holds nothing.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Up to `len` bytes from `offset` (fewer only at the end; none past it).
    fn chunk(&self, offset: u64, len: usize) -> io::Result<Bytes>;
}

/// The image data store. Blocking: call from a blocking thread.
pub trait ImageStore: Send + Sync {
    /// Starts writing `id`'s data.
    fn stage(&self, id: &str) -> io::Result<Box<dyn Staged>>;
    /// `id`'s data, or `None` when this store has none.
    fn open(&self, id: &str) -> io::Result<Option<Box<dyn Stored>>>;
    /// Removes `id`'s data (nothing if there is none).
    fn delete(&self, id: &str) -> io::Result<()>;
    /// Removes this replica's staged leftovers and the data of every image
    /// `keep` rejects; returns what it removed. It lists what it holds
    /// first and asks `keep` after, so `keep` judges on records read after
    /// the listing: data another replica renamed into place just before
    /// is then already on a saving or active record.
    fn sweep(&self, keep: &mut dyn FnMut(&str) -> bool) -> io::Result<Vec<String>>;
    /// Where the data lives, for messages (`/var/lib/weft/images`).
    fn describe(&self) -> String;
}

/// Image files in one directory.
pub struct FileStore {
    dir: PathBuf,
    replica: String,
    seq: AtomicU64,
}

const STAGING: &str = ".staging-";

/// Ids become file names: only a plain name (no `/`, no leading `.`).
fn check_id(id: &str) -> io::Result<()> {
    if id.is_empty() || id.starts_with('.') || id.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{id}' is not a storable image id"),
        ));
    }
    Ok(())
}

impl FileStore {
    /// Opens (creating) the directory, for the replica `replica` (whose
    /// staged files only it sweeps).
    pub fn open(dir: impl Into<PathBuf>, replica: &str) -> io::Result<FileStore> {
        let dir = dir.into();
        check_id(replica)?;
        fs::create_dir_all(&dir)?;
        Ok(FileStore {
            dir,
            replica: replica.to_string(),
            seq: AtomicU64::new(0),
        })
    }

    /// This replica's staging names start with this.
    fn own_staging(&self) -> String {
        format!("{STAGING}{}-", self.replica)
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

struct StagedFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
    dir: PathBuf,
}

impl Staged for StagedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(buf),
            None => Err(io::Error::other("staged file already closed")),
        }
    }

    fn commit(mut self: Box<Self>) -> io::Result<()> {
        let f = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("staged file already closed"))?;
        let placed = f.sync_all().and_then(|()| {
            drop(f);
            fs::rename(&self.tmp, &self.dest)
        });
        if let Err(e) = placed {
            let _ = fs::remove_file(&self.tmp);
            return Err(e);
        }
        // The rename itself is durable only once the directory is.
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl ImageStore for FileStore {
    fn stage(&self, id: &str) -> io::Result<Box<dyn Staged>> {
        check_id(id)?;
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("{}{id}-{n}", self.own_staging()));
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        Ok(Box::new(StagedFile {
            file: Some(file),
            tmp,
            dest: self.dir.join(id),
            dir: self.dir.clone(),
        }))
    }

    fn open(&self, id: &str) -> io::Result<Option<Box<dyn Stored>>> {
        check_id(id)?;
        match File::open(self.dir.join(id)) {
            Ok(file) => {
                let len = file.metadata()?.len();
                Ok(Some(Box::new(StoredFile {
                    file: std::sync::Arc::new(file),
                    len,
                })))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn delete(&self, id: &str) -> io::Result<()> {
        check_id(id)?;
        match fs::remove_file(self.dir.join(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn sweep(&self, keep: &mut dyn FnMut(&str) -> bool) -> io::Result<Vec<String>> {
        let names = fs::read_dir(&self.dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<Vec<_>>>()?;
        let own = self.own_staging();
        let mut removed = Vec::new();
        for name in names {
            let gone = if name.starts_with(STAGING) {
                name.starts_with(&own)
            } else {
                !keep(&name)
            };
            if gone {
                match fs::remove_file(self.dir.join(&name)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => removed.push(name),
                }
            }
        }
        Ok(removed)
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// An image file, read as mapped windows.
struct StoredFile {
    /// Shared with the windows in flight, which sendfile from it.
    file: std::sync::Arc<File>,
    len: u64,
}

impl Stored for StoredFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn chunk(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let len = usize::try_from(self.len.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(len);
        if len == 0 {
            return Ok(Bytes::new());
        }
        // Unmapped when hyper has written the window and drops the Bytes;
        // registered as the file's bytes until then, for sendfile.
        let map = super::mapped::window(&self.file, offset, len)?;
        Ok(Bytes::from_owner(super::zerocopy::FileWindow::new(
            map,
            self.file.clone(),
            offset,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_data_is_visible_only_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path().join("images"), "r1").unwrap();
        let mut w = s.stage("a").unwrap();
        w.write(b"hello").unwrap();
        assert!(s.open("a").unwrap().is_none(), "not visible before commit");
        w.commit().unwrap();
        let d = s.open("a").unwrap().unwrap();
        assert_eq!(
            (d.chunk(0, usize::MAX).unwrap().as_ref(), d.len()),
            (&b"hello"[..], 5)
        );

        // Dropped without commit: nothing left behind.
        let mut w = s.stage("b").unwrap();
        w.write(b"partial").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(s.dir()).unwrap().count(), 1);

        // This replica's leftover staging file and an orphan are swept;
        // another replica's staging file (its upload under way) is not.
        fs::write(s.dir().join(".staging-r1-c-1"), b"x").unwrap();
        fs::write(s.dir().join(".staging-r2-d-1"), b"x").unwrap();
        fs::write(s.dir().join("orphan"), b"x").unwrap();
        let mut removed = s.sweep(&mut |id| id == "a").unwrap();
        removed.sort();
        assert_eq!(removed, vec![".staging-r1-c-1", "orphan"]);
        assert!(s.open("a").unwrap().is_some());
        assert!(s.dir().join(".staging-r2-d-1").exists());
        assert!(s.stage("../x").is_err());
        assert!(FileStore::open(dir.path().join("x"), "../r").is_err());
    }

    #[test]
    fn chunks_are_windows_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path(), "r1").unwrap();
        let data: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i % 253) as u8).collect();
        let mut w = s.stage("a").unwrap();
        w.write(&data).unwrap();
        w.commit().unwrap();
        let d = s.open("a").unwrap().unwrap();
        assert_eq!(d.len(), data.len() as u64);
        // Unaligned offsets, the end, and past it.
        assert_eq!(d.chunk(5000, 10).unwrap().as_ref(), &data[5000..5010]);
        assert_eq!(d.chunk(4096, 4096).unwrap().as_ref(), &data[4096..8192]);
        assert_eq!(d.chunk(12000, 1 << 20).unwrap().as_ref(), &data[12000..]);
        assert!(d.chunk(data.len() as u64, 10).unwrap().is_empty());
        assert!(d.chunk(1 << 40, 10).unwrap().is_empty());
        // Deleting the file leaves a download under way whole.
        s.delete("a").unwrap();
        assert_eq!(d.chunk(0, usize::MAX).unwrap().as_ref(), data.as_slice());
    }
}
