//! Where image data lives. [`ImageStore`] is the interface; [`FileStore`]
//! keeps each image in one file under `STATE_DIR/images`. An object store
//! (the S3 API) can implement the same trait later: stage, commit, open,
//! delete, sweep.
//!
//! A file is written under a staging name (`.staging-<id>-<n>`), fsynced,
//! then renamed to `<id>` and the directory fsynced: a kill -9 at any point
//! leaves either the whole image or none, and [`ImageStore::sweep`] at the
//! next start removes what a dead upload left.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
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

/// The image data store. Blocking: call from a blocking thread.
pub trait ImageStore: Send + Sync {
    /// Starts writing `id`'s data.
    fn stage(&self, id: &str) -> io::Result<Box<dyn Staged>>;
    /// `id`'s data and its length, or `None` when it has none.
    fn open(&self, id: &str) -> io::Result<Option<(Box<dyn Read + Send>, u64)>>;
    /// Removes `id`'s data (nothing if there is none).
    fn delete(&self, id: &str) -> io::Result<()>;
    /// Removes staged leftovers and the data of every image `keep` rejects;
    /// returns what it removed.
    fn sweep(&self, keep: &dyn Fn(&str) -> bool) -> io::Result<Vec<String>>;
}

/// Image files in one directory.
pub struct FileStore {
    dir: PathBuf,
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
    /// Opens (creating) the directory.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<FileStore> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(FileStore {
            dir,
            seq: AtomicU64::new(0),
        })
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
        let tmp = self
            .dir
            .join(format!("{STAGING}{id}-{}-{n}", std::process::id()));
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        Ok(Box::new(StagedFile {
            file: Some(file),
            tmp,
            dest: self.dir.join(id),
            dir: self.dir.clone(),
        }))
    }

    fn open(&self, id: &str) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        check_id(id)?;
        match File::open(self.dir.join(id)) {
            Ok(f) => {
                let len = f.metadata()?.len();
                Ok(Some((Box::new(f), len)))
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

    fn sweep(&self, keep: &dyn Fn(&str) -> bool) -> io::Result<Vec<String>> {
        let mut removed = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGING) || !keep(&name) {
                fs::remove_file(entry.path())?;
                removed.push(name);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_data_is_visible_only_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path().join("images")).unwrap();
        let mut w = s.stage("a").unwrap();
        w.write(b"hello").unwrap();
        assert!(s.open("a").unwrap().is_none(), "not visible before commit");
        w.commit().unwrap();
        let (mut r, len) = s.open("a").unwrap().unwrap();
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!((got.as_str(), len), ("hello", 5));

        // Dropped without commit: nothing left behind.
        let mut w = s.stage("b").unwrap();
        w.write(b"partial").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(s.dir()).unwrap().count(), 1);

        // A leftover staging file and an orphan are swept.
        fs::write(s.dir().join(".staging-c-1-1"), b"x").unwrap();
        fs::write(s.dir().join("orphan"), b"x").unwrap();
        let mut removed = s.sweep(&|id| id == "a").unwrap();
        removed.sort();
        assert_eq!(removed, vec![".staging-c-1-1", "orphan"]);
        assert!(s.open("a").unwrap().is_some());
        assert!(s.stage("../x").is_err());
    }
}
