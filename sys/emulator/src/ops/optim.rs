//! `aclnnFusedSgd`: SGD with momentum, weight decay, dampening, Nesterov, maximize and an
//! optional gradient scale over lists of parameters in one launch (A2/A3 and 950 only, per the
//! contract: not the first-generation 910). Semantics and arithmetic in
//! [`crate::reference::optim`].
//!
//! Phase-1 rules: the documented ones (`aclnnFusedSgd.md:333-339`: supported dtypes, one dtype
//! for every list, rank <= 8, equal shapes per index, no null entries, lr/momentum/weightDecay/
//! dampening >= 0, gradScale of shape [1]; paramsRef and gradsRef entries not empty) and the
//! vendor implementation's (`hicann/ops-nn@e5c3fa9327ea:optim/fused_sgd/op_api/aclnn_fused_sgd.cpp`
//! CheckAttr/CheckTensorListCount: a non-empty paramsRef, gradsRef and the momentum list as long
//! as paramsRef, momentum > 0 exactly when momentum buffers are given, Nesterov only with
//! momentum > 0 and dampening 0; an empty momentum list or an empty gradScale count as absent).
//! A gradScale of 0 (a device value) fails the launch when the stream runs it.
use std::sync::Arc;

use senet_cann_sys::*;

use super::{bad, begin, finish, launch_fn, list, nn, T};
use crate::api::Res;
use crate::contract::{self, Arg, Role};
use crate::objects;
use crate::reference::optim::{self as ro, SgdParams};
use crate::view;

/// Checks the attributes (documented non-negativity and the implementation's momentum rules).
fn check_attrs(p: &SgdParams, buffers: bool) -> Res<()> {
    for (name, v) in [
        ("weightDecay", p.weight_decay),
        ("momentum", p.momentum),
        ("lr", p.lr),
        ("dampening", p.dampening),
    ] {
        if v.is_nan() || v < 0.0 {
            return Err(bad(format!(
                "{name} {v} must be >= 0 (aclnnFusedSgd.md:338)"
            )));
        }
    }
    if p.nesterov && (p.momentum <= 0.0 || p.dampening != 0.0) {
        return Err(bad(format!(
            "nesterov needs momentum > 0 and dampening 0, got momentum {} and dampening {} (aclnn_fused_sgd.cpp CheckAttr)",
            p.momentum, p.dampening
        )));
    }
    if buffers != (p.momentum > 0.0) {
        return Err(bad(format!(
            "momentum {} {} momentum buffers: momentum must be > 0 exactly when momentumBufferListOptionalRef is given (aclnn_fused_sgd.cpp CheckAttr)",
            p.momentum,
            if buffers { "with" } else { "without" }
        )));
    }
    Ok(())
}

/// Checks the lists against each other: lengths, dtypes, ranks, shapes, empty entries.
fn check_lists(params: &[T], grads: &[T], bufs: Option<&[T]>) -> Res<()> {
    if params.is_empty() {
        return Err(bad("paramsRef is an empty list"));
    }
    if grads.len() != params.len() || bufs.is_some_and(|b| b.len() != params.len()) {
        return Err(bad(format!(
            "paramsRef has {} tensors, gradsRef {}, momentumBufferListOptionalRef {:?}; they must match",
            params.len(),
            grads.len(),
            bufs.map(<[T]>::len)
        )));
    }
    let dt = params[0].dtype;
    for (i, p) in params.iter().enumerate() {
        let others = std::iter::once(("gradsRef", &grads[i]))
            .chain(bufs.map(|b| ("momentumBufferListOptionalRef", &b[i])));
        if p.dims.len() > 8 {
            return Err(bad(format!(
                "paramsRef[{i}] {:?} has more than 8 dims",
                p.dims
            )));
        }
        if p.numel() == 0 || grads[i].numel() == 0 {
            return Err(bad(format!(
                "paramsRef[{i}] / gradsRef[{i}] is empty; these lists take no empty tensors (aclnnFusedSgd.md:120)"
            )));
        }
        for (name, t) in std::iter::once(("paramsRef", p)).chain(others) {
            if t.dtype != dt {
                return Err(bad(format!(
                    "{name}[{i}] is {} but paramsRef[0] is {}; every tensor must share one dtype",
                    view::dtype_name(t.dtype),
                    view::dtype_name(dt)
                )));
            }
            if t.dims != p.dims {
                return Err(bad(format!(
                    "{name}[{i}] is {:?} but paramsRef[{i}] is {:?}",
                    t.dims, p.dims
                )));
            }
        }
    }
    Ok(())
}

