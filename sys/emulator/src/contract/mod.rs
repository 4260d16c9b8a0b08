//! The vendor's documented contract (`shared/reference/aclnn-contract.md` and its twin
//! `aclnn-contract.json`, embedded at build time), enforced per emulated product and CANN
//! release: operator support, dtypes, formats, ranks and contiguity per argument, cubeMathType
//! per dtype ([`table`], [`check`]), and the facts the tables do not structure ([`rules`]).
//!
//! Where the vendor's sources contradict each other (contract Part F) the emulator takes the
//! stricter reading, except where a section says otherwise in a comment: Part F 9 (Mm/Addmm on
//! A2/A3) — the '-' of `op_api_list.md` sits in its determinism column, so it withholds the
//! determinism promise, not support, which the operators' own docs state (`aclnnMm.md:9,12`).
pub mod check;
pub mod product;
pub mod rules;
pub mod table;

pub use check::{check, Arg, Plan, Role, Target};
pub use product::{CannVersion, Product};
pub use table::CubeCell;
