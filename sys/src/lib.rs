//! Raw bindings to the part of Huawei CANN that senet calls, loaded at run time.
//!
//! The cudarc `sys` layer for CANN: [`generated`] is bindgen's output for our own C declarations
//! (`include/cann_subset.h`, written from the documented API in `shared/reference/cann.md`), one
//! struct per library whose fields are `Result<fn, libloading::Error>`, so every symbol is
//! optional (symbols differ between CANN versions and chips). [`loader`] finds and opens the
//! libraries once per process. Nothing here needs CANN to build; safe wrappers live in senet's
//! `backend::ascend`.
#![warn(missing_docs)]

pub mod generated;
pub mod loader;

pub use generated::ascendcl::AscendCl;
pub use generated::hccl::Hccl;
pub use generated::nnopbase::NnOpBase;
pub use generated::opapi::OpApi;
pub use generated::types::*;
pub use loader::{cann, hccl, Cann, LoadError, EXPLICIT_PATH_VAR};
