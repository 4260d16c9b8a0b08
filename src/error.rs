//! The library's error type. Every variant names the file, key, shape or value at fault.
use std::path::PathBuf;

/// Errors returned by the senet library. The CLI prints them and exits non-zero; the C ABI maps
/// them to error codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// A file whose content is not in the expected format (truncated, corrupt, wrong type).
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// Parameters of a checkpoint that do not match the model (every culprit listed, or for more
    /// than 20 the first 10 and a count by kind).
    #[error("checkpoint {path} does not match model {model}:\n{details}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The model, e.g. `seresnet50 (1000 classes)`.
        model: String,
        /// One line per offending parameter.
        details: String,
    },
    /// A configuration (recipe or flag) that is invalid.
    #[error("config: {0}")]
    Config(String),
    /// A tensor of the wrong shape passed to an operation.
    #[error("shape: {0}")]
    Shape(String),
    /// An unknown model name.
    #[error("unknown model '{0}' (known: {known})", known = known_models())]
    UnknownModel(String),
    /// Any other invalid argument.
    #[error("{0}")]
    Invalid(String),
    /// A buffer whose size comes from the input (a file's tensor, an image, a class count) could
    /// not be allocated: the allocator refused it (a memory limit such as `RLIMIT_AS`, or a
    /// size no machine has). Large buffers are allocated fallibly ([`crate::mem`]), so running
    /// out of memory is this error, never an abort.
    #[error("out of memory: cannot allocate {} for {what}", crate::mem::human_bytes(*bytes))]
    OutOfMemory {
        /// What the buffer was for, naming the file when there is one.
        what: String,
        /// Its size in bytes (saturated at `u64::MAX` when the size itself overflows).
        bytes: u64,
    },
    /// A call into the Ascend runtime (CANN `acl*`) or an aclnn operator that returned an error
    /// code: the call, the code, its symbolic name when known (`shared/reference/cann.md` §1.5,
    /// §2.1) and CANN's own text from `aclGetRecentErrMsg()`.
    #[error("Ascend: {call} failed with {code}{}: {message}", symbolic(name))]
    Device {
        /// The C function that failed, e.g. `aclrtMalloc` or `aclnnConvolutionGetWorkspaceSize`.
        call: String,
        /// The `aclError` / `aclnnStatus` it returned.
        code: i64,
        /// The code's symbolic name (`ACL_ERROR_RT_MEMORY_ALLOCATION`), empty when unknown.
        name: String,
        /// `aclGetRecentErrMsg()` (or a note that CANN gave none).
        message: String,
    },
    /// The Ascend backend cannot run here: CANN is not installed or not loadable (the loader's
    /// message lists every place tried), a symbol is missing from the installed CANN, or the
    /// SoC lacks an operator senet needs.
    #[error("Ascend: {0}")]
    DeviceUnavailable(String),
}

/// MindCV's names of every model senet builds ([`crate::model::Arch::ALL`]), comma-separated.
fn known_models() -> String {
    crate::model::Arch::ALL.map(|a| a.name()).join(", ")
}

/// " (NAME)" for a non-empty symbolic error name.
fn symbolic(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" ({name})")
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err,
        }
    }

    /// A format error naming `path`.
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
