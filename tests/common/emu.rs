//! The CANN emulator (`sys/emulator`, crate `senet-cann-emu`) for the Ascend tests: finding or
//! building `libsenet_cann_emu.so`, pointing senet's loader at it (`SENET_CANN_LIB`), and its
//! test-control functions (failure injection, live-resource counters, call counts).
use std::ffi::{c_char, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

const LIB: &str = "libsenet_cann_emu.so";

/// `target/<profile>` of the running test binary (`target/<profile>/deps/<test>-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary inside target/<profile>/deps")
        .to_path_buf()
}

/// Cargo's `--profile` name for a `target/<dir>` directory.
fn profile_name(dir: &Path) -> String {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".into(),
        Some(other) => other.into(),
    }
}

/// Builds the emulator with the running test's profile into a target directory of its own
/// (`target/senet-cann-emu`): `cargo test` may still hold the lock of the main one.
fn build(profile_dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = profile_dir
        .parent()
        .expect("target directory")
        .join("senet-cann-emu");
    let profile = profile_name(profile_dir);
    eprintln!(
        "no {LIB} from the current sources beside the test binary: building it into {}",
        target.display()
    );
    let status = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "-p",
            "senet-cann-emu",
            "--profile",
            &profile,
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .expect("running cargo build -p senet-cann-emu");
    assert!(status.success(), "cargo build -p senet-cann-emu failed");
    let dir = match profile.as_str() {
        "dev" => "debug",
        p => p,
    };
    target.join(dir).join(LIB)
}

/// The newest modification time of the emulator's sources (`sys/emulator`: its manifest, build
/// script, `src/` and C headers), or `None` when they cannot be read.
fn newest_source() -> Option<SystemTime> {
    fn walk(path: &Path, newest: &mut SystemTime) -> std::io::Result<()> {
        let meta = std::fs::metadata(path)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                walk(&entry?.path(), newest)?;
            }
        } else {
            *newest = (*newest).max(meta.modified()?);
        }
        Ok(())
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sys");
    let mut newest = SystemTime::UNIX_EPOCH;
    for part in [
        "emulator/Cargo.toml",
        "emulator/src",
        "emulator/contract",
        "include",
    ] {
        walk(&root.join(part), &mut newest).ok()?;
    }
    Some(newest)
}

/// Whether a built library is at least as new as every emulator source (a `cargo test --test X`
/// builds only the root package, so `target/<profile>/` may hold an emulator older than the
/// sources it is tested against).
fn is_fresh(lib: &Path) -> bool {
    let built = std::fs::metadata(lib).and_then(|m| m.modified());
    matches!((built, newest_source()), (Ok(b), Some(s)) if b >= s)
}

/// The emulator library: `target/<profile>/libsenet_cann_emu.so` or `.../deps/...` when a cargo
/// build of this workspace made it from the current sources, else a build of its own
/// ([`build`], a no-op when that one is current).
pub fn library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let dir = profile_dir();
        let candidates = [dir.join(LIB), dir.join("deps").join(LIB)];
        match candidates.iter().find(|p| p.is_file() && is_fresh(p)) {
            Some(p) => p.clone(),
            None => build(&dir),
        }
    })
}

/// Points senet's CANN loader at the emulator (once per process, before the first backend
/// call: the loader reads `SENET_CANN_LIB` once).
pub fn install() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let lib = library();
        std::env::set_var(senet_cann_sys::EXPLICIT_PATH_VAR, lib);
    });
}

/// The emulator's test-control API, resolved from the same library senet loaded.
pub struct Control {
    _lib: libloading::Library,
    inject: unsafe extern "C" fn(*const c_char, u32, i32),
    clear: unsafe extern "C" fn(),
    live_allocations: unsafe extern "C" fn() -> u64,
    live_bytes: unsafe extern "C" fn() -> u64,
    live_objects: unsafe extern "C" fn() -> u64,
    call_count: unsafe extern "C" fn(*const c_char) -> u64,
}

impl Control {
    /// Makes the `(after_calls + 1)`-th call of `function` from now return `code`.
    pub fn inject(&self, function: &str, after_calls: u32, code: i32) {
        let f = CString::new(function).unwrap();
        // SAFETY: NUL-terminated string.
        unsafe { (self.inject)(f.as_ptr(), after_calls, code) }
    }

    /// Drops pending injected failures.
    pub fn clear(&self) {
        // SAFETY: no arguments.
        unsafe { (self.clear)() }
    }

    /// Live device allocations.
    pub fn live_allocations(&self) -> u64 {
        // SAFETY: no arguments.
        unsafe { (self.live_allocations)() }
    }

    /// Bytes of live device allocations.
    pub fn live_bytes(&self) -> u64 {
        // SAFETY: no arguments.
        unsafe { (self.live_bytes)() }
    }

    /// Live aclnn objects (tensors, scalars, arrays, executors).
    pub fn live_objects(&self) -> u64 {
        // SAFETY: no arguments.
        unsafe { (self.live_objects)() }
    }

