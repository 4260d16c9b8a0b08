//! `aclnnForeachAddList`, `aclnnForeachAddListV2` and `aclnnForeachMulScalarV2` on an emulated
//! Ascend 950 (supported there per the contract's `### aclnnForeach*` table): the device alpha
//! read when the launch runs, and the phase-1 rules of their docs, including the 950's own
//! (50 tensors per list for AddListV2, a FLOAT scalar for FLOAT16 lists). The refusals on the
//! first-generation 910 and the acceptance on A2/A3 are in `product_910.rs` / `common/a2a3.rs`.
mod common;

use std::ffi::c_void;
use std::ptr::null_mut;

use common::probes::*;
use common::*;
use senet_cann_emu::*;
use senet_cann_sys::*;

const F: aclDataType = aclDataType::ACL_FLOAT;
const H: aclDataType = aclDataType::ACL_FLOAT16;
const ND: aclFormat = aclFormat::ACL_FORMAT_ND;

fn list(ts: &[*mut aclTensor]) -> *mut aclTensorList {
    let l = unsafe { aclCreateTensorList(ts.as_ptr() as *const *const aclTensor, ts.len() as u64) };
    assert!(!l.is_null(), "{}", err());
    l
}

fn t(v: &[f32]) -> *mut aclTensor {
    typed(v, &[v.len() as i64], F, ND)
}

/// Plans an AddList; the status and message when refused.
fn add_list(
    x1: *mut aclTensorList,
    x2: *mut aclTensorList,
    alpha: *mut aclTensor,
    out: *mut aclTensorList,
) -> Outcome {
    let (mut ws, mut ex) = (0, null_mut());
    let rc = unsafe { aclnnForeachAddListGetWorkspaceSize(x1, x2, alpha, out, &mut ws, &mut ex) };
    if rc != 0 {
        return Err((rc, err()));
    }
    run(ws, ex, aclnnForeachAddList);
    Ok(Vec::new())
}

#[test]
fn add_list_reads_alpha_from_the_device_when_the_launch_runs() {
    let _serial = init_env(&[("SENET_EMU_SOC", "Ascend950PR")]);
    let (a, b) = (t(&[1.0, 2.0]), t(&[4.0, -8.0]));
    let alpha = t(&[2.0]);
    let (x1, x2) = (list(&[a]), list(&[b]));
    let (mut ws, mut ex) = (0, null_mut());
    let rc = unsafe { aclnnForeachAddListGetWorkspaceSize(x1, x2, alpha, x1, &mut ws, &mut ex) };
    assert_eq!(rc, 0, "{}", err());
    // Change alpha after planning: the launch must use the new value (what a captured graph
    // replayed with a new learning rate relies on).
    let new = (-0.25f32).to_le_bytes();
    let dst = senet_cann_emu::objects::tensor(alpha, "alpha")
        .unwrap()
        .addr as *mut c_void;
    let rc = aclrtMemcpy(
        dst,
        4,
        new.as_ptr() as *const c_void,
        4,
        aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_DEVICE,
    );
    assert_eq!(rc, 0, "{}", err());
    run(ws, ex, aclnnForeachAddList);
    assert_eq!(values(a), vec![0.0, 4.0]);
    assert_eq!(values(b), vec![4.0, -8.0], "x2 is read only");
}

#[test]
fn the_950_notes() {
    let _serial = init_env(&[("SENET_EMU_SOC", "Ascend950PR")]);
    // 950 note: a FLOAT16 list also takes a FLOAT scalar (A2/A3 do not: common/a2a3.rs).
    assert_eq!(accepted(foreach_mul_scalar_v2(H, 0.5, F)), vec![0.5, -1.0]);
    // 950 note: x1, x2 and out of AddListV2 hold at most 50 tensors.
    assert_eq!(accepted(foreach_add_list_v2_of(50)), vec![3.0]);
    refused(&foreach_add_list_v2_of(51), "holds 51 tensors; at most 50");
}

