//! CANN return codes as [`Error`]s: the `Result` layer over the raw `sys` calls.
//!
//! Every failing `acl*` / `aclnn*` call becomes [`Error::Device`] carrying the call's name, its
//! code, the code's symbolic name where `shared/reference/cann.md` §1.5 / §2.1 lists it, and
//! CANN's own explanation from `aclGetRecentErrMsg()` (thread-local in CANN, so it is read on
//! the failing thread straight after the call). A symbol the installed CANN lacks, or CANN not
//! being loadable at all, becomes [`Error::DeviceUnavailable`].
use std::ffi::CStr;

use senet_cann_sys::{aclError, aclnnStatus, Cann};

use crate::{Error, Result};

/// The symbolic name of an `aclError` or `aclnnStatus` code, or `""` when the code is not one
/// cann.md lists.
pub fn code_name(code: i64) -> &'static str {
    match code {
        0 => "ACL_SUCCESS",
        100000 => "ACL_ERROR_INVALID_PARAM",
        100001 => "ACL_ERROR_UNINITIALIZE",
        100002 => "ACL_ERROR_REPEAT_INITIALIZE",
        100024 => "ACL_ERROR_OP_NOT_FOUND",
        100025 => "ACL_ERROR_OP_LOAD_FAILED",
        100026 => "ACL_ERROR_UNSUPPORTED_DATA_TYPE",
        100027 => "ACL_ERROR_FORMAT_NOT_MATCH",
        100037 => "ACL_ERROR_REPEAT_FINALIZE",
        107000 => "ACL_ERROR_RT_PARAM_INVALID",
        107001 => "ACL_ERROR_RT_INVALID_DEVICEID",
        107002 => "ACL_ERROR_RT_CONTEXT_NULL",
        107003 => "ACL_ERROR_RT_STREAM_CONTEXT",
        107022 => "ACL_ERROR_RT_DEVICE_TASK_ABORT",
        107027 => "ACL_ERROR_RT_STREAM_CAPTURED",
        107029 => "ACL_ERROR_RT_STREAM_NOT_CAPTURED",
        107030 => "ACL_ERROR_RT_CAPTURE_MODE_NOT_SUPPORT",
        107038 => "ACL_ERROR_RT_STREAM_CAPTURE_WRONG_THREAD",
        161001 => "ACLNN_ERR_PARAM_NULLPTR",
        161002 => "ACLNN_ERR_PARAM_INVALID",
        200000 => "ACL_ERROR_BAD_ALLOC",
        200001 => "ACL_ERROR_API_NOT_SUPPORT",
        200002 => "ACL_ERROR_INVALID_DEVICE",
        200003 => "ACL_ERROR_MEMORY_ADDRESS_UNALIGNED",
        200004 => "ACL_ERROR_RESOURCE_NOT_MATCH",
        200005 => "ACL_ERROR_INVALID_RESOURCE_HANDLE",
        200006 => "ACL_ERROR_FEATURE_UNSUPPORTED",
        207000 => "ACL_ERROR_RT_FEATURE_NOT_SUPPORT",
        207001 => "ACL_ERROR_RT_MEMORY_ALLOCATION",
        300000 => "ACL_ERROR_STORAGE_OVER_LIMIT",
        361001 => "ACLNN_ERR_RUNTIME_ERROR",
        500000 => "ACL_ERROR_INTERNAL_ERROR",
        500001 => "ACL_ERROR_FAILURE",
        500002 => "ACL_ERROR_GE_FAILURE",
        500003 => "ACL_ERROR_RT_FAILURE",
        500004 => "ACL_ERROR_DRV_FAILURE",
        507000 => "ACL_ERROR_RT_INTERNAL_ERROR",
        507011 => "ACL_ERROR_RT_MODEL_EXECUTE",
        507014 => "ACL_ERROR_RT_AICORE_TIMEOUT",
        507015 => "ACL_ERROR_RT_AICORE_EXCEPTION",
        507018 => "ACL_ERROR_RT_AICPU_EXCEPTION",
        507046 => "ACL_ERROR_RT_STREAM_SYNC_TIMEOUT",
        507053 => "ACL_ERROR_RT_DEVICE_MEM_ERROR",
        507899 => "ACL_ERROR_RT_DRV_INTERNAL_ERROR",
        507903 => "ACL_ERROR_RT_STREAM_CAPTURE_INVALIDATED",
        561000 => "ACLNN_ERR_INNER",
        561101 => "ACLNN_ERR_INNER_CREATE_EXECUTOR",
        561103 => "ACLNN_ERR_INNER_NULLPTR",
        _ => "",
    }
}

