//! Element-wise operators and reductions: Relu, InplaceRelu, ThresholdBackward, Sigmoid,
//! SigmoidBackward, Add, InplaceAdd, Mul, InplaceMul, InplaceMuls, Mean, ReduceSum.
//!
//! Float tensors of one op share one float dtype; which ones a product accepts, and the dtypes of
//! the aclScalar arguments, come from the contract ([`crate::contract::check`]), as does the
//! refusal of an `out` that overlaps an input. Add and Mul broadcast (numpy rules); the in-place
//! forms require the broadcast shape to be `selfRef`'s.
use std::sync::Arc;

use senet_cann_sys::*;

use super::{
    bad, begin, broadcast, expect_shape, finish, float_dtype, launch_fn, nn, refr, workspace_for, T,
};
use crate::api::Res;
use crate::contract::{self, rules, Arg};
use crate::objects;
use crate::reference::elementwise as re;
use crate::view;

type Unary = fn(&[f32]) -> Result<Vec<f32>, String>;

/// Plans `out = f(self)` for same-shape float tensors (`y` is `x` for an in-place op).
unsafe fn unary(
    op: &'static str,
    x: T,
    y: T,
    f: Unary,
    ws: *mut u64,
    ex: *mut *mut aclOpExecutor,
) -> Res<()> {
    let args = if Arc::ptr_eq(&x, &y) {
        vec![Arg::inout("selfRef", &x)]
    } else {
        vec![Arg::input("self", &x), Arg::output("out", &y)]
    };
    let plan = contract::check(op, &args, &[], None)?;
    if op == rules::SIGMOID_BF16.op {
        rules::SIGMOID_BF16.require(&plan.target, x.dtype != aclDataType::ACL_BF16, || {
            "self is BFLOAT16".to_string()
        })?;
    }
    float_dtype(op, &[("self", &x), ("out", &y)])?;
    expect_shape("out", &y, &x.dims, "the shape of self")?;
    let tensors = vec![x.clone(), y.clone()];
    let run = Arc::new(move || {
        let v = f(&view::read_f32(&x))?;
        view::write_f32(&y, &v)
    });
    finish(ws, ex, op, 0, tensors, run)
}

/// Phase 1 of `out = max(self, 0)`.
#[no_mangle]
pub unsafe extern "C" fn aclnnReluGetWorkspaceSize(
    self_: *const aclTensor,
    out: *const aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnReluGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let x = objects::tensor(self_, "self")?;
        let y = objects::tensor(out, "out")?;
        unary(
            "aclnnRelu",
            x,
            y,
            |v| Ok(re::relu(v)),
            workspaceSize,
            executor,
        )
    })
}
launch_fn!(aclnnRelu);

/// Phase 1 of `selfRef = max(selfRef, 0)`.
#[no_mangle]
pub unsafe extern "C" fn aclnnInplaceReluGetWorkspaceSize(
    selfRef: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnInplaceReluGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let x = objects::tensor(selfRef, "selfRef")?;
        unary(
            "aclnnInplaceRelu",
            x.clone(),
            x,
            |v| Ok(re::relu(v)),
            workspaceSize,
            executor,
        )
    })
}
launch_fn!(aclnnInplaceRelu);

/// Phase 1 of `out = self > threshold ? gradOutput : 0` (same shapes).
#[no_mangle]
pub unsafe extern "C" fn aclnnThresholdBackwardGetWorkspaceSize(
    gradOutput: *const aclTensor,
    self_: *const aclTensor,
    threshold: *const aclScalar,
    out: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnThresholdBackwardGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let g = objects::tensor(gradOutput, "gradOutput")?;
        let x = objects::tensor(self_, "self")?;
        let th = objects::scalar(threshold, "threshold")?;
        let y = objects::tensor(out, "out")?;
        contract::check(
            "aclnnThresholdBackward",
            &[
                Arg::input("gradOutput", &g),
                Arg::input("self", &x),
                Arg::output("out", &y),
            ],
            &[("threshold", th.dtype)],
            None,
        )?;
        let th = th.value as f32;
        float_dtype(
            "aclnnThresholdBackward",
            &[("gradOutput", &g), ("self", &x), ("out", &y)],
        )?;
        expect_shape("self", &x, &g.dims, "the shape of gradOutput")?;
        expect_shape("out", &y, &g.dims, "the shape of gradOutput")?;
        let tensors = vec![g.clone(), x.clone(), y.clone()];
        let run = Arc::new(move || {
            let v = refr(re::threshold_backward(
                &view::read_f32(&g),
                &view::read_f32(&x),
                th,
            ))?;
            view::write_f32(&y, &v)
        });
        finish(
            workspaceSize,
            executor,
            "aclnnThresholdBackward",
            0,
            tensors,
            run,
        )
    })
}
launch_fn!(aclnnThresholdBackward);

