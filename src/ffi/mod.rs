//! The C ABI of `libsenet.so` (header: `include/senet.h`, generated from this module by
//! cbindgen; see `docs/c-abi.md`).
//!
//! Conventions, for every exported function:
//! - it returns a [`SenetStatus`]; on failure `senet_last_error()` gives the message (per thread);
//! - no panic crosses the ABI: each body runs under `catch_unwind` (`status::guard`);
//! - handles are registry tokens, never dereferenced (the private module `handle`): NULL,
//!   freed, foreign and wrong-kind handles are reported; caller buffers come with their
//!   lengths, checked before use (the private module `args`).
//!
//! Modules of the C ABI, one per section of the header: [`status`] (codes, last error),
//! [`model`] (create, load, device, threads, forward), [`preprocess`] (MindCV's or timm's eval
//! transform), [`transform`] (a recipe's eval transform as C data), [`classmap`] (class names
//! and top-k).
mod args;
pub mod classmap;
mod handle;
pub mod model;
pub mod preprocess;
pub mod status;
pub mod transform;

pub use classmap::SenetClass;
pub use handle::{SenetClassMap, SenetModel};
pub use model::SenetDevice;
pub use preprocess::SenetPreprocess;
pub use status::SenetStatus;
pub use transform::{SenetInterpolation, SenetTransform};

use std::ffi::c_char;

/// Major version of the library this header belongs to.
pub const SENET_VERSION_MAJOR: u32 = 0;
/// Minor version of the library this header belongs to.
pub const SENET_VERSION_MINOR: u32 = 1;
/// Patch version of the library this header belongs to.
pub const SENET_VERSION_PATCH: u32 = 0;
/// `SENET_VERSION`, the version string macro of the header, is written by `cbindgen.toml`
/// (cbindgen does not export string constants); a test checks it against the package version.
pub const SENET_VERSION: &str = "0.1.0";

/// The version of the loaded library, "MAJOR.MINOR.PATCH" (compare with SENET_VERSION to detect
/// a header/library mismatch). The string is static. Thread-safety: safe from any thread.
#[no_mangle]
pub extern "C" fn senet_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constants_match_the_package() {
        let v = format!("{SENET_VERSION_MAJOR}.{SENET_VERSION_MINOR}.{SENET_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        assert_eq!(SENET_VERSION, env!("CARGO_PKG_VERSION"));
        // SAFETY: senet_version returns a static NUL-terminated string.
        let got = unsafe { std::ffi::CStr::from_ptr(senet_version()) };
        assert_eq!(got.to_str().unwrap(), SENET_VERSION);
        assert_eq!(
            preprocess::SENET_IMAGE_VALUES,
            3 * preprocess::SENET_IMAGE_SIZE * preprocess::SENET_IMAGE_SIZE
        );
    }
}