    /// Calls of `function` since the process started.
    pub fn calls(&self, function: &str) -> u64 {
        let f = CString::new(function).unwrap();
        // SAFETY: NUL-terminated string.
        unsafe { (self.call_count)(f.as_ptr()) }
    }
}

/// The control API (installs the emulator first).
pub fn control() -> &'static Control {
    static CONTROL: OnceLock<Control> = OnceLock::new();
    CONTROL.get_or_init(|| {
        install();
        // SAFETY: the emulator library has no initialisers with preconditions; dlopen of the
        // same path returns the handle senet's loader uses (one copy of the emulator's state).
        unsafe {
            let lib = libloading::Library::new(library()).expect("open the emulator");
            macro_rules! get {
                ($name:literal) => {
                    *lib.get($name).expect(std::str::from_utf8($name).unwrap())
                };
            }
            Control {
                inject: get!(b"senetEmuInjectFailure\0"),
                clear: get!(b"senetEmuClearFailures\0"),
                live_allocations: get!(b"senetEmuLiveAllocations\0"),
                live_bytes: get!(b"senetEmuLiveBytes\0"),
                live_objects: get!(b"senetEmuLiveObjects\0"),
                call_count: get!(b"senetEmuCallCount\0"),
                _lib: lib,
            }
        }
    })
}

/// Serialises the tests of one binary that use the emulator (its live-resource counters are
/// global), installs it and clears pending injected failures. Hold the guard for the test.
pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    install();
    control().clear();
    guard
}

/// A float32 Ascend backend on emulated NPU 0.
pub fn fp32() -> senet::backend::ascend::AscendBackend {
    senet::backend::ascend::AscendBackend::new(0, senet::backend::ascend::Precision::Fp32).unwrap()
}

/// Largest |a - b|.
pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// Deterministic values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The emulator's call counts of one steady-state training step: the `SENET_EMU_STATS` counts
/// of an `iters_long`-step `senet bench --train` run minus those of an `iters_short`-step run,
/// divided by the difference (so the set-up and the first step cancel out), with the bench
/// report of the longer run (its `per_step` is the backend's own count of the same steps).
pub struct StepCounts {
    /// Calls per step by function name (functions called as often in both runs are absent).
    pub calls: std::collections::BTreeMap<String, f64>,
    /// `senet bench --json` of the longer run.
    pub report: serde_json::Value,
}

impl StepCounts {
    /// Calls of `function` per step.
    pub fn of(&self, function: &str) -> f64 {
        self.calls.get(function).copied().unwrap_or(0.0)
    }

    /// aclnn operator launches per step (the phase-2 calls: `aclnn*` without
    /// `GetWorkspaceSize`).
    pub fn launches(&self) -> f64 {
        self.calls
            .iter()
            .filter(|(k, _)| k.starts_with("aclnn") && !k.ends_with("GetWorkspaceSize"))
            .map(|(_, v)| v)
            .sum()
    }

    /// Synchronises per step (stream, event and device).
    pub fn synchronizes(&self) -> f64 {
        [
            "aclrtSynchronizeStream",
            "aclrtSynchronizeEvent",
            "aclrtSynchronizeDevice",
        ]
        .iter()
        .map(|f| self.of(f))
        .sum()
    }
}

/// [`StepCounts`] of `senet bench --device ascend --train --model <model> --batch_size <batch>
/// --image_size <size> --amp_level <amp> --warmup 0` on the emulated `soc` (CANN 9.1), from
/// runs of `short` and `long` iterations.
pub fn step_counts(
    soc: &str,
    model: &str,
    batch: usize,
    size: usize,
    amp: &str,
    (short, long): (usize, usize),
) -> StepCounts {
    assert!(long > short);
    let dir = tempfile::tempdir().unwrap();
    let run = |iters: usize| {
        let stats = dir.path().join(format!("stats-{iters}.json"));
        let (b, s, n) = (batch.to_string(), size.to_string(), iters.to_string());
        let out = super::cli::command(&[
            "bench",
            "--device",
            "ascend",
            "--train",
            "--model",
            model,
            "--batch_size",
            &b,
            "--image_size",
            &s,
            "--amp_level",
            amp,
            "--warmup",
            "0",
            "--iters",
            &n,
            "--json",
        ])
        .env(senet_cann_sys::EXPLICIT_PATH_VAR, library())
        .env_remove("DEVICE_ID")
        .env("SENET_EMU_SOC", soc)
        .env("SENET_EMU_CANN_VERSION", "9.1")
        .env("SENET_EMU_STATS", &stats)
        .output()
        .expect("run senet bench");
        let stdout = super::cli::ok(&out);
        let counts: std::collections::BTreeMap<String, f64> =
            serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
        (counts, serde_json::from_str(stdout.trim()).unwrap())
    };
    let (a, _) = run(short);
    let (b, report) = run(long);
    let steps = (long - short) as f64;
    let calls = a
        .keys()
        .chain(b.keys())
        .filter_map(|k| {
            let d = b.get(k).unwrap_or(&0.0) - a.get(k).unwrap_or(&0.0);
            (d != 0.0).then(|| (k.clone(), d / steps))
        })
        .collect();
    StepCounts { calls, report }
}
