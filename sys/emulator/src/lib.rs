//! `senet-cann-emu`: a host emulator of Huawei's CANN C API (the ACL runtime and the `aclnn*`
//! operators), used by senet's tests in place of a real Ascend NPU.
//!
//! The crate is built both as an `rlib` (for Rust tests) and as a `cdylib` that exports the C
//! symbols of the CANN libraries. Every operator computes with the plain, obviously-correct
//! loops of [`mod@reference`]: contiguous row-major `f32` tensors, PyTorch/ATen semantics, long
//! reductions accumulated in `f64`.

pub mod reference;
