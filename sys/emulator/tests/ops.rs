//! aclnn objects and operators through the two-phase API.
mod common;

use std::ffi::c_void;
use std::ptr::null_mut;

use common::*;
use senet_cann_emu::*;
use senet_cann_sys::*;

fn plan_conv(
    x: *mut aclTensor,
    w: *mut aclTensor,
    b: *mut aclTensor,
    y: *mut aclTensor,
) -> (aclnnStatus, u64, *mut aclOpExecutor) {
    let (st, pd, dl) = (ints(&[1, 1]), ints(&[0, 0]), ints(&[1, 1]));
    let mut ws = 0u64;
    let mut ex = null_mut();
    let rc = unsafe {
        aclnnConvolutionGetWorkspaceSize(
            x,
            w,
            b,
            st,
            pd,
            dl,
            false,
            null_mut(),
            1,
            y,
            3, // USE_HF32: A2 refuses KEEP_DTYPE for FLOAT (aclnnConvolution.md:436)
            &mut ws,
            &mut ex,
        )
    };
    for a in [st, pd, dl] {
        assert_eq!(aclDestroyIntArray(a), 0);
    }
    (rc, ws, ex)
}

#[test]
fn conv_two_phase_matches_hand_computation() {
    let _serial = init();
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let (xp, xt) = tensor_from(&x, &[1, 1, 3, 3]);
    let (wp, wt) = tensor_from(&[1.0, 0.0, 0.0, 1.0], &[1, 1, 2, 2]);
    let (bp, bt) = tensor_from(&[10.0], &[1]);
    let (yp, yt) = tensor_from(&[0.0; 4], &[1, 1, 2, 2]);
    let plan = || {
        let (rc, ws, ex) = plan_conv(xt, wt, bt, yt);
        assert_eq!(rc, 0, "{}", err());
        (ws, ex)
    };
    let (ws, _) = plan();
    assert_eq!(ws, 512, "output bytes rounded up to 512");
    let w = malloc(ws as usize);
    let small = malloc(100);
    // A refused launch still consumes the executor ("phase 2 consumes and frees it"): each
    // case plans afresh, and relaunching the refused executor finds it gone.
    let refused = |launch: &dyn Fn(*mut aclOpExecutor) -> aclnnStatus, code, needle: &str| {
        let (_, ex) = plan();
        assert_eq!(launch(ex), code);
        assert!(err().contains(needle), "{}", err());
        assert_eq!(
            aclnnConvolution(w, ws, ex, null_mut()),
            ACLNN_ERR_PARAM_INVALID
        );
        assert!(err().contains("not a live aclOpExecutor"), "{}", err());
    };
    refused(
        &|ex| aclnnConvolution(w, ws - 1, ex, null_mut()),
        ACLNN_ERR_PARAM_INVALID,
        "workspaceSize 511 differs from the 512",
    );
    refused(
        &|ex| aclnnConvolution(null_mut(), ws, ex, null_mut()),
        ACLNN_ERR_PARAM_NULLPTR,
        "workspace is null",
    );
    refused(
        &|ex| aclnnRelu(w, ws, ex, null_mut()),
        ACLNN_ERR_PARAM_INVALID,
        "launch it with aclnnConvolution, not aclnnRelu",
    );
    refused(
        &|ex| aclnnConvolution(small, ws, ex, null_mut()),
        ACLNN_ERR_PARAM_INVALID,
        "workspace",
    );
    // The executor keeps the caller's aclTensor objects until phase 2 returns (contract Part
    // D): destroying one before the launch is a use-after-free the launch reports.
    let (_, ex) = plan();
    let (_, xt2) = tensor_from(&x, &[1, 1, 3, 3]);
    let (rc, ws2, ex2) = plan_conv(xt2, wt, bt, yt);
    assert_eq!(rc, 0, "{}", err());
    assert_eq!(aclDestroyTensor(xt2), 0);
    assert_eq!(
        aclnnConvolution(w, ws2, ex2, null_mut()),
        ACLNN_ERR_PARAM_INVALID
    );
    assert!(
        err().contains("use after free: input") && err().contains("op_executor.cpp"),
        "{}",
        err()
    );
    assert_eq!(aclnnConvolution(w, ws, ex, null_mut()), 0, "{}", err());
    // Once phase 2 has returned, the descriptors may go (the queued work holds copies).
    for t in [xt, wt, bt, yt] {
        assert_eq!(aclDestroyTensor(t), 0);
    }
    // Single use: consumed by the launch.
    assert_eq!(
        aclnnConvolution(w, ws, ex, null_mut()),
        ACLNN_ERR_PARAM_INVALID
    );
    assert!(err().contains("not a live aclOpExecutor"), "{}", err());
    assert_eq!(aclrtSynchronizeStream(null_mut()), 0, "{}", err());
    assert_eq!(download(yp, 4), vec![16.0, 18.0, 22.0, 24.0]);
    for p in [xp, wp, bp, yp, w, small] {
        assert_eq!(aclrtFree(p), 0, "{}", err());
    }
}

