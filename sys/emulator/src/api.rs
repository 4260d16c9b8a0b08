//! The wrapper every exported function runs its body in: call counting, injected failures,
//! panic containment and the thread-local "recent error" text of `aclGetRecentErrMsg`.
use std::cell::RefCell;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::control;

/// A failed call: the code to return and the text `aclGetRecentErrMsg` reports (without the
/// function name, which [`call`] prefixes).
#[derive(Debug, Clone)]
pub struct Fail {
    /// The return code (`aclError`, `aclnnStatus` or `HcclResult` value).
    pub code: i32,
    /// What went wrong.
    pub msg: String,
}

impl Fail {
    /// A failure with `code` and message `msg`.
    pub fn new(code: i32, msg: impl Into<String>) -> Self {
        Fail {
            code,
            msg: msg.into(),
        }
    }
}

/// Result of an emulated call's body.
pub type Res<T> = Result<T, Fail>;

thread_local! {
    static RECENT: RefCell<CString> = RefCell::new(CString::default());
}

/// Replaces the calling thread's recent-error text.
pub fn set_recent(text: &str) {
    let c = CString::new(text.replace('\0', " ")).unwrap_or_default();
    RECENT.with(|r| *r.borrow_mut() = c);
}

/// Pointer to the calling thread's recent-error text; valid until the thread's next failure.
pub fn recent_ptr() -> *const std::os::raw::c_char {
    RECENT.with(|r| r.borrow().as_ptr())
}

/// The calling thread's recent-error text, as a Rust string (for tests).
pub fn recent() -> String {
    RECENT.with(|r| r.borrow().to_string_lossy().into_owned())
}

/// Runs the body of the exported function `name`: counts the call, applies an injected failure
/// if one is due, converts an `Err` (or a panic, reported with `panic_code`) into the recent
/// error text plus the value `on_err(code)`.
pub fn call<R>(
    name: &str,
    panic_code: i32,
    on_err: impl Fn(i32) -> R,
    body: impl FnOnce() -> Res<R>,
) -> R {
    if let Some(code) = control::on_call(name) {
        set_recent(&format!(
            "{name}: failure injected by the emulator's test control (code {code})"
        ));
        return on_err(code);
    }
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(r)) => r,
        Ok(Err(f)) => {
            set_recent(&format!("{name}: {}", f.msg));
            on_err(f.code)
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            set_recent(&format!("{name}: internal emulator error: {what}"));
            on_err(panic_code)
        }
    }
}

/// [`call`] for functions returning a status code (`aclError`, `aclnnStatus`): 0 on success.
pub fn status(name: &str, panic_code: i32, body: impl FnOnce() -> Res<()>) -> i32 {
    call(name, panic_code, |c| c, || body().map(|()| 0))
}

/// [`call`] for functions returning an object pointer: null on failure.
pub fn object<T>(name: &str, body: impl FnOnce() -> Res<*mut T>) -> *mut T {
    call(name, 0, |_| std::ptr::null_mut(), body)
}

/// Fails with `code` and `msg` unless `cond` holds.
pub fn ensure(cond: bool, code: i32, msg: impl FnOnce() -> String) -> Res<()> {
    if cond {
        Ok(())
    } else {
        Err(Fail::new(code, msg()))
    }
}
