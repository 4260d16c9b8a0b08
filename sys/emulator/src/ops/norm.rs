//! `aclnnBatchNorm` and `aclnnBatchNormBackward` (momentum convention
//! `running = (1 - momentum) * running + momentum * batch`, unbiased running variance: the vendor
//! implementation's, contract Part B aclnnBatchNorm).
//!
//! `saveInvstd` is what the contract says the product puts there: the biased batch variance on
//! 910/310P/A2/A3 (`aclnnBatchNorm.md:226-229,233-234`), `1/sqrt(var + eps)` on 950; the backward
//! reads it back the same way (the vendor implementation feeds it to BNTrainingUpdateGrad as the
//! variance, Part F 1). A caller that passes the forward's `saveInvstd` through unchanged gets
//! the right gradient on every product; one that interprets it does not.
//!
//! The activations (input, output, gradients of the input) share one float dtype; the forward's
//! per-channel tensors are FLOAT or the activations' dtype; the backward's must have gradOut's
//! dtype on 910/A2/A3 (`aclnnBatchNormBackward.md:271-274,278-280`).
use std::sync::Arc;

use senet_cann_sys::*;

use super::{bad, begin, expect_shape, finish, float_dtype, launch_fn, nn, refr, workspace_for, T};
use crate::api::Res;
use crate::contract::{self, rules, Arg, Role, Target};
use crate::objects::{self, TensorDesc};
use crate::reference::norm as rn;
use crate::view;

/// Checks the activation rank (2..=5) and returns the channel count.
fn channels(x: &TensorDesc) -> Res<i64> {
    if !(2..=5).contains(&x.dims.len()) {
        return Err(bad(format!(
            "input {:?} must have 2 to 5 dims ([N, C, ...])",
            x.dims
        )));
    }
    Ok(x.dims[1])
}

/// Checks an optional per-channel tensor: shape `[c]`, dtype FLOAT or `act`.
fn per_channel(what: &str, t: &Option<T>, c: i64, act: aclDataType) -> Res<()> {
    if let Some(t) = t {
        expect_shape(what, t, &[c], "one value per channel")?;
        if t.dtype != aclDataType::ACL_FLOAT && t.dtype != act {
            return Err(bad(format!(
                "{what} is {}; per-channel tensors must be FLOAT or the input's {}",
                view::dtype_name(t.dtype),
                view::dtype_name(act)
            )));
        }
    }
    Ok(())
}

/// Whether `saveInvstd` holds the biased variance on the target (every product but 950).
fn saves_variance(t: &Target) -> bool {
    rules::BN_SAVE_VAR.applies(t.product) || rules::BN_SAVE_VAR_910.applies(t.product)
}

fn read_opt(t: &Option<T>) -> Option<Vec<f32>> {
    t.as_ref().map(|t| view::read_f32(t))
}