#[test]
fn conv_shape_errors_name_the_problem() {
    let _serial = init();
    let (_, xt) = tensor_from(&[0.0; 32], &[2, 4, 2, 2]);
    let (_, wt) = tensor_from(&[0.0; 12], &[1, 3, 2, 2]);
    let (_, yt) = tensor_from(&[0.0; 2], &[2, 1, 1, 1]);
    let (rc, _, ex) = plan_conv(xt, wt, null_mut(), yt);
    assert_eq!(rc, ACLNN_ERR_PARAM_INVALID);
    assert!(ex.is_null());
    let e = err();
    assert!(
        e.starts_with(
            "aclnnConvolutionGetWorkspaceSize: weight [1, 3, 2, 2] needs input channels 3*groups"
        ),
        "{e}"
    );
    // Wrong output shape.
    let (_, wt) = tensor_from(&[0.0; 16], &[1, 4, 2, 2]);
    let (_, yt2) = tensor_from(&[0.0; 8], &[2, 1, 2, 2]);
    let (rc, _, _) = plan_conv(xt, wt, null_mut(), yt2);
    assert_eq!(rc, ACLNN_ERR_PARAM_INVALID);
    assert!(
        err().contains("output is [2, 1, 2, 2] but must be [2, 1, 1, 1]"),
        "{}",
        err()
    );
    // Mixed dtypes.
    let p16 = malloc(64);
    let y16 = tensor_of(p16, &[2, 1, 1, 1], aclDataType::ACL_FLOAT16);
    let (rc, _, _) = plan_conv(xt, wt, null_mut(), y16);
    assert_eq!(rc, ACLNN_ERR_PARAM_INVALID);
    assert!(
        err().contains("output is FLOAT16 but input and weight are FLOAT [contract rule"),
        "{}",
        err()
    );
    // Null and destroyed arguments.
    let (rc, _, _) = plan_conv(null_mut(), wt, null_mut(), yt);
    assert_eq!(rc, ACLNN_ERR_PARAM_NULLPTR);
    assert_eq!(aclDestroyTensor(yt), 0);
    assert_eq!(
        aclDestroyTensor(yt),
        ACLNN_ERR_PARAM_INVALID,
        "double destroy"
    );
    let (rc, _, _) = plan_conv(xt, wt, null_mut(), yt);
    assert_eq!(rc, ACLNN_ERR_PARAM_INVALID, "use after destroy");
    assert!(err().contains("not a live aclTensor"), "{}", err());
    let s = scalar(1.0);
    let (rc, _, _) = plan_conv(xt, wt, null_mut(), s as *mut aclTensor);
    assert_eq!(rc, ACLNN_ERR_PARAM_INVALID);
    assert!(
        err().contains("is an aclScalar, not an aclTensor"),
        "{}",
        err()
    );
    assert_eq!(aclDestroyTensor(null_mut()), ACLNN_ERR_PARAM_NULLPTR);
}

