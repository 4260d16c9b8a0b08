//! `SENET_EMU_STATS=FILE`: at process exit the emulator writes `FILE`, a JSON object
//! `{"function name": call count}` of every exported CANN function called in the process (so a
//! program's API cost can be measured from outside, as the difference between two runs).
//!
//! Exit in a cdylib: Rust statics are never dropped, and thread-locals may already be gone, so
//! the file is written by a C `atexit` handler registered from inside the emulator on its first
//! counted call. In a shared object glibc's `atexit` registers with the object's DSO handle
//! (`__cxa_atexit`), so the handler runs on `exit()` (a return from `main`,
//! `std::process::exit`) and on `dlclose` of the library, whichever comes first, while the
//! library's code is still mapped. The handler only takes the counters with a bounded `try_lock`
//! (another thread may hold them while the process exits) and writes through a temporary file
//! renamed into place. `aclFinalize` writes the file too, so a process that finalises and is then
//! killed still leaves its counts. `{pid}` in `FILE` is replaced by the process id (one file per
//! rank of a multi-process job).
//!
//! `SENET_EMU_TRACE=FILE` likewise writes, at the same moments, the device work in the order it
//! was queued: one line per task, `<stream handle>\t<the call that queued it>` (aclnn launches,
//! `HcclAllReduce`, async copies and memsets, event records and waits), and one line
//! `host\t<call>` per host synchronise (stream, event, device). So a test can see which work
//! was queued before which, and on which stream.
use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

/// The environment variable naming the file.
pub const ENV_STATS: &str = "SENET_EMU_STATS";
/// The environment variable naming the trace file.
pub const ENV_TRACE: &str = "SENET_EMU_TRACE";

static ARMED: Once = Once::new();
static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
static TRACE_PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
static TRACE: Mutex<Vec<String>> = Mutex::new(Vec::new());

extern "C" {
    fn atexit(cb: extern "C" fn()) -> c_int;
}

extern "C" fn at_exit() {
    write_now();
}

/// The file named by the environment variable `var` (`{pid}` substituted).
fn env_path(var: &str) -> Option<PathBuf> {
    let v = std::env::var(var).ok()?;
    let v = v.trim();
    (!v.is_empty()).then(|| PathBuf::from(v.replace("{pid}", &std::process::id().to_string())))
}

/// The file to write (`SENET_EMU_STATS`, `{pid}` substituted), read once.
fn path() -> Option<&'static PathBuf> {
    PATH.get_or_init(|| env_path(ENV_STATS)).as_ref()
}

/// The trace file (`SENET_EMU_TRACE`, `{pid}` substituted), read once.
fn trace_path() -> Option<&'static PathBuf> {
    TRACE_PATH.get_or_init(|| env_path(ENV_TRACE)).as_ref()
}

/// Appends `line` to the trace when `SENET_EMU_TRACE` is set.
pub fn trace(line: impl FnOnce() -> String) {
    if trace_path().is_some() {
        arm();
        TRACE.lock().unwrap_or_else(|e| e.into_inner()).push(line());
    }
}

/// Registers the exit handler if `SENET_EMU_STATS` or `SENET_EMU_TRACE` is set (once per
/// process).
pub fn arm() {
    ARMED.call_once(|| {
        if path().is_some() || trace_path().is_some() {
            // SAFETY: `at_exit` is a plain extern "C" function of this library, which stays
            // mapped until its handlers have run (glibc runs a DSO's handlers at its dlclose).
            unsafe { atexit(at_exit) };
        }
    });
}

/// Writes the counts and the trace now (each if its variable is set); errors go to stderr.
pub fn write_now() {
    if let Some(path) = path() {
        if let Err(e) = write_counts(path) {
            eprintln!(
                "senet-cann-emu: {ENV_STATS}: cannot write {}: {e}",
                path.display()
            );
        }
    }
    if let Some(path) = trace_path() {
        if let Err(e) = write_trace(path) {
            eprintln!(
                "senet-cann-emu: {ENV_TRACE}: cannot write {}: {e}",
                path.display()
            );
        }
    }
}

fn write_counts(path: &std::path::Path) -> std::io::Result<()> {
    let counts = crate::control::counts_snapshot(Duration::from_secs(2)).ok_or_else(|| {
        std::io::Error::other("the call counters stayed locked by another thread")
    })?;
    let text = serde_json::to_string_pretty(&counts).map_err(std::io::Error::other)?;
    write_atomic(path, text + "\n")
}

fn write_trace(path: &std::path::Path) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let lines = loop {
        match TRACE.try_lock() {
            Ok(g) => break g.clone(),
            Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner().clone(),
            Err(std::sync::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(std::io::Error::other(
                    "the trace stayed locked by another thread",
                ))
            }
        }
    };
    let mut text = lines.join("\n");
    text.push('\n');
    write_atomic(path, text)
}

/// Writes `text` to a temporary beside `path`, then renames it into place.
fn write_atomic(path: &std::path::Path, text: String) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