/// Phase 1 of `out = 1 / (1 + exp(-self))`.
#[no_mangle]
pub unsafe extern "C" fn aclnnSigmoidGetWorkspaceSize(
    self_: *const aclTensor,
    out: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnSigmoidGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let x = objects::tensor(self_, "self")?;
        let y = objects::tensor(out, "out")?;
        unary(
            "aclnnSigmoid",
            x,
            y,
            |v| Ok(re::sigmoid(v)),
            workspaceSize,
            executor,
        )
    })
}
launch_fn!(aclnnSigmoid);

/// Phase 1 of `gradInput = gradOutput * output * (1 - output)` (same shapes).
#[no_mangle]
pub unsafe extern "C" fn aclnnSigmoidBackwardGetWorkspaceSize(
    gradOutput: *const aclTensor,
    output: *const aclTensor,
    gradInput: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnSigmoidBackwardGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let g = objects::tensor(gradOutput, "gradOutput")?;
        let o = objects::tensor(output, "output")?;
        let gi = objects::tensor(gradInput, "gradInput")?;
        contract::check(
            "aclnnSigmoidBackward",
            &[
                Arg::input("gradOutput", &g),
                Arg::input("output", &o),
                Arg::output("gradInput", &gi),
            ],
            &[],
            None,
        )?;
        float_dtype(
            "aclnnSigmoidBackward",
            &[("gradOutput", &g), ("output", &o), ("gradInput", &gi)],
        )?;
        expect_shape("output", &o, &g.dims, "the shape of gradOutput")?;
        expect_shape("gradInput", &gi, &g.dims, "the shape of gradOutput")?;
        let tensors = vec![g.clone(), o.clone(), gi.clone()];
        let run = Arc::new(move || {
            let v = refr(re::sigmoid_backward(
                &view::read_f32(&g),
                &view::read_f32(&o),
            ))?;
            view::write_f32(&gi, &v)
        });
        finish(
            workspaceSize,
            executor,
            "aclnnSigmoidBackward",
            0,
            tensors,
            run,
        )
    })
}
launch_fn!(aclnnSigmoidBackward);

/// A broadcasting binary op: Add (`self + alpha * other`, with alpha's dtype) or Mul.
#[derive(Clone, Copy)]
enum Binary {
    Add(f32, aclDataType),
    Mul,
}

/// Plans `out = self (op) other` with broadcasting; `out` may be `self` (in-place forms).
#[allow(clippy::too_many_arguments)]
unsafe fn binary(
    op: &'static str,
    x: T,
    o: T,
    y: T,
    kind: Binary,
    inplace: bool,
    ws: *mut u64,
    ex: *mut *mut aclOpExecutor,
) -> Res<()> {
    let out_name = if inplace { "selfRef" } else { "out" };
    let self_name = if inplace { "selfRef" } else { "self" };
    let args = if inplace {
        vec![Arg::inout("selfRef", &x), Arg::input("other", &o)]
    } else {
        vec![
            Arg::input("self", &x),
            Arg::input("other", &o),
            Arg::output("out", &y),
        ]
    };
    let scalars = match kind {
        Binary::Add(_, dt) => vec![("alpha", dt)],
        Binary::Mul => Vec::new(),
    };
    contract::check(op, &args, &scalars, None)?;
    float_dtype(op, &[(self_name, &x), ("other", &o), (out_name, &y)])?;
    let shape = broadcast(self_name, &x.dims, "other", &o.dims)?;
    if inplace {
        if shape != x.dims {
            return Err(bad(format!(
                "other {:?} does not broadcast to selfRef {:?} (an in-place result keeps selfRef's shape)",
                o.dims, x.dims
            )));
        }
    } else {
        expect_shape("out", &y, &shape, "the broadcast shape of self and other")?;
    }
    let tensors = vec![x.clone(), o.clone(), y.clone()];
    let run = Arc::new(move || {
        let (xv, ov) = (view::read_f32(&x), view::read_f32(&o));
        let (xs, os) = (x.shape(), o.shape());
        let (v, _) = refr(match kind {
            Binary::Add(alpha, _) => re::add(&xv, &xs, &ov, &os, alpha),
            Binary::Mul => re::mul(&xv, &xs, &ov, &os),
        })?;
        view::write_f32(&y, &v)
    });
    finish(ws, ex, op, 0, tensors, run)
}

