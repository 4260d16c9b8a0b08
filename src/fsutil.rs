//! Writing files so that nothing is lost: a file appears complete or not at all.
//!
//! [`AtomicFile`] writes into a uniquely named hidden temporary file beside the target
//! (`.<name>.<pid>.<n>.tmp`), flushes and syncs it, then renames it over the target. The
//! temporary file is removed on any failure (or when the writer is dropped unfinished), so a
//! crash or an error never leaves a truncated target or a stray file behind. A target that is a
//! symbolic link is written through the link; a target that exists but is not a regular file
//! (a character device such as `/dev/null`, a FIFO) is written directly, never replaced; a
//! directory is an error.
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written atomically (see the module docs). Implements [`Write`].
pub struct AtomicFile {
    target: PathBuf,
    /// The temporary file, None when writing directly into a non-regular target.
    tmp: Option<PathBuf>,
    out: Option<BufWriter<File>>,
}

fn io_err(path: &Path, msg: &str) -> Error {
    Error::io(path, std::io::Error::other(msg.to_string()))
}

impl AtomicFile {
    /// Starts writing `path`. Errors: [`Error::Io`] naming `path` when it is a directory or a
    /// dangling link, or naming the folder when the temporary file cannot be created there
    /// (missing, read-only).
    pub fn create(path: &Path) -> Result<AtomicFile> {
        let mut target = path.to_path_buf();
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.file_type().is_symlink() {
                target = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
            }
        }
        if let Ok(meta) = std::fs::metadata(&target) {
            if meta.is_dir() {
                return Err(io_err(path, "is a directory, not a file"));
            }
            if !meta.is_file() {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .map_err(|e| Error::io(path, e))?;
                return Ok(AtomicFile {
                    target,
                    tmp: None,
                    out: Some(BufWriter::with_capacity(1 << 20, file)),
                });
            }
        }
        let name = target
            .file_name()
            .ok_or_else(|| io_err(path, "has no file name"))?
            .to_string_lossy()
            .into_owned();
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(&dir, e))?;
        Ok(AtomicFile {
            target,
            tmp: Some(tmp),
            out: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The path being written (for error messages).
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Flushes and syncs, then renames the temporary file over the target.
    /// Errors: [`Error::Io`] naming the target; the temporary file is removed.
    pub fn commit(mut self) -> Result<()> {
        let mut out = self.out.take().expect("commit called once");
        let res = out.flush().and_then(|_| match &self.tmp {
            Some(_) => out.get_ref().sync_all(),
            None => Ok(()),
        });
        drop(out);
        res.map_err(|e| Error::io(&self.target, e))?;
        if let Some(tmp) = self.tmp.take() {
            if let Err(e) = std::fs::rename(&tmp, &self.target) {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::io(&self.target, e));
            }
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out
            .as_mut()
            .expect("writer used after commit")
            .write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.as_mut().expect("writer used after commit").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        self.out.take();
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Writes `bytes` to `path` atomically. Errors as [`AtomicFile::create`] and
/// [`AtomicFile::commit`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_whole_file_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(entries(dir.path()), vec!["a.bin"]);
        // Dropped unfinished: target untouched, temporary removed.
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(entries(dir.path()), vec!["a.bin"]);
    }

    #[test]
    fn directories_links_and_devices() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(dir.path(), b"x").unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        let missing = dir.path().join("no/such/dir/f.npy");
        assert!(write_atomic(&missing, b"x").is_err());
        // Through a symlink: the link stays, its target is replaced.
        let real = dir.path().join("real.txt");
        std::fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        // A character device is written, not replaced.
        write_atomic(Path::new("/dev/null"), b"discarded").unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
    }
}
