//! Reading and writing files without trusting them: [`read_file`] reads a regular file whole
//! (never blocking on a FIFO, never faulting on a file truncated meanwhile), and writes are
//! atomic so that nothing is lost: a file appears complete or not at all. [`same_file`] and
//! [`refuse_overwriting`] keep an output from replacing one of a command's inputs.
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
use std::io::{BufWriter, Read, Write};
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
    /// dangling link, or naming the temporary file when it cannot be created (missing or
    /// read-only folder; a stale file of the same name is passed over, see
    /// `create_temporary`).
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
        let (tmp, file) = create_temporary(&dir, &name)?;
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

/// Most names tried for one temporary file before giving up.
const TEMPORARY_NAME_ATTEMPTS: u32 = 1000;

/// Creates a new temporary file `.<name>.<pid>.<n>.tmp` in `dir` (never opening an existing
/// one): a name already taken (a stale file of a crashed process whose PID this one reuses, a
/// file of the same name pattern) is passed over for the next `n`.
/// Errors: [`Error::Io`] naming the temporary file that cannot be created (missing or read-only
/// folder, ...), or naming the last name tried when every one of [`TEMPORARY_NAME_ATTEMPTS`]
/// names is taken.
fn create_temporary(dir: &Path, name: &str) -> Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..TEMPORARY_NAME_ATTEMPTS {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some((tmp, e)),
            Err(e) => return Err(Error::io(&tmp, e)),
        }
    }
    let (tmp, e) = last.expect("at least one attempt");
    Err(Error::io(&tmp, e))
}

/// What a non-regular file is, for error messages ("a FIFO (named pipe)", "a directory", ...).
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading without blocking (a FIFO opens at once instead of waiting for a
/// writer) and checks, on the open file (`fstat`, so no race with a rename between a check and
/// the open), that it is a regular file. Returns the file and its size in bytes.
/// Errors: [`Error::Io`] naming `path` when it cannot be opened or is not a regular file (a
/// FIFO, a device, a socket, a directory).
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(io_err(
            path,
            &format!("is {}, not a regular file", kind_of(meta.file_type())),
        ));
    }
    Ok((file, meta.len()))
}

/// Reads the whole regular file at `path` into memory, without trusting it: a FIFO, a device,
/// a socket or a directory is refused before anything is read (see [`open_regular`]); the
/// buffer is a fallible allocation of the size the file has when opened; a file that shrinks or
/// grows while it is read is an error (so a concurrent truncation never hands half a file to a
/// parser, and never faults as a memory map would with `SIGBUS`).
/// Errors: [`Error::Io`] naming `path` (cannot open, not regular, read error, changed while
/// read); [`Error::OutOfMemory`] naming it when its size cannot be allocated.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    read_file_at_most(path, u64::MAX, "a file")
}

/// [`read_file`] of a file that may hold at most `max` bytes: a larger one is refused from its
/// size, before anything is allocated or read. Errors: as [`read_file`]; [`Error::Format`]
/// naming `path`, its size, `max` and `what` (e.g. "a recipe") when it is larger.
pub fn read_file_at_most(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    if len > max {
        return Err(Error::format(
            path,
            format!("{len} bytes, more than the {max} bytes {what} may have"),
        ));
    }
    let cap = usize::try_from(len)
        .ok()
        .and_then(|n| n.checked_add(1))
        .ok_or_else(|| Error::OutOfMemory {
            what: format!("reading {}", path.display()),
            bytes: len,
        })?;
    let mut buf = crate::mem::with_capacity(cap, || format!("reading {}", path.display()))?;
    // One byte more than the size seen at open: reading it means the file grew meanwhile.
    file.take(len + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path, e))?;
    let got = buf.len() as u64;
    if got < len {
        return Err(io_err(
            path,
            &format!("changed while being read: {len} bytes when opened, only {got} could be read (truncated meanwhile)"),
        ));
    }
    if got > len {
        return Err(io_err(
            path,
            &format!("changed while being read: it grew beyond the {len} bytes it had when opened"),
        ));
    }
    Ok(buf)
}

/// [`read_file`] as UTF-8 text. Errors: as [`read_file`]; [`Error::Format`] naming `path` when
/// it is not UTF-8 (with the byte offset of the first invalid byte).
pub fn read_text(path: &Path) -> Result<String> {
    read_text_at_most(path, u64::MAX, "a file")
}