/// CANN's text for the most recent error on this thread (`aclGetRecentErrMsg`), or a note when
/// it has none or the symbol is missing.
pub fn recent_message(cann: &Cann) -> String {
    let Ok(f) = cann.acl.aclGetRecentErrMsg.as_ref() else {
        return "(aclGetRecentErrMsg is not available)".into();
    };
    // SAFETY: aclGetRecentErrMsg takes no arguments and returns NULL or a NUL-terminated
    // thread-local string that stays valid until the next ACL call on this thread; it is copied
    // out at once.
    let p = unsafe { f() };
    if p.is_null() {
        return "(no message from aclGetRecentErrMsg)".into();
    }
    // SAFETY: non-null, NUL-terminated (see above).
    let text = unsafe { CStr::from_ptr(p) }
        .to_string_lossy()
        .trim()
        .to_string();
    if text.is_empty() {
        "(no message from aclGetRecentErrMsg)".into()
    } else {
        text
    }
}

/// The [`Error::Device`] for `call` having returned `code`.
pub fn device_error(cann: &Cann, call: &str, code: i64) -> Error {
    Error::Device {
        call: call.to_string(),
        code,
        name: code_name(code).to_string(),
        message: recent_message(cann),
    }
}

/// `Ok` for `ACL_SUCCESS`, else [`Error::Device`] naming `call`.
pub fn check_acl(cann: &Cann, call: &str, code: aclError) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(device_error(cann, call, code as i64))
    }
}

/// `Ok` for `ACLNN_SUCCESS`, else [`Error::Device`] naming `call`.
pub fn check_nn(cann: &Cann, call: &str, code: aclnnStatus) -> Result<()> {
    check_acl(cann, call, code)
}

/// The function behind a resolved symbol, or [`Error::DeviceUnavailable`] naming the symbol and
/// the library it was looked up in.
pub fn sym<'a, F, E: std::fmt::Display>(
    field: &'a std::result::Result<F, E>,
    symbol: &str,
    library: &str,
) -> Result<&'a F> {
    field.as_ref().map_err(|e| {
        Error::DeviceUnavailable(format!(
            "symbol {symbol} not found in {library} (the installed CANN is too old or lacks \
             this operator): {e}"
        ))
    })
}

/// The process's CANN libraries, or [`Error::DeviceUnavailable`] with the loader's message.
pub fn cann() -> Result<&'static Cann> {
    senet_cann_sys::cann().map_err(|e| Error::DeviceUnavailable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_errors_read_like_the_design_says() {
        let e = Error::Device {
            call: "aclrtMalloc".into(),
            code: 207001,
            name: code_name(207001).into(),
            message: "out of memory".into(),
        };
        assert_eq!(
            e.to_string(),
            "Ascend: aclrtMalloc failed with 207001 (ACL_ERROR_RT_MEMORY_ALLOCATION): out of memory"
        );
        let e = Error::Device {
            call: "aclnnAdd".into(),
            code: 12345,
            name: code_name(12345).into(),
            message: "x".into(),
        };
        assert_eq!(e.to_string(), "Ascend: aclnnAdd failed with 12345: x");
    }

    #[test]
    fn a_missing_symbol_names_itself_and_its_library() {
        let field: std::result::Result<fn(), String> = Err("undefined symbol".into());
        let e = sym(&field, "aclnnFoo", "libopapi.so").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("aclnnFoo") && text.contains("libopapi.so"),
            "{text}"
        );
    }
}