/// Phase 1 of `out = self + alpha * other` (broadcasting).
#[no_mangle]
pub unsafe extern "C" fn aclnnAddGetWorkspaceSize(
    self_: *const aclTensor,
    other: *const aclTensor,
    alpha: *const aclScalar,
    out: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnAddGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let x = objects::tensor(self_, "self")?;
        let o = objects::tensor(other, "other")?;
        let a = objects::scalar(alpha, "alpha")?;
        let y = objects::tensor(out, "out")?;
        binary(
            "aclnnAdd",
            x,
            o,
            y,
            Binary::Add(a.value as f32, a.dtype),
            false,
            workspaceSize,
            executor,
        )
    })
}
launch_fn!(aclnnAdd);

/// Phase 1 of `selfRef += alpha * other` (other broadcasts to selfRef).
#[no_mangle]
pub unsafe extern "C" fn aclnnInplaceAddGetWorkspaceSize(
    selfRef: *const aclTensor,
    other: *const aclTensor,
    alpha: *const aclScalar,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnInplaceAddGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let x = objects::tensor(selfRef, "selfRef")?;
        let o = objects::tensor(other, "other")?;
        let a = objects::scalar(alpha, "alpha")?;
        binary(
            "aclnnInplaceAdd",
            x.clone(),
            o,
            x,
            Binary::Add(a.value as f32, a.dtype),
            true,
            workspaceSize,
            executor,
        )
    })
}
launch_fn!(aclnnInplaceAdd);

/// Phase 1 of `out = self * other` (broadcasting).
#[no_mangle]
pub unsafe extern "C" fn aclnnMulGetWorkspaceSize(
    self_: *const aclTensor,
    other: *const aclTensor,
    out: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnMulGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let x = objects::tensor(self_, "self")?;
        let o = objects::tensor(other, "other")?;
        let y = objects::tensor(out, "out")?;
        binary(
            "aclnnMul",
            x,
            o,
            y,
            Binary::Mul,
            false,
            workspaceSize,
            executor,
        )
    })
}
launch_fn!(aclnnMul);

/// Phase 1 of `selfRef *= other` (other broadcasts to selfRef).
#[no_mangle]
pub unsafe extern "C" fn aclnnInplaceMulGetWorkspaceSize(
    selfRef: *mut aclTensor,
    other: *const aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnInplaceMulGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let x = objects::tensor(selfRef, "selfRef")?;
        let o = objects::tensor(other, "other")?;
        binary(
            "aclnnInplaceMul",
            x.clone(),
            o,
            x,
            Binary::Mul,
            true,
            workspaceSize,
            executor,
        )
    })
}
launch_fn!(aclnnInplaceMul);

/// Phase 1 of `selfRef *= other` for a scalar `other`.
#[no_mangle]
pub unsafe extern "C" fn aclnnInplaceMulsGetWorkspaceSize(
    selfRef: *mut aclTensor,
    other: *const aclScalar,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnInplaceMulsGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let x = objects::tensor(selfRef, "selfRef")?;
        let s = objects::scalar(other, "other")?;
        contract::check(
            "aclnnInplaceMuls",
            &[Arg::inout("selfRef", &x)],
            &[("other", s.dtype)],
            None,
        )?;
        let s = s.value as f32;
        float_dtype("aclnnInplaceMuls", &[("selfRef", &x)])?;
        let tensors = vec![x.clone()];
        let run = Arc::new(move || {
            let v = re::muls(&view::read_f32(&x), s);
            view::write_f32(&x, &v)
        });
        finish(workspaceSize, executor, "aclnnInplaceMuls", 0, tensors, run)
    })
}
launch_fn!(aclnnInplaceMuls);

