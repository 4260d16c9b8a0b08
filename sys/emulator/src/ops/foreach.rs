//! The `aclnnForeach*` operators senet uses for MindSpore's Momentum with the learning rate in
//! device memory: `aclnnForeachAddList` (`y_i = x1_i + alpha·x2_i`, alpha a 1-element device
//! tensor read when the stream runs the launch, so a captured graph replays with whatever the
//! tensor then holds), `aclnnForeachAddListV2` (the same with an aclScalar alpha) and
//! `aclnnForeachMulScalarV2` (`y_i = x_i·scalar`, an aclScalar).
//!
//! Product support is the contract's (`aclnn-contract.md` `### aclnnForeach*` table: ❌ on the
//! first-generation 910, 310P and 310B; ✅ on A2, A3 and 950 for these three). The argument
//! rules are the docs' the table row names (`hicann/ops-nn@e5c3fa9327ea:foreach/foreach_add_list/
//! docs/aclnnForeachAddList.md`, `.../aclnnForeachAddListV2.md`, `foreach/foreach_mul_scalar/
//! docs/aclnnForeachMulScalarV2.md`, 参数说明 tables and the per-product notes below them); each
//! check below names the doc and the table cell it implements. Every failure of those rules is
//! `ACLNN_ERR_PARAM_INVALID` (the docs' 161002), a null list or scalar `ACLNN_ERR_PARAM_NULLPTR`.
//!
//! Aliasing: an output tensor may be the very view of the first input at its index (`out_i ==
//! x1_i`, same address, dtype, shape, strides and offset): torch_npu's in-place foreach ops pass
//! `out = self` to these operators (contract Part E, `ForeachMulScalarKernelOpApi.cpp:61,70,
//! 94-99`). Any other overlap between an output and an input is refused (contract Part D: only
//! `aclnnInplace*` promise in-place semantics).
//!
//! Not emulated (refused with `ACLNN_ERR_INNER`, never computed wrongly): the integer dtypes the
//! docs allow, and an `out` tensor with more elements than its input (the docs allow "shape size
//! >= x1's"; which elements the vendor writes is not documented).
use std::sync::Arc;

use senet_cann_sys::*;

use super::{begin, finish, launch_fn, list, nn, T};
use crate::api::{Fail, Res};
use crate::contract::{self, Target};
use crate::objects::{self, TensorDesc};
use crate::reference::elementwise as re;
use crate::view;

use aclDataType as D;

const ADD_LIST_DOC: &str =
    "hicann/ops-nn@e5c3fa9327ea:foreach/foreach_add_list/docs/aclnnForeachAddList.md";
const ADD_LIST_V2_DOC: &str =
    "hicann/ops-nn@e5c3fa9327ea:foreach/foreach_add_list/docs/aclnnForeachAddListV2.md";
const MUL_SCALAR_V2_DOC: &str =
    "hicann/ops-nn@e5c3fa9327ea:foreach/foreach_mul_scalar/docs/aclnnForeachMulScalarV2.md";

/// The list dtypes of `aclnnForeachAddList` / `V2` (x1, x2, out rows of both docs).
const ADD_LIST_DTYPES: &[aclDataType] = &[
    D::ACL_FLOAT,
    D::ACL_FLOAT16,
    D::ACL_BF16,
    D::ACL_INT32,
    D::ACL_INT16,
    D::ACL_INT8,
    D::ACL_UINT8,
];

/// The list dtypes of `aclnnForeachMulScalarV2` (x, out rows of its doc).
const MUL_SCALAR_DTYPES: &[aclDataType] =
    &[D::ACL_FLOAT, D::ACL_FLOAT16, D::ACL_BF16, D::ACL_INT32];

/// The most tensors `aclnnForeachMulScalarV2`'s `out` may hold (doc, out row: 支持包含的最大
/// Tensor个数为50; the 950 note says the same of x; contract table row "x/out at most 50").
const MUL_SCALAR_MAX_TENSORS: usize = 50;

/// The most tensors `aclnnForeachAddListV2`'s x1, x2 and out may hold on the 950 (doc, 950 note
/// below the table: 入参x1、x2和出参y支持包含的最大Tensor个数均为50).
const ADD_LIST_V2_MAX_TENSORS_950: usize = 50;