/// Phase 1 of batch normalisation over dim 1 of a `[N, C, ...]` input. Training needs non-null
/// `saveMean`/`saveInvstd` (`[C]`) and updates `runningMean`/`runningVar` in place when given;
/// inference needs the running statistics. Workspace 0.
#[no_mangle]
pub unsafe extern "C" fn aclnnBatchNormGetWorkspaceSize(
    input: *const aclTensor,
    weight: *const aclTensor,
    bias: *const aclTensor,
    runningMean: *mut aclTensor,
    runningVar: *mut aclTensor,
    training: bool,
    momentum: f64,
    eps: f64,
    output: *mut aclTensor,
    saveMean: *mut aclTensor,
    saveInvstd: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnBatchNormGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let x = objects::tensor(input, "input")?;
        let y = objects::tensor(output, "output")?;
        let w = objects::opt_tensor(weight, "weight")?;
        let b = objects::opt_tensor(bias, "bias")?;
        let rm = objects::opt_tensor(runningMean, "runningMean")?;
        let rv = objects::opt_tensor(runningVar, "runningVar")?;
        let (sm, si) = if training {
            (
                Some(objects::tensor(saveMean, "saveMean")?),
                Some(objects::tensor(saveInvstd, "saveInvstd")?),
            )
        } else {
            (
                objects::opt_tensor(saveMean, "saveMean")?,
                objects::opt_tensor(saveInvstd, "saveInvstd")?,
            )
        };
        let plan = contract::check(
            "aclnnBatchNorm",
            &[
                Arg::input("input", &x),
                Arg::opt("weight", w.as_deref(), Role::In),
                Arg::opt("bias", b.as_deref(), Role::In),
                Arg::opt("runningMean", rm.as_deref(), Role::InOut),
                Arg::opt("runningVar", rv.as_deref(), Role::InOut),
                Arg::output("output", &y),
                Arg::opt("saveMean", sm.as_deref(), Role::Out),
                Arg::opt("saveInvstd", si.as_deref(), Role::Out),
            ],
            &[],
            None,
        )?;
        let save_var = saves_variance(&plan.target);
        let c = channels(&x)?;
        let act = float_dtype("aclnnBatchNorm", &[("input", &x), ("output", &y)])?;
        expect_shape("output", &y, &x.dims, "the input's shape")?;
        for (what, t) in [
            ("weight", &w),
            ("bias", &b),
            ("runningMean", &rm),
            ("runningVar", &rv),
            ("saveMean", &sm),
            ("saveInvstd", &si),
        ] {
            per_channel(what, t, c, act)?;
        }
        if rm.is_some() != rv.is_some() {
            return Err(bad("runningMean and runningVar must be given together"));
        }
        if !training && rm.is_none() {
            return Err(bad(
                "inference (training = false) needs runningMean and runningVar",
            ));
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(bad(format!("eps {eps} must be finite and >= 0")));
        }
        if !momentum.is_finite() {
            return Err(bad(format!("momentum {momentum} must be finite")));
        }
        let shape = x.shape();
        let mut tensors: Vec<T> = vec![x.clone(), y.clone()];
        tensors.extend([&w, &b, &rm, &rv, &sm, &si].into_iter().flatten().cloned());
        let run = Arc::new(move || {
            let xv = view::read_f32(&x);
            let (wv, bv) = (read_opt(&w), read_opt(&b));
            let (mut rmv, mut rvv) = (read_opt(&rm), read_opt(&rv));
            let (out, mean, invstd) = refr(rn::batch_norm(
                &xv,
                &shape,
                wv.as_deref(),
                bv.as_deref(),
                rmv.as_deref_mut(),
                rvv.as_deref_mut(),
                training,
                momentum,
                eps,
            ))?;
            view::write_f32(&y, &out)?;
            if training {
                for (t, v) in [(&rm, &rmv), (&rv, &rvv)] {
                    if let (Some(t), Some(v)) = (t, v) {
                        view::write_f32(t, v)?;
                    }
                }
                let saved = if save_var {
                    let (_, var) = refr(rn::batch_stats(&xv, &shape))?;
                    var.iter().map(|v| *v as f32).collect()
                } else {
                    invstd
                };
                for (t, v) in [(&sm, &mean), (&si, &saved)] {
                    if let Some(t) = t {
                        view::write_f32(t, v)?;
                    }
                }
            }
            Ok(())
        });
        finish(workspaceSize, executor, "aclnnBatchNorm", 0, tensors, run)
    })
}
launch_fn!(aclnnBatchNorm);

