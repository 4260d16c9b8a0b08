//! Finding and opening the CANN libraries, once per process.
//!
//! Search order for each library (`shared/reference/cann.md` §4.3):
//! 1. [`EXPLICIT_PATH_VAR`] (`SENET_CANN_LIB`): a directory holding the libraries, or one file
//!    used for every library (the test emulator exports the whole API from one `.so`);
//! 2. `$ASCEND_HOME_PATH/lib64`, then `$ASCEND_TOOLKIT_HOME/lib64` (set by CANN's `set_env.sh`);
//! 3. the standard install paths (`/usr/local/Ascend/cann/lib64`,
//!    `/usr/local/Ascend/ascend-toolkit/latest/lib64`, `$HOME/Ascend/ascend-toolkit/latest/lib64`,
//!    `/usr/local/Ascend/nnae/latest/lib64`);
//! 4. the dynamic linker (bare soname, so `LD_LIBRARY_PATH` applies).
//!
//! Libraries are opened `RTLD_NOW | RTLD_GLOBAL`, so that the aclnn operators split across
//! `libopapi_nn.so` and `libopapi_math.so` (newest CANN) resolve through one global handle.
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

use crate::{AscendCl, Hccl, NnOpBase, OpApi};

/// Environment variable naming the CANN library directory, or a single library file that
/// exports the whole API (senet's emulator).
pub const EXPLICIT_PATH_VAR: &str = "SENET_CANN_LIB";

/// The CANN libraries an Ascend backend needs: runtime, aclnn objects, aclnn operators.
pub struct Cann {
    /// `libascendcl.so` (or `libacl_rt.so`): `acl*`, `aclrt*`.
    pub acl: AscendCl,
    /// `libnnopbase.so`: `aclCreate*`, `aclDestroy*`, `aclnnInit`.
    pub nnopbase: NnOpBase,
    /// `libopapi.so` (or `libopapi_nn.so` + `libopapi_math.so`): the `aclnn<Op>` pairs.
    pub opapi: OpApi,
    /// Where each library was found, for `senet devices` and error messages.
    pub paths: Vec<PathBuf>,
    _keep: Vec<Library>,
}

/// Why CANN could not be loaded: the library, every place tried and why each failed.
#[derive(Debug, Clone)]
pub struct LoadError {
    /// The library that was not found (`libascendcl.so`, ...).
    pub library: String,
    /// (candidate path or soname, dlopen's message).
    pub tried: Vec<(String, String)>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "CANN not found: could not load {}. Tried:", self.library)?;
        for (place, why) in &self.tried {
            writeln!(f, "  {place}: {why}")?;
        }
        write!(
            f,
            "Install the CANN toolkit and `source /usr/local/Ascend/ascend-toolkit/set_env.sh` \
             (or your install's set_env.sh), or set {EXPLICIT_PATH_VAR} to the directory holding {}",
            self.library
        )
    }
}

impl std::error::Error for LoadError {}

/// Directories searched after [`EXPLICIT_PATH_VAR`], in order.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for var in ["ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"] {
        if let Some(root) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            dirs.push(PathBuf::from(root).join("lib64"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/Ascend/cann/lib64"));
    dirs.push(PathBuf::from(
        "/usr/local/Ascend/ascend-toolkit/latest/lib64",
    ));
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join("Ascend/ascend-toolkit/latest/lib64"));
    }
    dirs.push(PathBuf::from("/usr/local/Ascend/nnae/latest/lib64"));
    dirs
}

fn open(path: &Path) -> Result<Library, String> {
    // SAFETY: opening a shared library runs its initialisers; the CANN libraries (and the
    // emulator) have no initialisers with preconditions on the caller.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| e.to_string())
}

/// Opens the first of `names` found, in the search order of the module docs.
fn find(names: &[&str], explicit: Option<&OsString>) -> Result<(Library, PathBuf), LoadError> {
    let mut tried = Vec::new();
    let attempt = |path: PathBuf, tried: &mut Vec<(String, String)>| match open(&path) {
        Ok(lib) => Some((lib, path)),
        Err(e) => {
            tried.push((path.display().to_string(), e));
            None
        }
    };
    if let Some(explicit) = explicit {
        let p = PathBuf::from(explicit);
        if p.is_dir() {
            for name in names {
                if let Some(found) = attempt(p.join(name), &mut tried) {
                    return Ok(found);
                }
            }
        } else if let Some(found) = attempt(p, &mut tried) {
            return Ok(found);
        }
        // An explicit choice that fails is final: falling back could load a different CANN.
        return Err(LoadError {
            library: names.join(" or "),
            tried,
        });
    }
    for dir in search_dirs() {
        for name in names {
            let path = dir.join(name);
            if path.exists() {
                if let Some(found) = attempt(path, &mut tried) {
                    return Ok(found);
                }
            } else {
                tried.push((path.display().to_string(), "no such file".into()));
            }
        }
    }
    for name in names {
        if let Some(found) = attempt(PathBuf::from(name), &mut tried) {
            return Ok(found);
        }
    }
    Err(LoadError {
        library: names.join(" or "),
        tried,
    })
}

