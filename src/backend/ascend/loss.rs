//! Softmax cross entropy with label smoothing (MindCV `CrossEntropySmooth`) with
//! `aclnnSoftmaxCrossEntropyWithLogits` on smoothed one-hot targets built on the host
//! (cann.md §2.3: per-row loss `-Σ t log softmax(z)` and backprop `softmax(z) - t`).
use super::buffer::{out_view, read_as, temp, AscendBuffer};
use super::op::aclnn;
use super::tensor::{DType, ScalarValue, TensorDesc};
use super::AscendBackend;
use crate::backend::CrossEntropyParams;
use crate::Result;

/// [`Backend::softmax_cross_entropy`](crate::backend::Backend::softmax_cross_entropy): the
/// targets `t = (1-eps)*onehot + eps/C` (f64 on the host, rounded to f32) are uploaded; the
/// op writes the per-row loss and `softmax - t` into `dlogits`, which `aclnnInplaceMuls`
/// scales by `scale/n`; the per-row losses are downloaded and averaged in f64. Logits are
/// cast to fp32 first (O2 computes the loss in fp32); `dlogits` is fp32.
pub(super) fn softmax_cross_entropy(
    be: &AscendBackend,
    p: CrossEntropyParams,
    logits: &AscendBuffer,
    labels: &[usize],
    dlogits: &mut AscendBuffer,
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
    // The upload synchronises the stream: it comes before any tensor of this op.
    let t_block = ctx.alloc(n * classes * 4)?;
    // SAFETY: f32 is plain data; the slice covers the vector exactly.
    let bytes =
        unsafe { std::slice::from_raw_parts(targets.as_ptr() as *const u8, targets.len() * 4) };
    ctx.upload_bytes(&t_block, bytes)?;
    let t = ctx.tensor(&TensorDesc::contiguous(t_block.ptr(), f32, &[n, classes]))?;
    let za = read_as(&mut ctx, logits, &[n, classes], f32)?;
    let loss = temp(&mut ctx, &[n], f32)?;
    let dt = out_view(&mut ctx, dlogits, &[n, classes], f32)?;
    aclnn!(
        ctx,
        aclnnSoftmaxCrossEntropyWithLogits,
        aclnnSoftmaxCrossEntropyWithLogitsGetWorkspaceSize,
        za.t,
        t,
        loss.t,
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
    let mut rows = vec![0f32; n];
    // SAFETY: as above.
    let out = unsafe { std::slice::from_raw_parts_mut(rows.as_mut_ptr() as *mut u8, n * 4) };
    ctx.download_bytes(loss.tmp.as_ref().expect("temporary"), out)?;
    Ok(rows.iter().map(|&v| v as f64).sum::<f64>() / n as f64)
}
