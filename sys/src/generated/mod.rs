//! bindgen output for `include/cann_subset.h` (see `build.rs`): the shared types and one
//! runtime-loaded struct per CANN library. Formatted by bindgen (prettyplease), not rustfmt.
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code
)]
#![allow(clippy::all, missing_docs, unsafe_op_in_unsafe_fn)]

#[rustfmt::skip]
pub mod ascendcl;
#[rustfmt::skip]
pub mod hccl;
#[rustfmt::skip]
pub mod nnopbase;
#[rustfmt::skip]
pub mod opapi;
#[rustfmt::skip]
pub mod types;