#[test]
fn phase_one_rules() {
    let _serial = init_env(&[("SENET_EMU_SOC", "Ascend950PR")]);
    let (a, b, alpha) = (t(&[1.0, 2.0]), t(&[3.0, 4.0]), t(&[1.0]));
    let (x1, x2) = (list(&[a]), list(&[b]));
    let null = add_list(null_mut(), x2, alpha, x1).unwrap_err();
    assert_eq!(null.0, ACLNN_ERR_PARAM_NULLPTR, "{}", null.1);
    let null = add_list(x1, x2, null_mut(), x1).unwrap_err();
    assert_eq!(null.0, ACLNN_ERR_PARAM_NULLPTR, "{}", null.1);
    refused(
        &add_list(x1, list(&[b, b]), alpha, x1),
        "x2 has 2 tensors but x1 has 1",
    );
    refused(
        &add_list(x1, list(&[t(&[3.0, 4.0, 5.0])]), alpha, x1),
        "x2[0] is [3] but x1[0] is [2]",
    );
    refused(
        &add_list(x1, list(&[typed(&[3.0, 4.0], &[2], H, ND)]), alpha, x1),
        "x2[0] is FLOAT16 but the first input tensor is FLOAT",
    );
    refused(
        &add_list(x1, x2, alpha, list(&[t(&[0.0])])),
        "out[0] has 1 elements but x1[0] has 2",
    );
    refused(&add_list(x1, x2, t(&[1.0, 1.0]), x1), "exactly 1 element");
    refused(
        &add_list(x1, x2, typed(&[1.0], &[1], H, ND), x1),
        "alpha is FLOAT16 with FLOAT lists",
    );
    let i64s = tensor_fmt(malloc(16), &[2], aclDataType::ACL_INT64, ND);
    refused(
        &add_list(list(&[i64s]), list(&[i64s]), alpha, list(&[i64s])),
        "x1[0] is INT64",
    );
    refused(
        &add_list(
            x1,
            x2,
            alpha,
            list(&[typed(&[0.0, 0.0], &[2], F, aclFormat::ACL_FORMAT_NCHW)]),
        ),
        "the lists take ND",
    );
    // Aliasing: out = x1 is torch_npu's in-place form; out over x2 is not.
    refused(&add_list(x1, x2, alpha, x2), "out[0] overlaps x2[0]");
    refused(
        &add_list(x1, x2, alpha, list(&[alpha])),
        "out[0] has 1 elements",
    );
    // Empty tensors: AddList takes them (支持空Tensor), AddListV2 does not.
    let e = tensor_fmt(malloc(4), &[0], F, ND);
    assert!(add_list(list(&[e]), list(&[e]), alpha, list(&[e])).is_ok());
    let (mut ws, mut ex) = (0, null_mut());
    let rc = unsafe {
        aclnnForeachAddListV2GetWorkspaceSize(
            list(&[e]),
            list(&[e]),
            scalar(1.0),
            list(&[e]),
            &mut ws,
            &mut ex,
        )
    };
    assert_eq!(rc, ACLNN_ERR_PARAM_INVALID);
    assert!(err().contains("不支持空Tensor"), "{}", err());
    // MulScalarV2: no non-contiguous tensors (×), at most 50 out tensors, scalar dtypes.
    let strided = tensor_view(malloc(16), &[2], &[2], &[4], F, ND);
    let l = list(&[strided]);
    let rc =
        unsafe { aclnnForeachMulScalarV2GetWorkspaceSize(l, scalar(2.0), l, &mut ws, &mut ex) };
    assert_eq!(rc, ACLNN_ERR_PARAM_INVALID);
    assert!(err().contains("is not contiguous"), "{}", err());
    let many: Vec<_> = (0..51).map(|_| t(&[1.0])).collect();
    let l = list(&many);
    let rc =
        unsafe { aclnnForeachMulScalarV2GetWorkspaceSize(l, scalar(2.0), l, &mut ws, &mut ex) };
    assert_eq!(rc, ACLNN_ERR_PARAM_INVALID);
    assert!(err().contains("holds 51 tensors; at most 50"), "{}", err());
    let mut i = 2i32;
    let int_scalar =
        unsafe { aclCreateScalar(&mut i as *mut i32 as *mut c_void, aclDataType::ACL_INT32) };
    let rc =
        unsafe { aclnnForeachMulScalarV2GetWorkspaceSize(x1, int_scalar, x1, &mut ws, &mut ex) };
    assert_eq!(rc, ACLNN_ERR_PARAM_INVALID);
    assert!(
        err().contains("scalar is INT32 with FLOAT lists"),
        "{}",
        err()
    );
}