/// The per-operator list rules of one call.
struct ListRules {
    op: &'static str,
    doc: &'static str,
    dtypes: &'static [aclDataType],
    /// Whether empty tensors are allowed (使用说明: 支持空Tensor / 不支持空Tensor).
    empty_ok: bool,
    /// Whether non-contiguous tensors are allowed (非连续Tensor column: √ / ×).
    non_contiguous_ok: bool,
    /// The most tensors per list on the target, if the doc limits it there.
    max_tensors: Option<usize>,
}

fn refuse(r: &ListRules, t: &Target, rule: &str, what: String) -> Fail {
    contract::check::refuse(r.op, t, rule, what, r.doc)
}

/// Checks the list arguments: `inputs[0]` is x / x1 (whose dtype and shapes the others follow),
/// `out` the output list. Returns the common dtype.
fn check_lists(r: &ListRules, t: &Target, inputs: &[(&str, &[T])], out: &[T]) -> Res<aclDataType> {
    let (x_name, x) = inputs[0];
    let all = || inputs.iter().copied().chain(std::iter::once(("out", out)));
    for (name, l) in all() {
        if l.len() != x.len() {
            return Err(refuse(
                r,
                t,
                "list lengths",
                format!(
                    "{name} has {} tensors but {x_name} has {}; the lists pair up by index (参数说明: shape与入参{x_name}一致)",
                    l.len(),
                    x.len()
                ),
            ));
        }
        if let Some(max) = r.max_tensors {
            if l.len() > max {
                return Err(refuse(
                    r,
                    t,
                    "tensors per list",
                    format!(
                        "{name} holds {} tensors; at most {max} on this product (支持包含的最大Tensor个数为{max})",
                        l.len()
                    ),
                ));
            }
        }
    }
    let Some(first) = x.first() else {
        return Ok(D::ACL_FLOAT);
    };
    let dt = first.dtype;
    for (name, l) in all() {
        for (i, e) in l.iter().enumerate() {
            check_tensor(r, t, &format!("{name}[{i}]"), e, dt)?;
            let xi = &x[i];
            if name == "out" {
                if e.numel() < xi.numel() {
                    return Err(refuse(
                        r,
                        t,
                        "out shape size",
                        format!(
                            "out[{i}] has {} elements but {x_name}[{i}] has {} (out row: shape size大于等于入参{x_name}的shape size)",
                            e.numel(),
                            xi.numel()
                        ),
                    ));
                }
            } else if e.dims != xi.dims {
                return Err(refuse(
                    r,
                    t,
                    "shapes",
                    format!(
                        "{name}[{i}] is {:?} but {x_name}[{i}] is {:?} (参数说明: shape与入参{x_name}一致)",
                        e.dims, xi.dims
                    ),
                ));
            }
        }
    }
    Ok(dt)
}

/// One tensor of a list: dtype in the doc's column and equal to the first input's (该参数中所有
/// Tensor的数据类型保持一致; 数据类型与入参一致), format ND, rank 0-8, emptiness and contiguity per
/// the doc's columns.
fn check_tensor(r: &ListRules, t: &Target, name: &str, e: &TensorDesc, dt: aclDataType) -> Res<()> {
    if !r.dtypes.contains(&e.dtype) {
        let allowed: Vec<&str> = r.dtypes.iter().map(|&d| view::dtype_name(d)).collect();
        return Err(refuse(
            r,
            t,
            "dtype",
            format!(
                "{name} is {}; {} takes {}",
                view::dtype_name(e.dtype),
                r.op,
                allowed.join(", ")
            ),
        ));
    }
    if e.dtype != dt {
        return Err(refuse(
            r,
            t,
            "one dtype",
            format!(
                "{name} is {} but the first input tensor is {}; every list tensor shares one dtype",
                view::dtype_name(e.dtype),
                view::dtype_name(dt)
            ),
        ));
    }
    if e.format != aclFormat::ACL_FORMAT_ND {
        return Err(refuse(
            r,
            t,
            "format",
            format!("{name} has format {:?}; the lists take ND", e.format),
        ));
    }
    if e.dims.len() > 8 {
        return Err(refuse(
            r,
            t,
            "rank",
            format!("{name} {:?} has more than 8 dims (维度 0-8)", e.dims),
        ));
    }
    if !r.empty_ok && e.numel() == 0 {
        return Err(refuse(
            r,
            t,
            "no empty tensors",
            format!("{name} is empty (不支持空Tensor)"),
        ));
    }
    if !r.non_contiguous_ok && !e.is_contiguous() {
        return Err(refuse(
            r,
            t,
            "contiguous",
            format!(
                "{name} {} is not contiguous (非连续Tensor: ×)",
                e.describe()
            ),
        ));
    }
    Ok(())
}