fn explicit() -> Option<OsString> {
    std::env::var_os(EXPLICIT_PATH_VAR).filter(|v| !v.is_empty())
}

fn load_cann() -> Result<Cann, LoadError> {
    let explicit = explicit();
    let explicit = explicit.as_ref();
    let (acl_lib, acl_path) = find(&["libascendcl.so", "libacl_rt.so"], explicit)?;
    let (nn_lib, nn_path) = find(&["libnnopbase.so"], explicit)?;
    let mut keep = vec![];
    let mut paths = vec![acl_path, nn_path];
    // The aggregate libopapi.so, else the per-repository split (never both: ops-math docs).
    let opapi = match find(&["libopapi.so"], explicit) {
        Ok((lib, path)) => {
            paths.push(path);
            lib
        }
        Err(aggregate) => {
            let (math, math_path) = find(&["libopapi_math.so"], explicit).map_err(|mut e| {
                e.tried.extend(aggregate.tried.clone());
                e.library = "libopapi.so or libopapi_math.so".into();
                e
            })?;
            let (nn, nn_split_path) = find(&["libopapi_nn.so"], explicit)?;
            paths.push(math_path);
            paths.push(nn_split_path);
            keep.push(math);
            keep.push(nn);
            // Both are RTLD_GLOBAL: the process handle resolves symbols across them.
            Library::this()
        }
    };
    let wrap = |e: libloading::Error, lib: &str| LoadError {
        library: lib.into(),
        tried: vec![(lib.into(), e.to_string())],
    };
    // SAFETY: the structs only resolve symbols; calling them is the callers' (unsafe) business.
    unsafe {
        Ok(Cann {
            acl: AscendCl::from_library(acl_lib).map_err(|e| wrap(e, "libascendcl.so"))?,
            nnopbase: NnOpBase::from_library(nn_lib).map_err(|e| wrap(e, "libnnopbase.so"))?,
            opapi: OpApi::from_library(opapi).map_err(|e| wrap(e, "libopapi.so"))?,
            paths,
            _keep: keep,
        })
    }
}

/// The CANN runtime and aclnn libraries, loaded on first use (every later call returns the
/// same result). Errors: [`LoadError`] naming the library and every place tried.
pub fn cann() -> Result<&'static Cann, &'static LoadError> {
    static CANN: OnceLock<Result<Cann, LoadError>> = OnceLock::new();
    CANN.get_or_init(load_cann).as_ref()
}

/// `libhccl.so` (HCCL collectives), loaded on first use; on the newest CANN the communicator
/// set-up lives in `libhcomm.so`, which is opened globally too when present. Errors:
/// [`LoadError`].
pub fn hccl() -> Result<&'static (Hccl, PathBuf), &'static LoadError> {
    static HCCL: OnceLock<Result<(Hccl, PathBuf), LoadError>> = OnceLock::new();
    HCCL.get_or_init(|| {
        let explicit = explicit();
        let (lib, path) = find(&["libhccl.so"], explicit.as_ref())?;
        let hcomm = path.with_file_name("libhcomm.so");
        let handle = if hcomm.exists() && open(&hcomm).is_ok() {
            std::mem::forget(lib);
            Library::this()
        } else {
            lib
        };
        // SAFETY: as in load_cann.
        let hccl = unsafe { Hccl::from_library(handle) }.map_err(|e| LoadError {
            library: "libhccl.so".into(),
            tried: vec![(path.display().to_string(), e.to_string())],
        })?;
        Ok((hccl, path))
    })
    .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_explicit_library_is_reported_with_every_place_tried() {
        let dir = std::env::temp_dir().join("senet-cann-sys-no-such-dir");
        let err = match find(&["libascendcl.so"], Some(&dir.clone().into_os_string())) {
            Err(e) => e,
            Ok(_) => panic!("loaded a library from a missing path"),
        };
        assert_eq!(err.library, "libascendcl.so");
        assert_eq!(err.tried.len(), 1);
        let text = err.to_string();
        assert!(text.contains("CANN not found"), "{text}");
        assert!(text.contains("set_env.sh"), "{text}");
        assert!(text.contains("senet-cann-sys-no-such-dir"), "{text}");
    }

    #[test]
    fn standard_install_paths_follow_the_environment() {
        let dirs = search_dirs();
        assert!(dirs.contains(&PathBuf::from(
            "/usr/local/Ascend/ascend-toolkit/latest/lib64"
        )));
        assert!(dirs.contains(&PathBuf::from("/usr/local/Ascend/cann/lib64")));
    }
}
