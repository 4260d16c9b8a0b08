//! `aclnnFusedSgd` on an emulated A2: the documented formula (`aclnnFusedSgd.md:29-58`) over
//! lists of parameters, the phase-1 rules, and a zero gradient scale failing the launch.
mod common;

use std::ptr::null_mut;

use common::probes::{typed, values};
use common::*;
use senet_cann_emu::reference::optim::{fused_sgd, SgdParams};
use senet_cann_emu::*;
use senet_cann_sys::*;

const F: aclDataType = aclDataType::ACL_FLOAT;
const ND: aclFormat = aclFormat::ACL_FORMAT_ND;

fn list(ts: &[*mut aclTensor]) -> *mut aclTensorList {
    let l = unsafe { aclCreateTensorList(ts.as_ptr() as *const *const aclTensor, ts.len() as u64) };
    assert!(!l.is_null(), "{}", err());
    l
}

struct Call {
    params: *mut aclTensorList,
    grads: *mut aclTensorList,
    bufs: *mut aclTensorList,
    scale: *mut aclTensor,
    p: SgdParams,
}

fn plan(c: &Call) -> (aclnnStatus, u64, *mut aclOpExecutor) {
    let (mut ws, mut ex) = (0, null_mut());
    let rc = unsafe {
        aclnnFusedSgdGetWorkspaceSize(
            c.params,
            c.grads,
            c.bufs,
            c.scale,
            c.p.weight_decay,
            c.p.momentum,
            c.p.lr,
            c.p.dampening,
            c.p.nesterov,
            c.p.maximize,
            c.p.first_step,
            &mut ws,
            &mut ex,
        )
    };
    (rc, ws, ex)
}

const HP: SgdParams = SgdParams {
    weight_decay: 1e-4,
    momentum: 0.9,
    lr: 0.1,
    dampening: 0.0,
    nesterov: true,
    maximize: false,
    first_step: false,
};

#[test]
fn two_parameters_in_one_launch_match_the_formula() {
    let _serial = init_env(&[("SENET_EMU_SOC", "Ascend910B3")]);
    // Two parameters of different shapes, FLOAT16 (computed in FLOAT, rounded on the way out),
    // Nesterov with weight decay and a loss scale of 1024, as an O2 step would use it.
    let dt = aclDataType::ACL_FLOAT16;
    let (p0, g0, b0) = (
        vec![0.5f32, -1.0, 2.0, 0.25],
        vec![512.0f32, -256.0, 64.0, 8.0],
        vec![0.125f32, 0.0, -0.5, 1.0],
    );
    let (p1, g1, b1) = (vec![3.0f32], vec![-1024.0f32], vec![0.75f32]);
    let tp = [typed(&p0, &[2, 2], dt, ND), typed(&p1, &[1], dt, ND)];
    let tg = [typed(&g0, &[2, 2], dt, ND), typed(&g1, &[1], dt, ND)];
    let tb = [typed(&b0, &[2, 2], dt, ND), typed(&b1, &[1], dt, ND)];
    let scale = typed(&[1024.0], &[1], F, ND);
    let call = Call {
        params: list(&tp),
        grads: list(&tg),
        bufs: list(&tb),
        scale,
        p: HP,
    };
    let (rc, ws, ex) = plan(&call);
    assert_eq!(rc, 0, "{}", err());
    run(ws, ex, aclnnFusedSgd);
    for (i, (mut p, mut g, mut b)) in [(p0, g0, b0), (p1, g1, b1)].into_iter().enumerate() {
        fused_sgd(&mut p, &mut g, Some(&mut b), Some(1024.0), HP).unwrap();
        for v in [&mut p, &mut g, &mut b] {
            senet_cann_emu::reference::cast::round_through_f16(v);
        }
        assert_eq!(values(tp[i]), p, "param {i}");
        assert_eq!(values(tg[i]), g, "grad {i}: the unscaled gradient");
        assert_eq!(values(tb[i]), b, "buffer {i}");
    }
    // The first element by hand: g = 512/1024 = 0.5, + 1e-4*0.5 = 0.50005;
    // v = 0.9*0.125 + 0.50005 = 0.61255; nesterov: 0.50005 + 0.9*0.61255 = 1.0513;
    // p = 0.5 - 0.10513 = 0.39487 (fp16: 0.3948).
    close(&values(tp[0])[..1], &[0.39487], 2e-4);
}

