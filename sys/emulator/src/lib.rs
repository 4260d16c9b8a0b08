//! `senet-cann-emu`: a host emulator of Huawei's CANN C API (the ACL runtime, the aclnn objects
//! and operators, HCCL), used by senet's tests in place of a real Ascend NPU.
//!
//! Built as a `cdylib` exporting every function of `sys/include/cann_subset.h` with exactly
//! those C signatures (the types come from `senet-cann-sys`, bindgen's output for that header),
//! so senet's loader opens it with `SENET_CANN_LIB=/path/to/libsenet_cann_emu.so`; also an
//! `rlib`, so Rust tests call the same functions directly.
//!
//! What it does: "device" memory is host memory tracked by a registry; every call checks its
//! arguments against the vendor's documented contract for the emulated product and CANN release
//! ([`contract`]: `shared/reference/aclnn-contract.json`, embedded; `SENET_EMU_SOC`,
//! `SENET_EMU_CANN_VERSION`) and fails with the documented code and an `aclGetRecentErrMsg` text
//! naming the function, the rule and its source; asynchronous work is queued on streams and runs
//! only when synchronised; operators compute with the plain loops of [`mod@reference`], the
//! cube's operators in the device's arithmetic (fp16/bf16/hf32 operands, fp32 accumulation). The
//! test control API ([`control`], declared in `include/senet_emu.h`) injects failures, reports
//! live resources and, with `SENET_EMU_STATS=FILE`, writes the call counts at exit.
//!
//! Every exported `unsafe extern "C"` function has the C contract of its declaration: pointer
//! arguments are null or valid for the access the header implies.
#![warn(missing_docs)]
#![allow(non_snake_case, clippy::missing_safety_doc)]

pub mod alias;
pub mod api;
pub mod capture;
pub mod contract;
pub mod control;
pub mod hccl_api;
mod hccl_wire;
pub mod memory;
pub mod memory_api;
pub mod nnopbase_api;
pub mod objects;
pub mod ops;
pub mod order;
pub mod reference;
pub mod runtime_api;
pub mod state;
pub mod stats;
pub mod stream;
pub mod view;

pub use capture::*;
pub use control::*;
pub use hccl_api::*;
pub use memory_api::*;
pub use nnopbase_api::*;
pub use ops::conv::*;
pub use ops::copy::*;
pub use ops::elementwise::*;
pub use ops::foreach::*;
pub use ops::loss::*;
pub use ops::matmul::*;
pub use ops::norm::*;
pub use ops::optim::*;
pub use ops::pool::*;
pub use runtime_api::*;