/// Phase 1 of the fused SGD step over `paramsRef`, `gradsRef` and (optionally)
/// `momentumBufferListOptionalRef`, all updated in place; see the module docs for the rules.
/// Workspace 0.
#[no_mangle]
pub unsafe extern "C" fn aclnnFusedSgdGetWorkspaceSize(
    paramsRef: *const aclTensorList,
    gradsRef: *const aclTensorList,
    momentumBufferListOptionalRef: *const aclTensorList,
    gradScaleOptional: *const aclTensor,
    weightDecay: f32,
    momentum: f32,
    lr: f32,
    dampening: f32,
    nesterov: bool,
    maximize: bool,
    isFirstStep: bool,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnFusedSgdGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let params = list(paramsRef, "paramsRef")?;
        let grads = list(gradsRef, "gradsRef")?;
        let bufs = if momentumBufferListOptionalRef.is_null() {
            None
        } else {
            Some(objects::tensor_list(
                momentumBufferListOptionalRef,
                "momentumBufferListOptionalRef",
            )?)
        }
        .filter(|b| !b.is_empty());
        let scale =
            objects::opt_tensor(gradScaleOptional, "gradScaleOptional")?.filter(|s| s.numel() > 0);
        let mut args: Vec<Arg> = Vec::new();
        for (name, l) in [
            ("paramsRef", Some(&params)),
            ("gradsRef", Some(&grads)),
            ("momentumBufferListOptionalRef", bufs.as_ref()),
        ] {
            for t in l.into_iter().flatten() {
                args.push(Arg::opt(name, Some(t), Role::InOut));
            }
        }
        args.push(Arg::opt("gradScaleOptional", scale.as_deref(), Role::In));
        contract::check("aclnnFusedSgd", &args, &[], None)?;
        let p = SgdParams {
            weight_decay: weightDecay,
            momentum,
            lr,
            dampening,
            nesterov,
            maximize,
            first_step: isFirstStep,
        };
        check_attrs(&p, bufs.is_some())?;
        check_lists(&params, &grads, bufs.as_deref())?;
        if let Some(s) = &scale {
            if s.dims != [1] {
                return Err(bad(format!(
                    "gradScaleOptional is {:?}; its shape must be [1] (aclnnFusedSgd.md:153)",
                    s.dims
                )));
            }
        }
        let mut tensors: Vec<T> = params.iter().chain(&grads).cloned().collect();
        tensors.extend(bufs.iter().flatten().cloned());
        tensors.extend(scale.clone());
        let run = Arc::new(move || {
            let s = match &scale {
                Some(t) => {
                    let v = view::read_f32(t)[0];
                    if v == 0.0 {
                        return Err("gradScaleOptional is 0 (aclnnFusedSgd.md:339)".to_string());
                    }
                    Some(v)
                }
                None => None,
            };
            for (i, pt) in params.iter().enumerate() {
                let mut pv = view::read_f32(pt);
                let mut gv = view::read_f32(&grads[i]);
                let mut bv = bufs.as_ref().map(|b| view::read_f32(&b[i]));
                ro::fused_sgd(&mut pv, &mut gv, bv.as_deref_mut(), s, p)?;
                view::write_f32(pt, &pv)?;
                if s.is_some() {
                    view::write_f32(&grads[i], &gv)?;
                }
                if let (Some(b), Some(bv)) = (&bufs, &bv) {
                    view::write_f32(&b[i], bv)?;
                }
            }
            Ok(())
        });
        finish(workspaceSize, executor, "aclnnFusedSgd", 0, tensors, run)
    })
}
launch_fn!(aclnnFusedSgd);
