//! `SENET_EMU_STATS=FILE`: the call counts reach the file however the process ends normally —
//! returning from `main`, `std::process::exit` without `aclFinalize`, through the rlib and
//! through the cdylib (kept loaded, or unloaded first). Each case runs this test binary again as
//! a child process.
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use senet_cann_sys::*;

const MODE_VAR: &str = "SENET_EMU_TEST_STATS_MODE";

/// The entry points a child calls: the rlib's or the cdylib's.
struct Fns {
    init: unsafe extern "C" fn(*const std::os::raw::c_char) -> aclError,
    set_device: unsafe extern "C" fn(i32) -> aclError,
    malloc: unsafe extern "C" fn(*mut *mut c_void, usize, aclrtMemMallocPolicy) -> aclError,
    free: unsafe extern "C" fn(*mut c_void) -> aclError,
    recent: unsafe extern "C" fn() -> *const std::os::raw::c_char,
}

impl Fns {
    fn rlib() -> Fns {
        use senet_cann_emu::*;
        Fns {
            init: aclInit,
            set_device: aclrtSetDevice,
            malloc: aclrtMalloc,
            free: aclrtFree,
            recent: aclGetRecentErrMsg,
        }
    }

    fn cdylib(acl: &AscendCl) -> Fns {
        Fns {
            init: *acl.aclInit.as_ref().unwrap(),
            set_device: *acl.aclrtSetDevice.as_ref().unwrap(),
            malloc: *acl.aclrtMalloc.as_ref().unwrap(),
            free: *acl.aclrtFree.as_ref().unwrap(),
            recent: *acl.aclGetRecentErrMsg.as_ref().unwrap(),
        }
    }
}

/// Makes the calls every child makes: aclInit, 2 aclrtSetDevice, 2 aclrtMalloc, 1 aclrtFree,
/// 1 failing aclrtFree (counted too), 1 aclGetRecentErrMsg.
fn calls(f: &Fns) {
    unsafe {
        assert_eq!((f.init)(std::ptr::null()), 0);
        for _ in 0..2 {
            assert_eq!((f.set_device)(0), 0);
        }
        let mut p: *mut c_void = std::ptr::null_mut();
        let policy = aclrtMemMallocPolicy::ACL_MEM_MALLOC_HUGE_FIRST;
        for _ in 0..2 {
            assert_eq!((f.malloc)(&mut p, 64, policy), 0);
        }
        assert_eq!((f.free)(p), 0);
        assert_ne!((f.free)(p), 0);
        (f.recent)();
    }
}

fn cdylib() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .join("libsenet_cann_emu.so")
}

/// The child: does nothing in a normal test run.
#[test]
fn child() {
    let Ok(mode) = std::env::var(MODE_VAR) else {
        return;
    };
    match mode.as_str() {
        // The rlib linked into this binary, exported functions called directly.
        "rlib-return" | "rlib-exit" => {
            calls(&Fns::rlib());
            if mode == "rlib-exit" {
                std::process::exit(0);
            }
        }
        "cdylib-exit" | "cdylib-unload" => {
            let acl = unsafe { AscendCl::new(cdylib()) }.unwrap();
            calls(&Fns::cdylib(&acl));
            if mode == "cdylib-unload" {
                drop(acl);
            } else {
                std::mem::forget(acl);
            }
            std::process::exit(0);
        }
        other => panic!("unknown mode {other}"),
    }
}

fn run_child(mode: &str, file: &Path) -> BTreeMap<String, u64> {
    let _ = std::fs::remove_file(file);
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--test-threads=1"])
        .env(MODE_VAR, mode)
        .env("SENET_EMU_STATS", file)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{mode}: {status}");
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{mode}: {} not written: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{mode}: {e}: {text}"))
}

#[test]
fn counts_are_written_at_exit() {
    let dir = std::env::temp_dir().join(format!("senet-emu-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let want: BTreeMap<String, u64> = [
        ("aclInit", 1),
        ("aclrtSetDevice", 2),
        ("aclrtMalloc", 2),
        ("aclrtFree", 2),
        ("aclGetRecentErrMsg", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for mode in ["rlib-return", "rlib-exit", "cdylib-exit", "cdylib-unload"] {
        let file = dir.join(format!("{mode}.json"));
        assert_eq!(run_child(mode, &file), want, "{mode}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