#[test]
fn first_step_maximize_and_no_buffers() {
    let _serial = init_env(&[("SENET_EMU_SOC", "Ascend910B3")]);
    let p = typed(&[1.0, 2.0], &[2], F, ND);
    let g = typed(&[0.5, -0.5], &[2], F, ND);
    let b = typed(&[100.0, 100.0], &[2], F, ND);
    let hp = SgdParams {
        nesterov: false,
        maximize: true,
        first_step: true,
        dampening: 0.5,
        weight_decay: 0.0,
        ..HP
    };
    let call = Call {
        params: list(&[p]),
        grads: list(&[g]),
        bufs: list(&[b]),
        scale: null_mut(),
        p: hp,
    };
    let (rc, ws, ex) = plan(&call);
    assert_eq!(rc, 0, "{}", err());
    run(ws, ex, aclnnFusedSgd);
    // First step: the buffer becomes the (negated) gradient, dampening does not apply.
    assert_eq!(values(b), vec![-0.5, 0.5]);
    assert_eq!(values(p), vec![1.05, 1.95]);
    assert_eq!(
        values(g),
        vec![0.5, -0.5],
        "no scale: the gradient is left alone"
    );
    // Plain SGD: no buffers, momentum 0.
    let call = Call {
        bufs: null_mut(),
        p: SgdParams {
            momentum: 0.0,
            nesterov: false,
            ..HP
        },
        ..call
    };
    let (rc, ws, ex) = plan(&call);
    assert_eq!(rc, 0, "{}", err());
    run(ws, ex, aclnnFusedSgd);
    close(
        &values(p),
        &[1.05 - 0.1 * (0.5 + 1.05e-4), 1.95 - 0.1 * (-0.5 + 1.95e-4)],
        1e-6,
    );
}

#[test]
fn phase_one_rules() {
    let _serial = init_env(&[("SENET_EMU_SOC", "Ascend910B3")]);
    let t = |v: &[f32]| typed(v, &[v.len() as i64], F, ND);
    let (p, g, b) = (t(&[1.0, 2.0]), t(&[1.0, 1.0]), t(&[0.0, 0.0]));
    let base = Call {
        params: list(&[p]),
        grads: list(&[g]),
        bufs: list(&[b]),
        scale: null_mut(),
        p: HP,
    };
    let refused = |c: &Call, code: aclnnStatus, needle: &str| {
        let (rc, _, ex) = plan(c);
        assert_eq!(rc, code, "{needle}: {}", err());
        assert!(ex.is_null());
        assert!(err().contains(needle), "{}", err());
    };
    refused(
        &Call {
            params: null_mut(),
            ..base
        },
        ACLNN_ERR_PARAM_NULLPTR,
        "paramsRef is null",
    );
    refused(
        &Call {
            p: SgdParams { lr: -0.1, ..HP },
            ..base
        },
        ACLNN_ERR_PARAM_INVALID,
        "lr -0.1 must be >= 0",
    );
    refused(
        &Call {
            p: SgdParams {
                dampening: 0.1,
                ..HP
            },
            ..base
        },
        ACLNN_ERR_PARAM_INVALID,
        "nesterov needs momentum > 0 and dampening 0",
    );
    refused(
        &Call {
            bufs: null_mut(),
            ..base
        },
        ACLNN_ERR_PARAM_INVALID,
        "momentum must be > 0 exactly when momentumBufferListOptionalRef is given",
    );
    refused(
        &Call {
            grads: list(&[g, g]),
            ..base
        },
        ACLNN_ERR_PARAM_INVALID,
        "they must match",
    );
    refused(
        &Call {
            grads: list(&[t(&[1.0])]),
            ..base
        },
        ACLNN_ERR_PARAM_INVALID,
        "gradsRef[0] is [1]",
    );
    let g16 = typed(&[1.0, 1.0], &[2], aclDataType::ACL_FLOAT16, ND);
    refused(
        &Call {
            grads: list(&[g16]),
            ..base
        },
        ACLNN_ERR_PARAM_INVALID,
        "share one dtype",
    );
    let i32s = tensor_fmt(malloc(8), &[2], aclDataType::ACL_INT32, ND);
    refused(
        &Call {
            params: list(&[i32s]),
            grads: list(&[i32s]),
            bufs: list(&[i32s]),
            ..base
        },
        ACLNN_ERR_PARAM_INVALID,
        "paramsRef is INT32",
    );
    refused(
        &Call {
            scale: t(&[1.0, 1.0]),
            ..base
        },
        ACLNN_ERR_PARAM_INVALID,
        "its shape must be [1]",
    );
    refused(
        &Call {
            params: list(&[]),
            grads: list(&[]),
            bufs: null_mut(),
            scale: null_mut(),
            p: SgdParams {
                momentum: 0.0,
                nesterov: false,
                ..HP
            },
        },
        ACLNN_ERR_PARAM_INVALID,
        "empty list",
    );
    // A zero scale is a device value: the launch fails when the stream runs it.
    let call = Call {
        scale: t(&[0.0]),
        ..base
    };
    let (rc, ws, ex) = plan(&call);
    assert_eq!(rc, 0, "{}", err());
    assert_eq!(aclnnFusedSgd(null_mut(), ws, ex, null_mut()), 0);
    assert_eq!(
        aclrtSynchronizeStream(null_mut()),
        ACL_ERROR_RT_INTERNAL_ERROR
    );
    assert!(err().contains("gradScaleOptional is 0"), "{}", err());
}
