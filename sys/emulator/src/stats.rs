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
use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::{Once, OnceLock};
use std::time::Duration;

/// The environment variable naming the file.
pub const ENV_STATS: &str = "SENET_EMU_STATS";

static ARMED: Once = Once::new();
static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();

extern "C" {
    fn atexit(cb: extern "C" fn()) -> c_int;
}

extern "C" fn at_exit() {
    write_now();
}

/// The file to write (`SENET_EMU_STATS`, `{pid}` substituted), read once.
fn path() -> Option<&'static PathBuf> {
    PATH.get_or_init(|| {
        let v = std::env::var(ENV_STATS).ok()?;
        let v = v.trim();
        (!v.is_empty()).then(|| PathBuf::from(v.replace("{pid}", &std::process::id().to_string())))
    })
    .as_ref()
}

/// Registers the exit handler if `SENET_EMU_STATS` is set (once per process).
pub fn arm() {
    ARMED.call_once(|| {
        if path().is_some() {
            // SAFETY: `at_exit` is a plain extern "C" function of this library, which stays
            // mapped until its handlers have run (glibc runs a DSO's handlers at its dlclose).
            unsafe { atexit(at_exit) };
        }
    });
}

/// Writes the counts now (if `SENET_EMU_STATS` is set); errors go to stderr.
pub fn write_now() {
    let Some(path) = path() else { return };
    if let Err(e) = write(path) {
        eprintln!(
            "senet-cann-emu: {ENV_STATS}: cannot write {}: {e}",
            path.display()
        );
    }
}

fn write(path: &std::path::Path) -> std::io::Result<()> {
    let counts = crate::control::counts_snapshot(Duration::from_secs(2)).ok_or_else(|| {
        std::io::Error::other("the call counters stayed locked by another thread")
    })?;
    let text = serde_json::to_string_pretty(&counts).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, path)
}
