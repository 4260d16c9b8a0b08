//! Softmax cross entropy with label smoothing (MindCV `CrossEntropySmooth`) with
//! `aclnnSoftmaxCrossEntropyWithLogits` on smoothed one-hot targets built on the host and
//! uploaded asynchronously (cann.md §2.3: per-row loss `-Σ t log softmax(z)` and backprop `softmax(z) - t`).
use super::buffer::{cast_into, f32_bytes_mut, out_view, read_as, view, AscendBuffer};
use super::op::aclnn;
use super::tensor::{DType, ScalarValue, TensorDesc};
use super::AscendBackend;
use crate::backend::CrossEntropyParams;
use crate::Result;

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
    let CrossEntropyParams {
        n, classes, scale, ..
    } = p;
    let (on, off) = p.targets();
    let mut targets = vec![off as f32; n * classes];
    for (row, &l) in labels.iter().enumerate() {
        targets[row * classes + l] = on as f32;
    }
    let f32 = DType::F32;
    let mut ctx = be.dev.enter()?;
    // Queued before the op, which reads the targets in stream order.
    let t_block = ctx.alloc(n * classes * 4)?;
    // SAFETY: f32 is plain data; the slice covers the vector exactly.
    let bytes =
        unsafe { std::slice::from_raw_parts(targets.as_ptr() as *const u8, targets.len() * 4) };
    ctx.upload_async(&t_block, bytes)?;
    let t = ctx.tensor(&TensorDesc::contiguous(t_block.ptr(), f32, &[n, classes]))?;
    // The read-back block: the per-row losses, then the fp32 logits (n x classes) at the next
    // 32-byte boundary (aclCreateTensor wants 32-byte aligned data).
    let logits_at = n.div_ceil(8) * 8;
    let back = ctx.alloc((logits_at + n * classes) * 4)?;
    let loss = ctx.tensor(&TensorDesc::contiguous(back.ptr(), f32, &[n]))?;
    let za = if logits_out.is_some() {
        // SAFETY: the offset lies inside the block.
        let at = unsafe { (back.ptr() as *mut u8).add(logits_at * 4) } as *mut std::ffi::c_void;
        let z32 = ctx.tensor(&TensorDesc::contiguous(at, f32, &[n, classes]))?;
        let src = view(&mut ctx, logits, &[n, classes])?;
        if logits.dtype == f32 {
            aclnn!(
                ctx,
                aclnnInplaceCopy,
                aclnnInplaceCopyGetWorkspaceSize,
                z32,
                src
            )?;
        } else {
            cast_into(&mut ctx, src, f32, z32)?;
        }
        z32
    } else {
        read_as(&mut ctx, logits, &[n, classes], f32)?.t
    };
    let dt = out_view(&mut ctx, dlogits, &[n, classes], f32)?;
    aclnn!(
        ctx,
        aclnnSoftmaxCrossEntropyWithLogits,
        aclnnSoftmaxCrossEntropyWithLogitsGetWorkspaceSize,
        za,
        t,
        loss,
        dt
    )?;
    let g = ctx.scalar(ScalarValue::F32((scale as f64 / n as f64) as f32))?;
    aclnn!(
        ctx,
        aclnnInplaceMuls,
        aclnnInplaceMulsGetWorkspaceSize,
        dt,
        g
    )?;
    dlogits.dtype = f32;
    // One synchronise and one copy: the losses, and the logits when asked for.
    let mut host = vec![
        0f32;
        if logits_out.is_some() {
            logits_at + n * classes
        } else {
            n
        }
    ];
    ctx.download_bytes(&back, f32_bytes_mut(&mut host))?;
    if let Some(z) = logits_out {
        z.copy_from_slice(&host[logits_at..]);
    }
    Ok(host[..n].iter().map(|&v| v as f64).sum::<f64>() / n as f64)
}
