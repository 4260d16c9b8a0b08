//! The emulator's test control API (not part of CANN; declared in `include/senet_emu.h`):
//! failure injection, call counts and live-resource counters.
use std::collections::HashMap;
use std::ffi::CStr;
use std::os::raw::c_char;
use std::sync::{Mutex, MutexGuard};

/// One pending injected failure: fires when `skip` reaches zero.
struct Injection {
    skip: u32,
    code: i32,
}

#[derive(Default)]
struct Control {
    injections: HashMap<String, Vec<Injection>>,
    counts: HashMap<String, u64>,
}

static CONTROL: Mutex<Option<Control>> = Mutex::new(None);

fn lock() -> MutexGuard<'static, Option<Control>> {
    CONTROL.lock().unwrap_or_else(|e| e.into_inner())
}

fn with<R>(f: impl FnOnce(&mut Control) -> R) -> R {
    let mut g = lock();
    f(g.get_or_insert_with(Control::default))
}

/// Counts a call of `name` and returns the code of an injected failure that is due now.
pub fn on_call(name: &str) -> Option<i32> {
    crate::stats::arm();
    with(|c| {
        *c.counts.entry(name.to_string()).or_insert(0) += 1;
        let list = c.injections.get_mut(name)?;
        let due = list.iter().position(|i| i.skip == 0);
        for i in list.iter_mut() {
            i.skip = i.skip.saturating_sub(1);
        }
        let code = due.map(|k| list.remove(k).code);
        if list.is_empty() {
            c.injections.remove(name);
        }
        code
    })
}

/// Registers a failure of `function` on its `(after_calls + 1)`-th call from now.
pub fn inject(function: &str, after_calls: u32, code: i32) {
    with(|c| {
        c.injections
            .entry(function.to_string())
            .or_default()
            .push(Injection {
                skip: after_calls,
                code,
            })
    });
}

/// Parses `SENET_EMU_FAIL` (`function:afterCalls:code[,...]`) and registers each entry.
pub fn inject_from_spec(spec: &str) -> Result<(), String> {
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parts: Vec<&str> = item.split(':').collect();
        let parsed = match parts.as_slice() {
            [f, a, c] => a
                .trim()
                .parse::<u32>()
                .ok()
                .zip(c.trim().parse::<i32>().ok())
                .map(|(a, c)| (f.trim(), a, c)),
            _ => None,
        };
        let (f, a, c) = parsed.ok_or_else(|| {
            format!("SENET_EMU_FAIL entry {item:?} is not function:afterCalls:code")
        })?;
        inject(f, a, c);
    }
    Ok(())
}

/// Counts a call of `name` (for exported functions that take no failure injection:
/// `aclGetRecentErrMsg`, `HcclGetErrorString`).
pub fn count(name: &str) {
    crate::stats::arm();
    with(|c| *c.counts.entry(name.to_string()).or_insert(0) += 1);
}

/// Every function called so far with its call count, or `None` if the counters could not be
/// locked within `wait` (another thread holds them while the process exits).
pub fn counts_snapshot(
    wait: std::time::Duration,
) -> Option<std::collections::BTreeMap<String, u64>> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match CONTROL.try_lock() {
            Ok(g) => return Some(snapshot(&g)),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(snapshot(&p.into_inner())),
            Err(std::sync::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    }
}

fn snapshot(c: &Option<Control>) -> std::collections::BTreeMap<String, u64> {
    c.as_ref()
        .map(|c| c.counts.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default()
}

/// Total calls of `function` since the process started.
pub fn call_count(function: &str) -> u64 {
    with(|c| c.counts.get(function).copied().unwrap_or(0))
}

/// Drops every pending injected failure.
pub fn clear() {
    with(|c| c.injections.clear());
}

unsafe fn name_arg(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: the caller passes a NUL-terminated string (C contract of the control API).
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

/// Makes the `(afterCalls + 1)`-th call of `function`, counted from now, return `code` (with a
/// recent-error text saying it was injected) instead of doing its work. Null `function` is
/// ignored.
///
/// # Safety
/// `function` must be null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn senetEmuInjectFailure(
    function: *const c_char,
    afterCalls: u32,
    code: i32,
) {
    if let Some(f) = unsafe { name_arg(function) } {
        inject(&f, afterCalls, code);
    }
}

/// Drops every pending injected failure (from [`senetEmuInjectFailure`] or `SENET_EMU_FAIL`).
#[no_mangle]
pub extern "C" fn senetEmuClearFailures() {
    clear();
}

/// Number of live device allocations (`aclrtMalloc` not yet freed), all devices.
#[no_mangle]
pub extern "C" fn senetEmuLiveAllocations() -> u64 {
    crate::state::with_emu(|e| e.memory.live_device_allocations() as u64)
}

/// Bytes reserved by live device allocations (each `align_up(size, 32) + 32`), all devices.
#[no_mangle]
pub extern "C" fn senetEmuLiveBytes() -> u64 {
    crate::state::with_emu(|e| e.memory.live_device_bytes())
}

/// Number of live aclnn objects: tensors, scalars, arrays, tensor lists and executors.
#[no_mangle]
pub extern "C" fn senetEmuLiveObjects() -> u64 {
    crate::objects::live_count() as u64
}

/// Number of calls of the exported function `function` since the process started (0 for null
/// or a name never called).
///
/// # Safety
/// `function` must be null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn senetEmuCallCount(function: *const c_char) -> u64 {
    unsafe { name_arg(function) }.map_or(0, |f| call_count(&f))
}
