//! Conversions and fills: `aclnnCast`, `aclnnInplaceCopy` (with dtype conversion and
//! broadcasting), `aclnnInplaceZero`. Any dtype the emulator knows.
use std::sync::Arc;

use senet_cann_sys::*;

use super::{bad, begin, broadcast, expect_shape, finish, launch_fn, nn, T};
use crate::api::Res;
use crate::contract::{self, rules, Arg};
use crate::objects;
use crate::view;

fn known(what: &str, dt: aclDataType) -> Res<()> {
    if view::elem_size(dt).is_some() {
        Ok(())
    } else {
        Err(bad(format!("{what} has unknown data type {}", dt.0)))
    }
}

/// Phase 1 of `out = self` converted to `dtype` (out must have that dtype and self's shape).
#[no_mangle]
pub unsafe extern "C" fn aclnnCastGetWorkspaceSize(
    self_: *const aclTensor,
    dtype: aclDataType,
    out: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnCastGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let x = objects::tensor(self_, "self")?;
        let y = objects::tensor(out, "out")?;
        let plan = contract::check(
            "aclnnCast",
            &[Arg::input("self", &x), Arg::output("out", &y)],
            &[],
            None,
        )?;
        rules::CAST_SAME_FORMAT.require(&plan.target, x.format == y.format, || {
            format!(
                "self has format {} but out has {}",
                contract::check::format_name(x.format).0,
                contract::check::format_name(y.format).0
            )
        })?;
        known("dtype", dtype)?;
        if y.dtype != dtype {
            return Err(bad(format!(
                "out is {} but dtype says {}",
                view::dtype_name(y.dtype),
                view::dtype_name(dtype)
            )));
        }
        expect_shape("out", &y, &x.dims, "the shape of self")?;
        let tensors: Vec<T> = vec![x.clone(), y.clone()];
        let run = Arc::new(move || view::write_f64(&y, &view::read_f64_as(&x, &x.dims)));
        finish(workspaceSize, executor, "aclnnCast", 0, tensors, run)
    })
}
launch_fn!(aclnnCast);

/// Phase 1 of `selfRef = src`, converting dtype and broadcasting src to selfRef's shape.
#[no_mangle]
pub unsafe extern "C" fn aclnnInplaceCopyGetWorkspaceSize(
    selfRef: *mut aclTensor,
    src: *const aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnInplaceCopyGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let d = objects::tensor(selfRef, "selfRef")?;
        let s = objects::tensor(src, "src")?;
        contract::check(
            "aclnnInplaceCopy",
            &[Arg::inout("selfRef", &d), Arg::input("src", &s)],
            &[],
            None,
        )?;
        if broadcast("selfRef", &d.dims, "src", &s.dims)? != d.dims {
            return Err(bad(format!(
                "src {:?} does not broadcast to selfRef {:?}",
                s.dims, d.dims
            )));
        }
        let tensors: Vec<T> = vec![d.clone(), s.clone()];
        let run = Arc::new(move || view::write_f64(&d, &view::read_f64_as(&s, &d.dims)));
        finish(workspaceSize, executor, "aclnnInplaceCopy", 0, tensors, run)
    })
}
launch_fn!(aclnnInplaceCopy);

/// Phase 1 of `selfRef = 0`.
#[no_mangle]
pub unsafe extern "C" fn aclnnInplaceZeroGetWorkspaceSize(
    selfRef: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnInplaceZeroGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let d = objects::tensor(selfRef, "selfRef")?;
        contract::check("aclnnInplaceZero", &[Arg::inout("selfRef", &d)], &[], None)?;
        let tensors: Vec<T> = vec![d.clone()];
        let run = Arc::new(move || view::write_f64(&d, &vec![0.0; d.numel()]));
        finish(workspaceSize, executor, "aclnnInplaceZero", 0, tensors, run)
    })
}
launch_fn!(aclnnInplaceZero);