/// Whether `a` and `b` are the same view of the same memory.
fn same_view(a: &TensorDesc, b: &TensorDesc) -> bool {
    a.addr == b.addr
        && a.offset == b.offset
        && a.dtype == b.dtype
        && a.dims == b.dims
        && a.strides == b.strides
}

/// No output overlaps an input, except `out_i` being exactly `x1_i` (module docs).
fn check_aliasing(
    r: &ListRules,
    t: &Target,
    inputs: &[(&str, &[T])],
    extra: Option<(&str, &T)>,
    out: &[T],
) -> Res<()> {
    for (i, o) in out.iter().enumerate() {
        let listed = inputs
            .iter()
            .enumerate()
            .flat_map(|(k, &(n, l))| l.iter().enumerate().map(move |(j, e)| (k, n, j, e)));
        for (k, n, j, e) in listed {
            if k == 0 && j == i && same_view(o, e) {
                continue;
            }
            if crate::alias::overlap(o, e) {
                return Err(contract::check::refuse(
                    r.op,
                    t,
                    "no output aliasing an input",
                    format!(
                        "out[{i}] overlaps {n}[{j}] in device memory; only out[i] == {}[i] (the same view) is allowed",
                        inputs[0].0
                    ),
                    contract::rules::INPLACE_SRC,
                ));
            }
        }
        if let Some((n, e)) = extra {
            if crate::alias::overlap(o, e) {
                return Err(contract::check::refuse(
                    r.op,
                    t,
                    "no output aliasing an input",
                    format!("out[{i}] overlaps {n} in device memory"),
                    contract::rules::INPLACE_SRC,
                ));
            }
        }
    }
    Ok(())
}

/// The checks every call shares: product support (contract table), then the lists and aliasing.
fn plan(
    r: &ListRules,
    inputs: &[(&str, &[T])],
    extra: Option<(&str, &T)>,
    out: &[T],
) -> Res<(Target, aclDataType)> {
    let target = contract::check(r.op, &[], &[], None)?.target;
    let dt = check_lists(r, &target, inputs, out)?;
    check_aliasing(r, &target, inputs, extra, out)?;
    Ok((target, dt))
}

/// Refuses what the emulator does not compute (module docs).
fn emulated(r: &ListRules, x: &[T], out: &[T], dt: aclDataType) -> Res<()> {
    if !view::is_float(dt) {
        return Err(Fail::new(
            ACLNN_ERR_INNER,
            format!(
                "{}: the emulator computes FLOAT, FLOAT16 and BFLOAT16 lists only, not {}",
                r.op,
                view::dtype_name(dt)
            ),
        ));
    }
    for (i, (o, e)) in out.iter().zip(x).enumerate() {
        if o.numel() != e.numel() {
            return Err(Fail::new(
                ACLNN_ERR_INNER,
                format!(
                    "{}: out[{i}] has more elements than its input; the emulator does not model which the vendor writes",
                    r.op
                ),
            ));
        }
    }
    Ok(())
}

/// The scalar dtypes an aclScalar alpha/scalar may have for a list of `dt` on the target: the
/// A2/A3 note (`id7`) and the 950 note (`id8`) below the parameter tables of
/// `aclnnForeachAddListV2.md` and `aclnnForeachMulScalarV2.md` (they say the same for both).
fn scalar_dtypes(t: &Target, dt: aclDataType) -> &'static [aclDataType] {
    let on_950 = t.product == contract::Product::Ascend950;
    match dt {
        D::ACL_FLOAT | D::ACL_BF16 => &[D::ACL_FLOAT, D::ACL_DOUBLE],
        D::ACL_FLOAT16 if on_950 => &[D::ACL_FLOAT16, D::ACL_FLOAT, D::ACL_DOUBLE],
        D::ACL_FLOAT16 => &[D::ACL_FLOAT16, D::ACL_DOUBLE],
        D::ACL_INT32 => &[D::ACL_INT32, D::ACL_INT64],
        // INT16 / INT8 / UINT8 lists: INT32 or INT64 on A2/A3; the 950 note lists none.
        _ if on_950 => &[],
        _ => &[D::ACL_INT32, D::ACL_INT64],
    }
}