/// Phase 1 of the batch-normalisation backward: gradients of input, weight and bias as
/// `outputMask` selects. Training uses `saveMean`/`saveInvstd` (required), inference the
/// running statistics (required). Workspace: the largest gradient's bytes rounded up to 512.
#[no_mangle]
pub unsafe extern "C" fn aclnnBatchNormBackwardGetWorkspaceSize(
    gradOut: *const aclTensor,
    input: *const aclTensor,
    weight: *const aclTensor,
    runningMean: *const aclTensor,
    runningVar: *const aclTensor,
    saveMean: *const aclTensor,
    saveInvstd: *const aclTensor,
    training: bool,
    eps: f64,
    outputMask: *const aclBoolArray,
    gradInput: *mut aclTensor,
    gradWeight: *mut aclTensor,
    gradBias: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnBatchNormBackwardGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let go = objects::tensor(gradOut, "gradOut")?;
        let x = objects::tensor(input, "input")?;
        let w = objects::opt_tensor(weight, "weight")?;
        let rm = objects::opt_tensor(runningMean, "runningMean")?;
        let rv = objects::opt_tensor(runningVar, "runningVar")?;
        let sm = objects::opt_tensor(saveMean, "saveMean")?;
        let si = objects::opt_tensor(saveInvstd, "saveInvstd")?;
        let mask = objects::bool_array(outputMask, "outputMask")?;
        let mask: [bool; 3] = mask.as_slice().try_into().map_err(|_| {
            bad(format!(
                "outputMask has {} entries; 3 are required",
                mask.len()
            ))
        })?;
        let out = |p: *mut aclTensor, on: bool, what: &str| -> Res<Option<T>> {
            if on {
                objects::tensor(p, what).map(Some)
            } else {
                objects::opt_tensor(p, what).map(|_| None)
            }
        };
        let gi = out(gradInput, mask[0], "gradInput")?;
        let gw = out(gradWeight, mask[1], "gradWeight")?;
        let gb = out(gradBias, mask[2], "gradBias")?;
        let plan = contract::check(
            "aclnnBatchNormBackward",
            &[
                Arg::input("gradOut", &go),
                Arg::input("input", &x),
                Arg::opt("weight", w.as_deref(), Role::In),
                Arg::opt("runningMean", rm.as_deref(), Role::In),
                Arg::opt("runningVar", rv.as_deref(), Role::In),
                Arg::opt("saveMean", sm.as_deref(), Role::In),
                Arg::opt("saveInvstd", si.as_deref(), Role::In),
                Arg::opt("gradInput", gi.as_deref(), Role::Out),
                Arg::opt("gradWeight", gw.as_deref(), Role::Out),
                Arg::opt("gradBias", gb.as_deref(), Role::Out),
            ],
            &[],
            None,
        )?;
        let t = &plan.target;
        let save_var = saves_variance(t);
        let c = channels(&x)?;
        expect_shape("gradOut", &go, &x.dims, "the input's shape")?;
        let mut acts = vec![("gradOut", &*go), ("input", &*x)];
        if let Some(t) = &gi {
            expect_shape("gradInput", t, &x.dims, "the input's shape")?;
            acts.push(("gradInput", t));
        }
        let act = float_dtype("aclnnBatchNormBackward", &acts)?;
        for (what, a) in [
            ("weight", &w),
            ("runningMean", &rm),
            ("runningVar", &rv),
            ("saveMean", &sm),
            ("saveInvstd", &si),
            ("gradWeight", &gw),
            ("gradBias", &gb),
        ] {
            per_channel(what, a, c, act)?;
            if let Some(a) = a {
                let same = a.dtype == go.dtype;
                let msg = || {
                    format!(
                        "{what} is {} but gradOut is {}",
                        view::dtype_name(a.dtype),
                        view::dtype_name(go.dtype)
                    )
                };
                rules::BN_BWD_AUX_DTYPE.require(t, same, msg)?;
                rules::BN_BWD_AUX_DTYPE_910.require(t, same, msg)?;
            }
        }
        if training && (sm.is_none() || si.is_none()) {
            return Err(bad("training backward needs saveMean and saveInvstd"));
        }
        if !training && (rm.is_none() || rv.is_none()) {
            return Err(bad("inference backward needs runningMean and runningVar"));
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(bad(format!("eps {eps} must be finite and >= 0")));
        }
        let largest = [&gi, &gw, &gb]
            .into_iter()
            .flatten()
            .map(|t| t.view_bytes())
            .max()
            .unwrap_or(0);
        let shape = x.shape();
        let mut tensors: Vec<T> = vec![go.clone(), x.clone()];
        tensors.extend(
            [&w, &rm, &rv, &sm, &si, &gi, &gw, &gb]
                .into_iter()
                .flatten()
                .cloned(),
        );
        let run = Arc::new(move || {
            let gov = view::read_f32(&go);
            let xv = view::read_f32(&x);
            let (wv, rmv, rvv) = (read_opt(&w), read_opt(&rm), read_opt(&rv));
            let smv = read_opt(&sm);
            // What the forward saved: the variance on 910/A2/A3, consumed with eps as the
            // vendor implementation does.
            let siv = read_opt(&si).map(|v| {
                if save_var {
                    v.iter()
                        .map(|var| (1.0 / (f64::from(*var) + eps).sqrt()) as f32)
                        .collect()
                } else {
                    v
                }
            });
            let (dx, dw, db) = refr(rn::batch_norm_backward(
                &gov,
                &xv,
                &shape,
                wv.as_deref(),
                rmv.as_deref(),
                rvv.as_deref(),
                smv.as_deref(),
                siv.as_deref(),
                training,
                eps,
                mask,
            ))?;
            for (t, v) in [(&gi, dx), (&gw, dw), (&gb, db)] {
                if let (Some(t), Some(v)) = (t, v) {
                    view::write_f32(t, &v)?;
                }
            }
            Ok(())
        });
        finish(
            workspaceSize,
            executor,
            "aclnnBatchNormBackward",
            workspace_for(largest),
            tensors,
            run,
        )
    })
}
launch_fn!(aclnnBatchNormBackward);
