//! Status codes, the thread-local last error message, and the guard every exported function runs
//! its body in (panics are caught there and never unwind into C).
use crate::Error;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The status every `senet_*` function returns. `SENET_STATUS_OK` (0) is success; any other
/// value is an error whose message `senet_last_error()` gives on the same thread.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenetStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullPointer = 1,
    /// A handle that is not a live handle of the expected kind: already freed, never created by
    /// this library, or a handle of another kind.
    InvalidHandle = 2,
    /// An argument out of range or inconsistent (zero sizes, k = 0, a string not UTF-8, ...).
    InvalidArgument = 3,
    /// A caller buffer smaller than what the call needs (the message gives both sizes).
    BufferTooSmall = 4,
    /// A model variant name that is not one of the five SENets.
    UnknownModel = 5,
    /// A file that cannot be read (missing, permissions).
    Io = 6,
    /// A file or in-memory image whose content is not in the expected format.
    Format = 7,
    /// A checkpoint whose parameters do not match the model (names, shapes, dtypes).
    CheckpointMismatch = 8,
    /// The model has no weights yet: load a checkpoint before the forward pass.
    NotLoaded = 9,
    /// The requested device cannot be used: CANN could not be loaded (the message lists where
    /// it was looked for and says to source `set_env.sh`), or it reports no such device.
    BackendUnavailable = 10,
    /// An internal error: a bug (a caught panic, a poisoned lock); the message says which.
    Internal = 11,
    /// The device refused a call (e.g. out of device memory, an operator error): the message
    /// names the CANN call, its code and CANN's own text.
    Device = 12,
}

/// Every status, in code order.
const ALL_STATUSES: [SenetStatus; 13] = [
    SenetStatus::Ok,
    SenetStatus::NullPointer,
    SenetStatus::InvalidHandle,
    SenetStatus::InvalidArgument,
    SenetStatus::BufferTooSmall,
    SenetStatus::UnknownModel,
    SenetStatus::Io,
    SenetStatus::Format,
    SenetStatus::CheckpointMismatch,
    SenetStatus::NotLoaded,
    SenetStatus::BackendUnavailable,
    SenetStatus::Internal,
    SenetStatus::Device,
];

impl SenetStatus {
    /// The status with code `code`, if any.
    pub fn from_code(code: i32) -> Option<SenetStatus> {
        ALL_STATUSES.into_iter().find(|&s| s as i32 == code)
    }

    /// A short static description of the status (what `senet_status_string` returns).
    pub fn describe(self) -> &'static CStr {
        match self {
            SenetStatus::Ok => c"ok",
            SenetStatus::NullPointer => c"null pointer argument",
            SenetStatus::InvalidHandle => c"invalid, freed or foreign handle",
            SenetStatus::InvalidArgument => c"invalid argument",
            SenetStatus::BufferTooSmall => c"buffer too small",
            SenetStatus::UnknownModel => c"unknown model variant",
            SenetStatus::Io => c"I/O error",
            SenetStatus::Format => c"invalid file or image format",
            SenetStatus::CheckpointMismatch => c"checkpoint does not match the model",
            SenetStatus::NotLoaded => c"no weights loaded",
            SenetStatus::BackendUnavailable => {
                c"backend not available (CANN not found or no such device)"
            }
            SenetStatus::Internal => c"internal error",
            SenetStatus::Device => c"device error",
        }
    }
}

/// An error on its way to C: a status and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FfiError {
    /// The status code the C caller gets.
    pub status: SenetStatus,
    /// The message `senet_last_error()` returns.
    pub message: String,
}

impl FfiError {
    /// An error with `status` and `message`.
    pub fn new(status: SenetStatus, message: impl Into<String>) -> FfiError {
        FfiError {
            status,
            message: message.into(),
        }
    }

    /// A `SENET_STATUS_INVALID_ARGUMENT` error.
    pub fn invalid(message: impl Into<String>) -> FfiError {
        FfiError::new(SenetStatus::InvalidArgument, message)
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> FfiError {
        let status = match &e {
            Error::Io { .. } => SenetStatus::Io,
            Error::Format { .. } => SenetStatus::Format,
            Error::Mismatch { .. } => SenetStatus::CheckpointMismatch,
            Error::UnknownModel(_) => SenetStatus::UnknownModel,
            Error::Config(_) | Error::Shape(_) | Error::Invalid(_) => SenetStatus::InvalidArgument,
            Error::DeviceUnavailable(_) => SenetStatus::BackendUnavailable,
            Error::Device { .. } => SenetStatus::Device,
        };
        FfiError::new(status, e.to_string())
    }
}

/// `Result` of the bodies of exported functions.
pub(crate) type FfiResult<T = ()> = Result<T, FfiError>;

thread_local! {
    /// The message of the last call on this thread (empty after a success).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // Interior NULs cannot cross as a C string: show them as U+FFFD.
    let c = CString::new(message.replace('\0', "\u{fffd}")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Runs the body of an exported function: records its error (or clears the last error) and
/// turns a panic into [`SenetStatus::Internal`], so that no unwinding reaches C.
pub(crate) fn guard(body: impl FnOnce() -> FfiResult) -> SenetStatus {
    // AssertUnwindSafe: after a panic the only state touched again is behind the registry's and
    // the models' mutexes, whose poisoning is handled where they are locked.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            SenetStatus::Ok
        }
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(payload) => {
            set_last_error(&format!(
                "internal error (panic): {}",
                panic_message(payload.as_ref())
            ));
            SenetStatus::Internal
        }
    }
}

/// The message of the last `senet_*` call made on the calling thread: empty ("") when that call
/// succeeded. Never NULL.
///
/// Ownership: the string belongs to the library; it stays valid until the next `senet_*` call
/// on the same thread (copy it to keep it). Thread-safety: safe from any thread; each thread
/// has its own message.
#[no_mangle]
pub extern "C" fn senet_last_error() -> *const c_char {
    catch_unwind(|| LAST_ERROR.with(|e| e.borrow().as_ptr()))
        .unwrap_or(c"internal error: senet_last_error failed".as_ptr())
}

/// A static English description of `status`, e.g. "buffer too small" (for any int, including
/// values that are not a `SenetStatus`: "unknown status"). Never NULL; the string is static.
/// Thread-safety: safe from any thread.
#[no_mangle]
pub extern "C" fn senet_status_string(status: i32) -> *const c_char {
    SenetStatus::from_code(status)
        .map_or(c"unknown status", SenetStatus::describe)
        .as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_match_describe() {
        for s in 0..12 {
            // SAFETY: senet_status_string returns a pointer to a static NUL-terminated string.
            let c = unsafe { CStr::from_ptr(senet_status_string(s)) };
            assert!(!c.to_bytes().is_empty());
        }
        assert_eq!(SenetStatus::BufferTooSmall.describe(), c"buffer too small");
        // SAFETY: as above.
        let u = unsafe { CStr::from_ptr(senet_status_string(99)) };
        assert_eq!(u.to_str().unwrap(), "unknown status");
    }

    #[test]
    fn guard_catches_panics_and_records_messages() {
        let s = guard(|| panic!("boom"));
        assert_eq!(s, SenetStatus::Internal);
        // SAFETY: senet_last_error returns a valid C string until the next call on this thread.
        let msg = unsafe { CStr::from_ptr(senet_last_error()) }
            .to_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("boom"), "{msg}");
        assert_eq!(guard(|| Ok(())), SenetStatus::Ok);
        // SAFETY: as above.
        assert!(unsafe { CStr::from_ptr(senet_last_error()) }
            .to_bytes()
            .is_empty());
    }
}