/// Output shape of a reduction of `dims` (empty: all) over `shape`; checks range and repeats.
fn reduced_shape(shape: &[i64], dims: &[i64], keep: bool) -> Res<Vec<i64>> {
    let r = shape.len() as i64;
    let wrap = r.max(1);
    let mut hit = vec![dims.is_empty(); shape.len()];
    for &d in dims {
        if d < -wrap || d >= wrap {
            return Err(bad(format!(
                "dim {d} is out of range for a {r}-dim self {shape:?}"
            )));
        }
        let k = if d < 0 { d + wrap } else { d } as usize;
        if k < hit.len() {
            if hit[k] {
                return Err(bad(format!("dim {d} appears twice in {dims:?}")));
            }
            hit[k] = true;
        }
    }
    Ok(shape
        .iter()
        .zip(&hit)
        .filter_map(|(&s, &h)| match (h, keep) {
            (true, true) => Some(1),
            (true, false) => None,
            (false, _) => Some(s),
        })
        .collect())
}

/// Plans a reduction (`mean` or sum) of self over `dims` into `out` of dtype `dtype`.
#[allow(clippy::too_many_arguments)]
unsafe fn reduction(
    op: &'static str,
    self_: *const aclTensor,
    dims: *const aclIntArray,
    keep: bool,
    dtype: aclDataType,
    out: *mut aclTensor,
    mean: bool,
    ws: *mut u64,
    ex: *mut *mut aclOpExecutor,
) -> Res<()> {
    let x = objects::tensor(self_, "self")?;
    let d = objects::int_array(dims, "dim")?;
    let y = objects::tensor(out, "out")?;
    let plan = contract::check(
        op,
        &[Arg::input("self", &x), Arg::output("out", &y)],
        &[("dtype", dtype)],
        None,
    )?;
    float_dtype(op, &[("self", &x)])?;
    if !matches!(
        dtype,
        aclDataType::ACL_FLOAT | aclDataType::ACL_FLOAT16 | aclDataType::ACL_BF16
    ) {
        return Err(bad(format!(
            "dtype {} is not one the emulator reduces into (FLOAT, FLOAT16, BFLOAT16)",
            view::dtype_name(dtype)
        )));
    }
    // ReduceSum: dtype must equal out's dtype (the contract); Mean: dtype must be castable to out
    // (the emulator takes only the identity cast).
    let same = y.dtype == dtype;
    let msg = || {
        format!(
            "out is {} but dtype says {}",
            view::dtype_name(y.dtype),
            view::dtype_name(dtype)
        )
    };
    if op == rules::REDUCE_SUM_DTYPE.op {
        rules::REDUCE_SUM_DTYPE.require(&plan.target, same, msg)?;
    }
    if !same {
        return Err(bad(msg()));
    }
    let shape = reduced_shape(&x.dims, &d, keep)?;
    expect_shape("out", &y, &shape, "self reduced over the dims")?;
    let workspace = if mean {
        0
    } else {
        workspace_for(y.view_bytes())
    };
    let tensors = vec![x.clone(), y.clone()];
    let run = Arc::new(move || {
        let xv = view::read_f32(&x);
        let (v, _) = refr(if mean {
            re::mean(&xv, &x.shape(), &d, keep)
        } else {
            re::reduce_sum(&xv, &x.shape(), &d, keep)
        })?;
        view::write_f32(&y, &v)
    });
    finish(ws, ex, op, workspace, tensors, run)
}

/// Phase 1 of the mean over `dim` (empty: every dim). Workspace 0.
#[no_mangle]
pub unsafe extern "C" fn aclnnMeanGetWorkspaceSize(
    self_: *const aclTensor,
    dim: *const aclIntArray,
    keepDim: bool,
    dtype: aclDataType,
    out: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnMeanGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        reduction(
            "aclnnMean",
            self_,
            dim,
            keepDim,
            dtype,
            out,
            true,
            workspaceSize,
            executor,
        )
    })
}
launch_fn!(aclnnMean);

/// Phase 1 of the sum over `dims` (empty: every dim). Workspace: the output's bytes rounded up
/// to 512.
#[no_mangle]
pub unsafe extern "C" fn aclnnReduceSumGetWorkspaceSize(
    self_: *const aclTensor,
    dims: *const aclIntArray,
    keepDims: bool,
    dtype: aclDataType,
    out: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnReduceSumGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        reduction(
            "aclnnReduceSum",
            self_,
            dims,
            keepDims,
            dtype,
            out,
            false,
            workspaceSize,
            executor,
        )
    })
}
launch_fn!(aclnnReduceSum);