fn check_scalar(r: &ListRules, t: &Target, name: &str, s: aclDataType, dt: aclDataType) -> Res<()> {
    let ok = scalar_dtypes(t, dt);
    if ok.contains(&s) {
        return Ok(());
    }
    let names: Vec<&str> = ok.iter().map(|&d| view::dtype_name(d)).collect();
    Err(refuse(
        r,
        t,
        "scalar dtype",
        format!(
            "{name} is {} with {} lists; this product takes {} (the per-product note below the parameter table)",
            view::dtype_name(s),
            view::dtype_name(dt),
            if names.is_empty() {
                "no scalar dtype for this list dtype".to_string()
            } else {
                names.join(", ")
            }
        ),
    ))
}

/// `aclnnForeachAddList`'s alpha: not null (161001), not empty and one element (元素个数为1),
/// of the dtype its row ties to x1's: FLOAT32/FLOAT16/INT32 lists the same, BFLOAT16 lists
/// FLOAT32, INT16/INT8/UINT8 lists INT32.
fn check_alpha_tensor(r: &ListRules, t: &Target, a: &TensorDesc, dt: aclDataType) -> Res<()> {
    if a.numel() != 1 {
        return Err(refuse(
            r,
            t,
            "alpha",
            format!(
                "alpha {} must hold exactly 1 element (alpha row: 元素个数为1)",
                a.describe()
            ),
        ));
    }
    let want = match dt {
        D::ACL_BF16 => D::ACL_FLOAT,
        D::ACL_INT16 | D::ACL_INT8 | D::ACL_UINT8 => D::ACL_INT32,
        d => d,
    };
    if a.dtype != want {
        return Err(refuse(
            r,
            t,
            "alpha dtype",
            format!(
                "alpha is {} with {} lists; its row asks for {}",
                view::dtype_name(a.dtype),
                view::dtype_name(dt),
                view::dtype_name(want)
            ),
        ));
    }
    if a.dims.len() > 8 {
        return Err(refuse(
            r,
            t,
            "rank",
            format!("alpha {:?} has more than 8 dims", a.dims),
        ));
    }
    Ok(())
}

/// `y_i = x1_i + alpha·x2_i` for every index, in f32 (the arithmetic of
/// [`re::add`], `aclnnAdd`'s), each result rounded to the output's dtype.
fn add_lists(x1: &[T], x2: &[T], out: &[T], alpha: f32) -> Result<(), String> {
    for ((a, b), o) in x1.iter().zip(x2).zip(out) {
        let shape = a.shape();
        let (y, _) = re::add(
            &view::read_f32(a),
            &shape,
            &view::read_f32(b),
            &shape,
            alpha,
        )?;
        view::write_f32(o, &y)?;
    }
    Ok(())
}

/// Phase 1 of `out_i = x1_i + alpha·x2_i`, alpha a 1-element device tensor read when the launch
/// runs. Workspace 0.
#[no_mangle]
pub unsafe extern "C" fn aclnnForeachAddListGetWorkspaceSize(
    x1: *const aclTensorList,
    x2: *const aclTensorList,
    alpha: *const aclTensor,
    out: *const aclTensorList,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnForeachAddListGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let (a, b, y) = (list(x1, "x1")?, list(x2, "x2")?, list(out, "out")?);
        if alpha.is_null() {
            return Err(Fail::new(ACLNN_ERR_PARAM_NULLPTR, "alpha is null"));
        }
        let al = objects::tensor(alpha, "alpha")?;
        let r = ListRules {
            op: "aclnnForeachAddList",
            doc: ADD_LIST_DOC,
            dtypes: ADD_LIST_DTYPES,
            empty_ok: true,
            non_contiguous_ok: true,
            max_tensors: None,
        };
        let inputs: [(&str, &[T]); 2] = [("x1", &a), ("x2", &b)];
        let (target, dt) = plan(&r, &inputs, Some(("alpha", &al)), &y)?;
        check_alpha_tensor(&r, &target, &al, if a.is_empty() { al.dtype } else { dt })?;
        emulated(&r, &a, &y, dt)?;
        let mut tensors: Vec<T> = a.iter().chain(&b).chain(&y).cloned().collect();
        tensors.push(al.clone());
        let run = Arc::new(move || {
            let alpha = view::read_f32(&al)[0];
            add_lists(&a, &b, &y, alpha)
        });
        finish(
            workspaceSize,
            executor,
            "aclnnForeachAddList",
            0,
            tensors,
            run,
        )
    })
}
launch_fn!(aclnnForeachAddList);