#[test]
fn tensor_creation_is_validated() {
    let _serial = init();
    let p = malloc(64);
    let dims = [4i64, 4];
    let st = [4i64, 1];
    let create = |dims: &[i64],
                  st: &[i64],
                  off: i64,
                  fmt: aclFormat,
                  storage: &[i64],
                  data: *mut c_void| unsafe {
        aclCreateTensor(
            dims.as_ptr(),
            dims.len() as u64,
            aclDataType::ACL_FLOAT,
            st.as_ptr(),
            off,
            fmt,
            storage.as_ptr(),
            storage.len() as u64,
            data,
        )
    };
    let nd = aclFormat::ACL_FORMAT_ND;
    let ok = create(&dims, &st, 0, nd, &dims, p);
    assert!(!ok.is_null(), "{}", err());
    // Too large for the 64-byte allocation.
    assert!(create(&[5, 4], &st, 0, nd, &[5, 4], p).is_null());
    assert!(
        err().contains("aclCreateTensor") && err().contains("past the end"),
        "{}",
        err()
    );
    // Misaligned data.
    let p4 = (p as usize + 4) as *mut c_void;
    assert!(create(&[2], &[1], 0, nd, &[2], p4).is_null());
    assert!(err().contains("32-byte aligned"), "{}", err());
    // Host memory.
    let mut host = vec![0f32; 64];
    let hp = ((host.as_mut_ptr() as usize).div_ceil(32) * 32) as *mut c_void;
    assert!(create(&[2], &[1], 0, nd, &[2], hp).is_null());
    assert!(
        err().contains("not inside any live device allocation"),
        "{}",
        err()
    );
    // The view reaches past the storage.
    assert!(create(&dims, &st, 1, nd, &dims, p).is_null());
    assert!(err().contains("reaches element 16"), "{}", err());
    // Negative dim, negative offset, bad format, null dims.
    assert!(create(&[-1, 4], &st, 0, nd, &dims, p).is_null());
    assert!(create(&dims, &st, -1, nd, &dims, p).is_null());
    assert!(create(&dims, &st, 0, aclFormat::ACL_FORMAT_FRACTAL_Z, &dims, p).is_null());
    assert!(err().contains("format"), "{}", err());
    let t = unsafe {
        aclCreateTensor(
            std::ptr::null(),
            2,
            aclDataType::ACL_FLOAT,
            st.as_ptr(),
            0,
            nd,
            dims.as_ptr(),
            2,
            p,
        )
    };
    assert!(t.is_null());
    // A transposed (strided) view is fine.
    let tr = create(&dims, &[1, 4], 0, nd, &dims, p);
    assert!(!tr.is_null(), "{}", err());
    // Scalars copy their value at creation.
    let mut v = 2.5f64;
    let s = unsafe { aclCreateScalar(&mut v as *mut f64 as *mut c_void, aclDataType::ACL_DOUBLE) };
    assert!(!s.is_null());
    v = 0.0;
    let _ = v;
    assert_eq!(aclDestroyScalar(s), 0);
    assert_eq!(aclDestroyScalar(s), ACLNN_ERR_PARAM_INVALID);
    assert_eq!(
        aclDestroyIntArray(ok as *const aclIntArray),
        ACLNN_ERR_PARAM_INVALID
    );
    assert_eq!(aclDestroyTensor(ok), 0);
    assert_eq!(aclDestroyTensor(tr), 0);
}

#[test]
fn repeatable_executor_runs_twice() {
    let _serial = init();
    let (xp, xt) = tensor_from(&[1.0, -2.0, 3.0, -4.0], &[2, 2]);
    let s = scalar(2.0);
    let mut ws = 0;
    let mut ex = null_mut();
    assert_eq!(
        unsafe { aclnnInplaceMulsGetWorkspaceSize(xt, s, &mut ws, &mut ex) },
        0
    );
    assert_eq!(aclSetAclOpExecutorRepeatable(ex), 0);
    run(ws, ex, aclnnInplaceMuls);
    run(ws, ex, aclnnInplaceMuls);
    assert_eq!(download(xp, 4), vec![4.0, -8.0, 12.0, -16.0]);
    assert_eq!(aclDestroyAclOpExecutor(ex), 0);
    assert_eq!(aclDestroyAclOpExecutor(ex), ACLNN_ERR_PARAM_INVALID);
    // InplaceRelu, then ThresholdBackward against it.
    let mut ex = null_mut();
    assert_eq!(
        unsafe { aclnnInplaceReluGetWorkspaceSize(xt, &mut ws, &mut ex) },
        0
    );
    run(ws, ex, aclnnInplaceRelu);
    assert_eq!(download(xp, 4), vec![4.0, 0.0, 12.0, 0.0]);
    let (_, gt) = tensor_from(&[1.0, 1.0, 1.0, 1.0], &[2, 2]);
    let (op, ot) = tensor_from(&[9.0; 4], &[2, 2]);
    let zero = scalar(0.0);
    assert_eq!(
        unsafe { aclnnThresholdBackwardGetWorkspaceSize(gt, xt, zero, ot, &mut ws, &mut ex) },
        0
    );
    run(ws, ex, aclnnThresholdBackward);
    assert_eq!(download(op, 4), vec![1.0, 0.0, 1.0, 0.0]);
}

