//! Matrix products: `aclnnMm` (`out = self @ mat2`) and `aclnnAddmm`
//! (`out = beta * self + alpha * (mat1 @ mat2)`, self broadcasting to out). Any input strides (a
//! transposed operand is a stride view); `out` must be contiguous (its non-contiguous support is
//! not stated: the contract's stricter reading). Checked against the contract of the emulated
//! product and computed with the cube's arithmetic ([`super::cube::Precision`]).
use std::sync::Arc;

use senet_cann_sys::*;

use super::cube::Precision;
use super::{
    bad, begin, broadcast, expect_rank, expect_shape, finish, float_dtype, launch_fn, nn, refr, T,
};
use crate::api::Res;
use crate::contract::{self, Arg};
use crate::objects::{self, TensorDesc};
use crate::reference::matmul as rm;
use crate::view;

/// Checks `a [m, k] @ b [k, n]` and returns `[m, k, n]`.
fn mm_dims(an: &str, a: &TensorDesc, bn: &str, b: &TensorDesc) -> Res<[usize; 3]> {
    expect_rank(an, a, 2)?;
    expect_rank(bn, b, 2)?;
    if a.dims[1] != b.dims[0] {
        return Err(bad(format!(
            "{an} {:?} and {bn} {:?} cannot be multiplied (inner dims {} and {})",
            a.dims, b.dims, a.dims[1], b.dims[0]
        )));
    }
    Ok([a.dims[0] as usize, a.dims[1] as usize, b.dims[1] as usize])
}

/// Phase 1 of `out [M, N] = self [M, K] @ mat2 [K, N]`.
#[no_mangle]
pub unsafe extern "C" fn aclnnMmGetWorkspaceSize(
    self_: *const aclTensor,
    mat2: *const aclTensor,
    out: *mut aclTensor,
    cubeMathType: i8,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnMmGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let a = objects::tensor(self_, "self")?;
        let b = objects::tensor(mat2, "mat2")?;
        let y = objects::tensor(out, "out")?;
        let dt = float_dtype("aclnnMm", &[("self", &a), ("mat2", &b), ("out", &y)])?;
        let plan = contract::check(
            "aclnnMm",
            &[
                Arg::input("self", &a),
                Arg::input("mat2", &b),
                Arg::output("out", &y),
            ],
            &[],
            Some((cubeMathType, dt)),
        )?;
        let prec = Precision::of(plan.cube.unwrap_or(contract::CubeCell::Ok), dt);
        let [m, k, n] = mm_dims("self", &a, "mat2", &b)?;
        expect_shape(
            "out",
            &y,
            &[m as i64, n as i64],
            "[M, N] of self [M, K] @ mat2 [K, N]",
        )?;
        let tensors: Vec<T> = vec![a.clone(), b.clone(), y.clone()];
        let run = Arc::new(move || {
            let (mut av, mut bv) = (view::read_f32(&a), view::read_f32(&b));
            prec.operands(&mut av);
            prec.operands(&mut bv);
            let mut v = refr(rm::mm(&av, [m, k], &bv, [k, n]))?;
            prec.result(&mut v);
            view::write_f32(&y, &v)
        });
        finish(workspaceSize, executor, "aclnnMm", 0, tensors, run)
    })
}
launch_fn!(aclnnMm);

/// Phase 1 of `out = beta * self + alpha * (mat1 @ mat2)`; self broadcasts to `[M, N]`.
#[no_mangle]
pub unsafe extern "C" fn aclnnAddmmGetWorkspaceSize(
    self_: *const aclTensor,
    mat1: *const aclTensor,
    mat2: *const aclTensor,
    beta: *const aclScalar,
    alpha: *const aclScalar,
    out: *mut aclTensor,
    cubeMathType: i8,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnAddmmGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let s = objects::tensor(self_, "self")?;
        let a = objects::tensor(mat1, "mat1")?;
        let b = objects::tensor(mat2, "mat2")?;
        let be = objects::scalar(beta, "beta")?;
        let al = objects::scalar(alpha, "alpha")?;
        let y = objects::tensor(out, "out")?;
        let dt = float_dtype(
            "aclnnAddmm",
            &[("self", &s), ("mat1", &a), ("mat2", &b), ("out", &y)],
        )?;
        let plan = contract::check(
            "aclnnAddmm",
            &[
                Arg::input("self", &s),
                Arg::input("mat1", &a),
                Arg::input("mat2", &b),
                Arg::output("out", &y),
            ],
            &[("beta", be.dtype), ("alpha", al.dtype)],
            Some((cubeMathType, dt)),
        )?;
        let prec = Precision::of(plan.cube.unwrap_or(contract::CubeCell::Ok), dt);
        let (be, al) = (be.value as f32, al.value as f32);
        let [m, k, n] = mm_dims("mat1", &a, "mat2", &b)?;
        let mn = [m as i64, n as i64];
        if s.dims.len() > 2 || broadcast("self", &s.dims, "mat1 @ mat2", &mn)? != mn {
            return Err(bad(format!(
                "self {:?} does not broadcast to the product's shape {mn:?}",
                s.dims
            )));
        }
        expect_shape("out", &y, &mn, "[M, N] of mat1 [M, K] @ mat2 [K, N]")?;
        let tensors: Vec<T> = vec![s.clone(), a.clone(), b.clone(), y.clone()];
        let run = Arc::new(move || {
            let (mut av, mut bv) = (view::read_f32(&a), view::read_f32(&b));
            prec.operands(&mut av);
            prec.operands(&mut bv);
            let mut sv = view::read_f32(&s);
            prec.result(&mut sv);
            let mut v = refr(rm::addmm(&sv, &s.shape(), &av, [m, k], &bv, [k, n], be, al))?;
            prec.result(&mut v);
            view::write_f32(&y, &v)
        });
        finish(workspaceSize, executor, "aclnnAddmm", 0, tensors, run)
    })
}
launch_fn!(aclnnAddmm);
