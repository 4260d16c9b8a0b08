//! `aclnnSoftmaxCrossEntropyWithLogits`: per-row loss `[N]` and
//! `backprop = softmax(features) - labels` `[N, C]` (not divided by N).
use std::sync::Arc;

use senet_cann_sys::*;

use super::{begin, expect_rank, expect_shape, finish, float_dtype, launch_fn, nn, refr, T};
use crate::contract::{self, Arg};
use crate::objects;
use crate::reference::loss as rl;
use crate::view;

/// Phase 1: features and labels `[N, C]` of one dtype, loss `[N]`, backprop `[N, C]`.
#[no_mangle]
pub unsafe extern "C" fn aclnnSoftmaxCrossEntropyWithLogitsGetWorkspaceSize(
    features: *const aclTensor,
    labels: *mut aclTensor,
    loss: *mut aclTensor,
    backprop: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnSoftmaxCrossEntropyWithLogitsGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let f = objects::tensor(features, "features")?;
        let l = objects::tensor(labels, "labels")?;
        let lo = objects::tensor(loss, "loss")?;
        let bp = objects::tensor(backprop, "backprop")?;
        contract::check(
            "aclnnSoftmaxCrossEntropyWithLogits",
            &[
                Arg::input("features", &f),
                Arg::input("labels", &l),
                Arg::output("loss", &lo),
                Arg::output("backprop", &bp),
            ],
            &[],
            None,
        )?;
        float_dtype(
            "aclnnSoftmaxCrossEntropyWithLogits",
            &[
                ("features", &f),
                ("labels", &l),
                ("loss", &lo),
                ("backprop", &bp),
            ],
        )?;
        expect_rank("features", &f, 2)?;
        expect_shape("labels", &l, &f.dims, "the shape of features")?;
        expect_shape("loss", &lo, &f.dims[..1], "[N] of features [N, C]")?;
        expect_shape("backprop", &bp, &f.dims, "the shape of features")?;
        let shape = [f.dims[0] as usize, f.dims[1] as usize];
        let tensors: Vec<T> = vec![f.clone(), l.clone(), lo.clone(), bp.clone()];
        let run = Arc::new(move || {
            let (lv, bv) = refr(rl::softmax_cross_entropy_with_logits(
                &view::read_f32(&f),
                &view::read_f32(&l),
                shape,
            ))?;
            view::write_f32(&lo, &lv)?;
            view::write_f32(&bp, &bv)
        });
        finish(
            workspaceSize,
            executor,
            "aclnnSoftmaxCrossEntropyWithLogits",
            0,
            tensors,
            run,
        )
    })
}
launch_fn!(aclnnSoftmaxCrossEntropyWithLogits);
