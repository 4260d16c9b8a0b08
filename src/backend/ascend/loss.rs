//! Softmax cross entropy with label smoothing (MindCV `CrossEntropySmooth`) with
//! `aclnnSoftmaxCrossEntropyWithLogits` on smoothed one-hot targets built on the host and
//! uploaded asynchronously (cann.md §2.3: per-row loss `-Σ t log softmax(z)` and backprop `softmax(z) - t`).
use senet_cann_sys::aclTensor;

use super::buffer::{cast_into, f32_bytes, f32_bytes_mut, out_view, read_as, view, AscendBuffer};
use super::device::Ctx;
use super::op::aclnn;
use super::tensor::{DType, ScalarValue, TensorDesc};
use super::AscendBackend;
use crate::backend::{check_len, CrossEntropyParams};
use crate::{Error, Result};

/// [`Backend::softmax_cross_entropy`](crate::backend::Backend::softmax_cross_entropy): the
/// targets `t = (1-eps)*onehot + eps/C` (f64 on the host, rounded to f32) are uploaded in
/// stream order; the
/// op writes the per-row loss and `softmax - t` into `dlogits`, which `aclnnInplaceMuls`
/// scales by `scale/n`; the per-row losses are downloaded and averaged in f64. Logits are
/// cast to fp32 first (O2 computes the loss in fp32); `dlogits` is fp32. With `logits_out`,
/// the fp32 logits are written (cast, or copied when already fp32) into the block the per-row
/// losses land in, so one synchronise and one blocking copy bring both to the host.
pub(super) fn softmax_cross_entropy(
    be: &AscendBackend,
    p: CrossEntropyParams,
    logits: &AscendBuffer,
    labels: &[usize],
    dlogits: &mut AscendBuffer,
    logits_out: Option<&mut [f32]>,
) -> Result<f64> {
    p.check(labels, logits, dlogits)?;
    let (n, classes) = (p.n, p.classes);
    let targets = p.smoothed_targets(labels);
    let mut ctx = be.dev.enter()?;
    // Queued before the op, which reads the targets in stream order.
    let t_block = ctx.alloc(n * classes * 4)?;
    ctx.upload_async(&t_block, f32_bytes(&targets))?;
    let t = ctx.tensor(&TensorDesc::contiguous(
        t_block.ptr(),
        DType::F32,
        &[n, classes],
    ))?;
    // The read-back block: the per-row losses, then the fp32 logits (n x classes) at the next
    // 32-byte boundary (aclCreateTensor wants 32-byte aligned data).
    let (logits_at, len) = p.on_device_layout();
    let back = ctx.alloc(len * 4)?;
    let want = logits_out.is_some();
    head(
        &mut ctx,
        p,
        logits,
        t,
        back.ptr(),
        want.then_some(logits_at),
        dlogits,
    )?;
    // One synchronise and one copy: the losses, and the logits when asked for.
    let mut host = vec![0f32; if want { len } else { n }];
    ctx.download_bytes(&back, f32_bytes_mut(&mut host))?;
    if let Some(z) = logits_out {
        z.copy_from_slice(&host[logits_at..]);
    }
    Ok(host[..n].iter().map(|&v| v as f64).sum::<f64>() / n as f64)
}

/// [`Backend::softmax_cross_entropy_on_device`](crate::backend::Backend::softmax_cross_entropy_on_device):
/// the same ops as [`softmax_cross_entropy`] with logits, the targets read from `targets`
/// (f32 at value offset `at`, a multiple of 8) and the losses and logits left in `out`; no
/// synchronise, no copy, no allocation but the ops' workspaces (so it can be captured).
pub(super) fn softmax_cross_entropy_on_device(
    be: &AscendBackend,
    p: CrossEntropyParams,
    logits: &AscendBuffer,
    targets: (&AscendBuffer, usize),
    dlogits: &mut AscendBuffer,
    out: &mut AscendBuffer,
) -> Result<()> {
    let (n, classes) = (p.n, p.classes);
    p.check(&vec![0; n], logits, dlogits)?;
    let (tbuf, at) = targets;
    check_len(
        "softmax_cross_entropy_on_device targets",
        tbuf,
        at + n * classes,
    )?;
    if !at.is_multiple_of(8) {
        return Err(Error::Shape(format!(
            "targets at value {at}: not on a 32-byte boundary"
        )));
    }
    let (logits_at, len) = p.on_device_layout();
    check_len("softmax_cross_entropy_on_device out", out, len)?;
    let mut ctx = be.dev.enter()?;
    // SAFETY: the offset lies inside the buffer (checked). Read only: the images before the
    // targets keep their fp16 copy for the backward.
    let tptr = unsafe { (tbuf.read_ptr() as *mut f32).add(at) } as *mut std::ffi::c_void;
    let t = ctx.tensor(&TensorDesc::contiguous(tptr, DType::F32, &[n, classes]))?;
    head(
        &mut ctx,
        p,
        logits,
        t,
        out.block().ptr(),
        Some(logits_at),
        dlogits,
    )?;
    out.dtype = DType::F32;
    Ok(())
}

/// The loss ops: the fp32 logits (into `back` at value `logits_at` when given, else a
/// temporary), `aclnnSoftmaxCrossEntropyWithLogits` with targets `t` writing the per-row
/// losses at the start of `back` and `softmax - t` into `dlogits`, then `dlogits *= scale/n`.
fn head(
    ctx: &mut Ctx,
    p: CrossEntropyParams,
    logits: &AscendBuffer,
    t: *mut aclTensor,
    back: *mut std::ffi::c_void,
    logits_at: Option<usize>,
    dlogits: &mut AscendBuffer,
) -> Result<()> {
    let (n, classes) = (p.n, p.classes);
    let f32 = DType::F32;
    let loss = ctx.tensor(&TensorDesc::contiguous(back, f32, &[n]))?;
    let za = match logits_at {
        Some(at) => {
            // SAFETY: the caller's block holds at + n * classes values.
            let at = unsafe { (back as *mut f32).add(at) } as *mut std::ffi::c_void;
            let z32 = ctx.tensor(&TensorDesc::contiguous(at, f32, &[n, classes]))?;
            let src = view(ctx, logits, &[n, classes])?;
            if logits.dtype == f32 {
                aclnn!(
                    ctx,
                    aclnnInplaceCopy,
                    aclnnInplaceCopyGetWorkspaceSize,
                    z32,
                    src
                )?;
            } else {
                cast_into(ctx, src, f32, z32)?;
            }
            z32
        }
        None => read_as(ctx, logits, &[n, classes], f32)?.t,
    };
    let dt = out_view(ctx, dlogits, &[n, classes], f32)?;
    aclnn!(
        ctx,
        aclnnSoftmaxCrossEntropyWithLogits,
        aclnnSoftmaxCrossEntropyWithLogitsGetWorkspaceSize,
        za,
        t,
        loss,
        dt
    )?;
    let g = ctx.scalar(ScalarValue::F32((p.scale as f64 / n as f64) as f32))?;
    aclnn!(
        ctx,
        aclnnInplaceMuls,
        aclnnInplaceMulsGetWorkspaceSize,
        dt,
        g
    )?;
    dlogits.dtype = f32;
    Ok(())
}