/// Phase 1 of `out_i = x1_i + alpha·x2_i`, alpha an aclScalar. Workspace 0.
#[no_mangle]
pub unsafe extern "C" fn aclnnForeachAddListV2GetWorkspaceSize(
    x1: *const aclTensorList,
    x2: *const aclTensorList,
    alpha: *const aclScalar,
    out: *mut aclTensorList,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnForeachAddListV2GetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let (a, b, y) = (list(x1, "x1")?, list(x2, "x2")?, list(out, "out")?);
        if alpha.is_null() {
            return Err(Fail::new(ACLNN_ERR_PARAM_NULLPTR, "alpha is null"));
        }
        let s = objects::scalar(alpha, "alpha")?;
        let on_950 = contract::check::target()?.product == contract::Product::Ascend950;
        let r = ListRules {
            op: "aclnnForeachAddListV2",
            doc: ADD_LIST_V2_DOC,
            dtypes: ADD_LIST_DTYPES,
            empty_ok: false,
            non_contiguous_ok: true,
            max_tensors: on_950.then_some(ADD_LIST_V2_MAX_TENSORS_950),
        };
        let inputs: [(&str, &[T]); 2] = [("x1", &a), ("x2", &b)];
        let (target, dt) = plan(&r, &inputs, None, &y)?;
        check_scalar(&r, &target, "alpha", s.dtype, dt)?;
        emulated(&r, &a, &y, dt)?;
        let tensors: Vec<T> = a.iter().chain(&b).chain(&y).cloned().collect();
        let alpha = s.value as f32;
        let run = Arc::new(move || add_lists(&a, &b, &y, alpha));
        finish(
            workspaceSize,
            executor,
            "aclnnForeachAddListV2",
            0,
            tensors,
            run,
        )
    })
}
launch_fn!(aclnnForeachAddListV2);

/// Phase 1 of `out_i = x_i·scalar`, scalar an aclScalar. Workspace 0.
#[no_mangle]
pub unsafe extern "C" fn aclnnForeachMulScalarV2GetWorkspaceSize(
    x: *const aclTensorList,
    scalar: *const aclScalar,
    out: *mut aclTensorList,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnForeachMulScalarV2GetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let (a, y) = (list(x, "x")?, list(out, "out")?);
        if scalar.is_null() {
            return Err(Fail::new(ACLNN_ERR_PARAM_NULLPTR, "scalar is null"));
        }
        let s = objects::scalar(scalar, "scalar")?;
        let r = ListRules {
            op: "aclnnForeachMulScalarV2",
            doc: MUL_SCALAR_V2_DOC,
            dtypes: MUL_SCALAR_DTYPES,
            empty_ok: true,
            non_contiguous_ok: false,
            max_tensors: Some(MUL_SCALAR_MAX_TENSORS),
        };
        let inputs: [(&str, &[T]); 1] = [("x", &a)];
        let (target, dt) = plan(&r, &inputs, None, &y)?;
        check_scalar(&r, &target, "scalar", s.dtype, dt)?;
        emulated(&r, &a, &y, dt)?;
        let tensors: Vec<T> = a.iter().chain(&y).cloned().collect();
        let factor = s.value as f32;
        let run = Arc::new(move || {
            for (e, o) in a.iter().zip(&y) {
                view::write_f32(o, &re::muls(&view::read_f32(e), factor))?;
            }
            Ok(())
        });
        finish(
            workspaceSize,
            executor,
            "aclnnForeachMulScalarV2",
            0,
            tensors,
            run,
        )
    })
}
launch_fn!(aclnnForeachMulScalarV2);