#[test]
fn argument_tensors_outlive_their_executor() {
    let _serial = init();
    // A repeatable executor keeps the caller's aclTensor until aclDestroyAclOpExecutor
    // (contract Part D): destroying it first is reported, by the next launch and by the
    // executor's destruction.
    let (_, xt) = tensor_from(&[1.0, 2.0], &[2]);
    let s = scalar(2.0);
    let (mut ws, mut ex) = (0, null_mut());
    assert_eq!(
        unsafe { aclnnInplaceMulsGetWorkspaceSize(xt, s, &mut ws, &mut ex) },
        0
    );
    assert_eq!(aclSetAclOpExecutorRepeatable(ex), 0);
    // aclScalar and arrays are copied: destroying them after phase 1 is fine.
    assert_eq!(aclDestroyScalar(s), 0);
    run(ws, ex, aclnnInplaceMuls);
    assert_eq!(aclDestroyTensor(xt), 0);
    assert_eq!(
        aclnnInplaceMuls(null_mut(), ws, ex, null_mut()),
        ACLNN_ERR_PARAM_INVALID
    );
    assert!(err().contains("use after free: selfRef"), "{}", err());
    assert_eq!(aclDestroyAclOpExecutor(ex), ACLNN_ERR_PARAM_INVALID);
    assert!(err().contains("use after free: selfRef"), "{}", err());
    assert_eq!(
        aclDestroyAclOpExecutor(ex),
        ACLNN_ERR_PARAM_INVALID,
        "destroyed all the same"
    );
    assert!(err().contains("not a live aclOpExecutor"), "{}", err());
    // A tensor list is an argument object too.
    let (pp, p) = tensor_from(&[1.0], &[1]);
    let (_, g) = tensor_from(&[1.0], &[1]);
    let lists: Vec<*mut aclTensorList> = [p, g]
        .iter()
        .map(|t| unsafe { aclCreateTensorList(&(*t as *const aclTensor), 1) })
        .collect();
    assert_eq!(
        unsafe {
            aclnnFusedSgdGetWorkspaceSize(
                lists[0],
                lists[1],
                null_mut(),
                null_mut(),
                0.0,
                0.0,
                0.5,
                0.0,
                false,
                false,
                false,
                &mut ws,
                &mut ex,
            )
        },
        0,
        "{}",
        err()
    );
    assert_eq!(aclDestroyTensorList(lists[1]), 0);
    assert_eq!(
        aclnnFusedSgd(null_mut(), ws, ex, null_mut()),
        ACLNN_ERR_PARAM_INVALID
    );
    assert!(err().contains("use after free: gradsRef"), "{}", err());
    assert_eq!(download(pp, 1), vec![1.0], "nothing ran");
}