/// [`read_text`] of a file that may hold at most `max` bytes (see [`read_file_at_most`]).
pub fn read_text_at_most(path: &Path, max: u64, what: &str) -> Result<String> {
    String::from_utf8(read_file_at_most(path, max, what)?).map_err(|e| {
        Error::format(
            path,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Whether `a` and `b` are the same existing file: same device and inode (symbolic links
/// followed, so a link and its target, or two hard links, are the same file). False when
/// either does not exist.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// Refuses to write `output` when it is the same file as one of `inputs` ([`same_file`]):
/// writing it would replace an input (a photo, the checkpoint) with the output.
/// Errors: [`Error::Invalid`] naming both paths.
pub fn refuse_overwriting<'a>(
    output: &Path,
    inputs: impl IntoIterator<Item = &'a Path>,
) -> Result<()> {
    if std::fs::metadata(output).is_err() {
        return Ok(()); // a new file cannot be an input
    }
    for input in inputs {
        if same_file(output, input) {
            return Err(Error::Invalid(format!(
                "output {} is the input {}: refusing to overwrite an input (choose another output path)",
                output.display(),
                input.display()
            )));
        }
    }
    Ok(())
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

    /// Stale temporary files with the names this process is about to use (a crashed run whose
    /// PID it reuses) are passed over and left alone; a temporary file that cannot be created
    /// is named in the error.
    #[test]
    fn stale_temporary_files_are_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.ckpt");
        let next = COUNTER.load(Ordering::Relaxed);
        let pid = std::process::id();
        let stale: Vec<PathBuf> = (next..next + 3)
            .map(|n| dir.path().join(format!(".m.ckpt.{pid}.{n}.tmp")))
            .collect();
        for s in &stale {
            std::fs::write(s, b"stale").unwrap();
        }
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        for s in &stale {
            assert_eq!(std::fs::read(s).unwrap(), b"stale");
        }
        assert_eq!(entries(dir.path()).len(), 4);
        let missing = dir.path().join("no/such/dir/x.ckpt");
        let e = write_atomic(&missing, b"x").unwrap_err().to_string();
        let want = format!(
            "{}/.x.ckpt.{pid}.",
            dir.path().join("no/such/dir").display()
        );
        assert!(
            e.starts_with(&want) && e.contains(".tmp: No such file"),
            "{e}"
        );
    }

    /// A second lock on a folder is refused naming the holder's PID; released on drop, the
    /// lock is taken again (a lock file nobody holds is no obstacle).
    #[test]
    fn dir_lock_is_exclusive_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "test").unwrap();
        assert_eq!(
            std::fs::read_to_string(first.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
        let e = DirLock::acquire(dir.path(), "test")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "locked by another test (PID {})",
                std::process::id()
            )),
            "{e}"
        );
        drop(first);
        let again = DirLock::acquire(dir.path(), "test").unwrap();
        assert!(again.path().ends_with(LOCK_FILE_NAME));
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

/// An exclusive lock on a folder, held by this process until dropped: an advisory `flock` on
/// the file `<dir>/.senet.lock` (through the `fs4` crate), which holds the holder's PID.
///
/// The kernel releases the lock when its holder's file is closed, so a process that died (even
/// by SIGKILL or a power loss on a local disk) leaves a lock file nobody holds: the next
/// [`DirLock::acquire`] takes it over, with no PID liveness guess (no PID-reuse race). The file
/// itself is left in place when the lock is released: removing it would let two processes lock
/// two different files of the same name.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    // Kept open: closing it releases the lock.
    _file: File,
}

/// The lock file's name inside the locked folder.
pub const LOCK_FILE_NAME: &str = ".senet.lock";

impl DirLock {
    /// Locks `dir` (which must exist) for `what` (e.g. "training run", for the message).
    /// Errors: [`Error::Io`] naming the lock file when another process holds the lock (with its
    /// PID, as it wrote it), or when the file cannot be opened, locked or written.
    pub fn acquire(dir: &Path, what: &str) -> Result<DirLock> {
        use fs4::FileExt;
        let path = dir.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // Called through the trait: std's inherent File::try_lock (Rust 1.89) would otherwise
        // shadow it on newer compilers.
        match FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim().parse::<u32>() {
                    Ok(pid) => format!("PID {pid}"),
                    Err(_) => "a process that has not written its PID yet".to_string(),
                };
                return Err(io_err(
                    &path,
                    &format!(
                        "{} is locked by another {what} ({holder}): wait for it to end or use \
                         another folder",
                        dir.display()
                    ),
                ));
            }
            Err(fs4::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|_| file.write_all(pid.as_bytes()))
            .and_then(|_| file.flush())
            .map_err(|e| Error::io(&path, e))?;
        Ok(DirLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