#[test]
fn broadcasting_arithmetic_and_reductions() {
    let _serial = init();
    let (_, a) = tensor_from(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let (_, b) = tensor_from(&[10.0, 20.0, 30.0], &[3]);
    let (yp, y) = tensor_from(&[0.0; 6], &[2, 3]);
    let alpha = scalar(0.5);
    let (mut ws, mut ex) = (0, null_mut());
    assert_eq!(
        unsafe { aclnnAddGetWorkspaceSize(a, b, alpha, y, &mut ws, &mut ex) },
        0,
        "{}",
        err()
    );
    run(ws, ex, aclnnAdd);
    assert_eq!(download(yp, 6), vec![6.0, 12.0, 18.0, 9.0, 15.0, 21.0]);
    assert_eq!(
        unsafe { aclnnMulGetWorkspaceSize(a, b, y, &mut ws, &mut ex) },
        0
    );
    run(ws, ex, aclnnMul);
    assert_eq!(download(yp, 6), vec![10.0, 40.0, 90.0, 40.0, 100.0, 180.0]);
    // In place: other must broadcast to selfRef.
    assert_eq!(
        unsafe { aclnnInplaceAddGetWorkspaceSize(b, a, alpha, &mut ws, &mut ex) },
        ACLNN_ERR_PARAM_INVALID
    );
    assert!(err().contains("does not broadcast to selfRef"), "{}", err());
    assert_eq!(
        unsafe { aclnnInplaceMulGetWorkspaceSize(y, b, &mut ws, &mut ex) },
        0
    );
    run(ws, ex, aclnnInplaceMul);
    assert_eq!(download(yp, 3), vec![100.0, 800.0, 2700.0]);
    // ReduceSum over dim 1 with a non-zero workspace; Mean over dim 0.
    let (sp, s) = tensor_from(&[0.0; 2], &[2, 1]);
    let d1 = ints(&[1]);
    assert_eq!(
        unsafe {
            aclnnReduceSumGetWorkspaceSize(a, d1, true, aclDataType::ACL_FLOAT, s, &mut ws, &mut ex)
        },
        0,
        "{}",
        err()
    );
    assert!(ws > 0);
    run(ws, ex, aclnnReduceSum);
    assert_eq!(download(sp, 2), vec![6.0, 15.0]);
    let (mp, m) = tensor_from(&[0.0; 3], &[3]);
    let d0 = ints(&[-2]);
    assert_eq!(
        unsafe {
            aclnnMeanGetWorkspaceSize(a, d0, false, aclDataType::ACL_FLOAT, m, &mut ws, &mut ex)
        },
        0,
        "{}",
        err()
    );
    run(ws, ex, aclnnMean);
    assert_eq!(download(mp, 3), vec![2.5, 3.5, 4.5]);
    let bad = ints(&[2]);
    assert_eq!(
        unsafe {
            aclnnMeanGetWorkspaceSize(a, bad, false, aclDataType::ACL_FLOAT, m, &mut ws, &mut ex)
        },
        ACLNN_ERR_PARAM_INVALID
    );
    assert!(err().contains("out of range"), "{}", err());
}

#[test]
fn matmul_with_a_transposed_view() {
    let _serial = init();
    // mat2 stored as [3, 2] row-major, viewed as its transpose [2, 3].
    let a = [1.0, 2.0, 3.0, 4.0];
    let (_, at) = tensor_from(&a, &[2, 2]);
    let bp = upload(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    let dims = [2i64, 3];
    let bt = unsafe {
        aclCreateTensor(
            dims.as_ptr(),
            2,
            aclDataType::ACL_FLOAT,
            [1i64, 2].as_ptr(),
            0,
            aclFormat::ACL_FORMAT_ND,
            [3i64, 2].as_ptr(),
            2,
            bp,
        )
    };
    assert!(!bt.is_null(), "{}", err());
    let (yp, yt) = tensor_from(&[0.0; 6], &[2, 3]);
    let (mut ws, mut ex) = (0, null_mut());
    assert_eq!(
        unsafe { aclnnMmGetWorkspaceSize(at, bt, yt, 1, &mut ws, &mut ex) },
        0,
        "{}",
        err()
    );
    run(ws, ex, aclnnMm);
    // [[1,2],[3,4]] @ [[1,2,3],[4,5,6]]
    assert_eq!(download(yp, 6), vec![9.0, 12.0, 15.0, 19.0, 26.0, 33.0]);
    let (_, bias) = tensor_from(&[1.0, 2.0, 3.0], &[3]);
    let (beta, alpha) = (scalar(1.0), scalar(2.0));
    assert_eq!(
        unsafe { aclnnAddmmGetWorkspaceSize(bias, at, bt, beta, alpha, yt, 0, &mut ws, &mut ex) },
        0,
        "{}",
        err()
    );
    run(ws, ex, aclnnAddmm);
    assert_eq!(download(yp, 6), vec![19.0, 26.0, 33.0, 39.0, 54.0, 69.0]);
    // A2 takes cubeMathType 0..=4 for Mm (4: USE_FP32_ADD), not 5.
    assert_eq!(
        unsafe { aclnnMmGetWorkspaceSize(at, bt, yt, 5, &mut ws, &mut ex) },
        ACLNN_ERR_PARAM_INVALID,
        "cubeMathType 5"
    );
    assert!(
        err().contains("cubeMathType 5 is not one this operator takes (0, 1, 2, 3, 4)"),
        "{}",
        err()
    );
    assert_eq!(
        unsafe { aclnnMmGetWorkspaceSize(at, bt, yt, 4, &mut ws, &mut ex) },
        0,
        "{}",
        err()
    );
    run(ws, ex, aclnnMm);
}

#[test]
fn casts_copies_and_fills() {
    let _serial = init();
    let (_, x) = tensor_from(&[1.0, 1.0 / 3.0, 65520.0, -2.5], &[4]);
    let hp = malloc(64);
    let h = tensor_of(hp, &[4], aclDataType::ACL_FLOAT16);
    let (mut ws, mut ex) = (0, null_mut());
    assert_eq!(
        unsafe { aclnnCastGetWorkspaceSize(x, aclDataType::ACL_FLOAT16, h, &mut ws, &mut ex) },
        0,
        "{}",
        err()
    );
    run(ws, ex, aclnnCast);
    let (yp, y) = tensor_from(&[0.0; 4], &[4]);
    assert_eq!(
        unsafe { aclnnInplaceCopyGetWorkspaceSize(y, h, &mut ws, &mut ex) },
        0
    );
    run(ws, ex, aclnnInplaceCopy);
    // 1/3 rounds to the nearest half; 65520 overflows to inf (round to nearest even).
    assert_eq!(download(yp, 4), vec![1.0, 0.33325195, f32::INFINITY, -2.5]);
    // Broadcast copy of a [1] into [4], then zero.
    let (_, one) = tensor_from(&[7.0], &[1]);
    assert_eq!(
        unsafe { aclnnInplaceCopyGetWorkspaceSize(y, one, &mut ws, &mut ex) },
        0
    );
    run(ws, ex, aclnnInplaceCopy);
    assert_eq!(download(yp, 4), vec![7.0; 4]);
    assert_eq!(
        unsafe { aclnnInplaceZeroGetWorkspaceSize(y, &mut ws, &mut ex) },
        0
    );
    run(ws, ex, aclnnInplaceZero);
    assert_eq!(download(yp, 4), vec![0.0; 4]);
}

#[test]
fn batch_norm_training_updates_running_stats() {
    let _serial = init();
    // [N=2, C=1, 2] : values 1, 3, 5, 7 -> mean 4, biased var 5, unbiased 20/3.
    let (_, x) = tensor_from(&[1.0, 3.0, 5.0, 7.0], &[2, 1, 2]);
    let (_, w) = tensor_from(&[1.0], &[1]);
    let (_, b) = tensor_from(&[0.0], &[1]);
    let (rmp, rm) = tensor_from(&[0.0], &[1]);
    let (rvp, rv) = tensor_from(&[1.0], &[1]);
    let (yp, y) = tensor_from(&[0.0; 4], &[2, 1, 2]);
    let (smp, sm) = tensor_from(&[0.0], &[1]);
    let (_, si) = tensor_from(&[0.0], &[1]);
    let (mut ws, mut ex) = (0, null_mut());
    let rc = unsafe {
        aclnnBatchNormGetWorkspaceSize(x, w, b, rm, rv, true, 0.1, 0.0, y, sm, si, &mut ws, &mut ex)
    };
    assert_eq!(rc, 0, "{}", err());
    run(ws, ex, aclnnBatchNorm);
    let s = 5f32.sqrt();
    close(
        &download(yp, 4),
        &[-3.0 / s, -1.0 / s, 1.0 / s, 3.0 / s],
        1e-5,
    );
    close(&download(rmp, 1), &[0.4], 1e-6);
    close(&download(rvp, 1), &[0.9 + 0.1 * 20.0 / 3.0], 1e-5);
    close(&download(smp, 1), &[4.0], 1e-6);
    // Backward: workspace must be non-zero.
    let (_, g) = tensor_from(&[1.0, 0.0, 0.0, 0.0], &[2, 1, 2]);
    let (_, gi) = tensor_from(&[0.0; 4], &[2, 1, 2]);
    let (gwp, gw) = tensor_from(&[0.0], &[1]);
    let (gbp, gb) = tensor_from(&[0.0], &[1]);
    let mask = bools(&[true, true, true]);
    let rc = unsafe {
        aclnnBatchNormBackwardGetWorkspaceSize(
            g, x, w, rm, rv, sm, si, true, 1e-5, mask, gi, gw, gb, &mut ws, &mut ex,
        )
    };
    assert_eq!(rc, 0, "{}", err());
    assert!(ws > 0);
    run(ws, ex, aclnnBatchNormBackward);
    close(&download(gbp, 1), &[1.0], 1e-6);
    close(&download(gwp, 1), &[-3.0 / s], 1e-4);
}

#[test]
fn max_pool_mask_and_indices_agree() {
    let _serial = init();
    let x: Vec<f32> = [
        3.0, 1.0, 2.0, 8.0, 5.0, 9.0, 4.0, 7.0, 6.0, 0.0, 11.0, 10.0, 13.0, 12.0, 15.0, 14.0,
    ]
    .to_vec();
    let (_, xt) = tensor_from(&x, &[1, 1, 4, 4]);
    let (k, s, p, d) = (ints(&[2, 2]), ints(&[2, 2]), ints(&[0, 0]), ints(&[1, 1]));
    let (yp, yt) = tensor_from(&[0.0; 4], &[1, 1, 2, 2]);
    // INT32 indices: what the A2 backward takes (the forward takes INT64 too).
    let ip = malloc(32);
    let it = tensor_of(ip, &[1, 1, 2, 2], aclDataType::ACL_INT32);
    let it64 = tensor_of(ip, &[1, 1, 2, 2], aclDataType::ACL_INT64);
    let (mut ws, mut ex) = (0, null_mut());
    let rc = unsafe {
        aclnnMaxPool2dWithIndicesGetWorkspaceSize(xt, k, s, p, d, false, yt, it, &mut ws, &mut ex)
    };
    assert_eq!(rc, 0, "{}", err());
    run(ws, ex, aclnnMaxPool2dWithIndices);
    assert_eq!(download(yp, 4), vec![9.0, 8.0, 13.0, 15.0]);
    // Mask: [1, 1, 4, (ceil(4/16) + 1) * 32 = 64] INT8.
    let mp = malloc(256);
    let mt = tensor_of(mp, &[1, 1, 4, 64], aclDataType::ACL_INT8);
    let (y2p, y2t) = tensor_from(&[0.0; 4], &[1, 1, 2, 2]);
    let rc = unsafe {
        aclnnMaxPool2dWithMaskGetWorkspaceSize(xt, k, s, p, d, false, y2t, mt, &mut ws, &mut ex)
    };
    assert_eq!(rc, 0, "{}", err());
    run(ws, ex, aclnnMaxPool2dWithMask);
    assert_eq!(download(y2p, 4), vec![9.0, 8.0, 13.0, 15.0]);
    let bad_mask = tensor_of(mp, &[1, 1, 4, 32], aclDataType::ACL_INT8);
    let rc = unsafe {
        aclnnMaxPool2dWithMaskGetWorkspaceSize(
            xt, k, s, p, d, false, y2t, bad_mask, &mut ws, &mut ex,
        )
    };
    assert_eq!(rc, ACLNN_ERR_PARAM_INVALID);
    assert!(err().contains("(ceil(Hout*Wout/16) + 1) * 32"), "{}", err());
    // Both backwards route the gradient to the same input positions.
    let (_, g) = tensor_from(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    let (g1p, g1) = tensor_from(&[0.0; 16], &[1, 1, 4, 4]);
    let (g2p, g2) = tensor_from(&[0.0; 16], &[1, 1, 4, 4]);
    let rc = unsafe {
        aclnnMaxPool2dWithIndicesBackwardGetWorkspaceSize(
            g, xt, it64, k, s, p, d, false, g1, &mut ws, &mut ex,
        )
    };
    assert_eq!(rc, ACLNN_ERR_PARAM_INVALID, "INT64 indices on A2");
    assert!(
        err().contains("indices is INT64; this product accepts INT32"),
        "{}",
        err()
    );
    let rc = unsafe {
        aclnnMaxPool2dWithIndicesBackwardGetWorkspaceSize(
            g, xt, it, k, s, p, d, false, g1, &mut ws, &mut ex,
        )
    };
    assert_eq!(rc, 0, "{}", err());
    run(ws, ex, aclnnMaxPool2dWithIndicesBackward);
    let rc = unsafe {
        aclnnMaxPool2dWithMaskBackwardGetWorkspaceSize(
            g, xt, mt, k, s, p, d, false, g2, &mut ws, &mut ex,
        )
    };
    assert_eq!(rc, 0, "{}", err());
    run(ws, ex, aclnnMaxPool2dWithMaskBackward);
    let a = download(g1p, 16);
    assert_eq!(a, download(g2p, 16));
    assert_eq!(a[5], 1.0);
    assert_eq!(a[3], 2.0);
    assert_eq!(a[12], 3.0);
    assert_eq!(a[14], 4.0);
    assert_eq!(a.iter().sum::<f32>(), 10.0);
}

#[test]
fn adaptive_pool_sigmoid_and_loss() {
    let _serial = init();
    let (_, x) = tensor_from(&[1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 8.0], &[1, 2, 2, 2]);
    let (yp, y) = tensor_from(&[0.0; 2], &[1, 2, 1, 1]);
    let os = ints(&[1, 1]);
    let (mut ws, mut ex) = (0, null_mut());
    assert_eq!(
        unsafe { aclnnAdaptiveAvgPool2dGetWorkspaceSize(x, os, y, &mut ws, &mut ex) },
        0,
        "{}",
        err()
    );
    run(ws, ex, aclnnAdaptiveAvgPool2d);
    assert_eq!(download(yp, 2), vec![2.5, 2.0]);
    let (gp, g) = tensor_from(&[0.0; 8], &[1, 2, 2, 2]);
    let (_, go) = tensor_from(&[4.0, 8.0], &[1, 2, 1, 1]);
    assert_eq!(
        unsafe { aclnnAdaptiveAvgPool2dBackwardGetWorkspaceSize(go, x, g, &mut ws, &mut ex) },
        0,
        "{}",
        err()
    );
    run(ws, ex, aclnnAdaptiveAvgPool2dBackward);
    assert_eq!(
        download(gp, 8),
        vec![1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    );
    // Sigmoid and its backward.
    let (sp, s) = tensor_from(&[0.0; 2], &[1, 2, 1, 1]);
    let (_, z) = tensor_from(&[0.0, 0.0], &[1, 2, 1, 1]);
    assert_eq!(
        unsafe { aclnnSigmoidGetWorkspaceSize(z, s, &mut ws, &mut ex) },
        0
    );
    run(ws, ex, aclnnSigmoid);
    assert_eq!(download(sp, 2), vec![0.5, 0.5]);
    let (sbp, sb) = tensor_from(&[0.0; 2], &[1, 2, 1, 1]);
    assert_eq!(
        unsafe { aclnnSigmoidBackwardGetWorkspaceSize(go, s, sb, &mut ws, &mut ex) },
        0
    );
    run(ws, ex, aclnnSigmoidBackward);
    assert_eq!(download(sbp, 2), vec![1.0, 2.0]);
    // Softmax cross entropy: uniform logits over 2 classes.
    let (_, f) = tensor_from(&[0.0, 0.0], &[1, 2]);
    let (_, l) = tensor_from(&[1.0, 0.0], &[1, 2]);
    let (lp, lo) = tensor_from(&[0.0], &[1]);
    let (bp, bpt) = tensor_from(&[0.0; 2], &[1, 2]);
    assert_eq!(
        unsafe {
            aclnnSoftmaxCrossEntropyWithLogitsGetWorkspaceSize(f, l, lo, bpt, &mut ws, &mut ex)
        },
        0,
        "{}",
        err()
    );
    run(ws, ex, aclnnSoftmaxCrossEntropyWithLogits);
    close(&download(lp, 1), &[std::f32::consts::LN_2], 1e-6);
    close(&download(bp, 2), &[-0.5, 0.5], 1e-6);
}

#[test]
fn launch_after_freeing_a_tensor_fails() {
    let _serial = init();
    let (xp, xt) = tensor_from(&[1.0], &[1]);
    let (mut ws, mut ex) = (0, null_mut());
    assert_eq!(
        unsafe { aclnnInplaceZeroGetWorkspaceSize(xt, &mut ws, &mut ex) },
        0
    );
    assert_eq!(aclrtFree(xp), 0);
    assert_eq!(
        aclnnInplaceZero(null_mut(), ws, ex, null_mut()),
        ACLNN_ERR_PARAM_INVALID
    );
    assert!(err().contains("freed after phase 1"), "{}", err());
    // The refused launch consumed the executor.
    assert_eq!(aclDestroyAclOpExecutor(ex), ACLNN_ERR_PARAM_INVALID);
}

#[test]
fn empty_tensors_need_no_memory() {
    let _serial = init();
    let dims = [0i64, 3];
    let t = unsafe {
        aclCreateTensor(
            dims.as_ptr(),
            2,
            aclDataType::ACL_FLOAT,
            [3i64, 1].as_ptr(),
            0,
            aclFormat::ACL_FORMAT_ND,
            dims.as_ptr(),
            2,
            null_mut(),
        )
    };
    assert!(!t.is_null(), "{}", err());
    let (mut ws, mut ex) = (0, null_mut());
    assert_eq!(
        unsafe { aclnnInplaceReluGetWorkspaceSize(t, &mut ws, &mut ex) },
        0
    );
    run(ws, ex, aclnnInplaceRelu);
    assert_eq!(aclDestroyTensor(t), 0);
}
