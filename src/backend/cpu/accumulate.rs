//! Element-wise gradient accumulation on the CPU (`dst += src`): summing the gradients of a
//! tensor used twice (residual branches) or across micro-batches.
use super::{check_len, CpuBackend};
use crate::Result;
use rayon::prelude::*;

/// Values per task: large enough to amortise the task, small enough to split typical layers.
const CHUNK: usize = 1 << 16;

/// [`Backend::add_assign`](crate::backend::Backend::add_assign) on the CPU: `dst[i] += src[i]`
/// for `i < len`. Errors (`Error::Shape`) if a buffer is shorter than `len`.
pub(super) fn add_assign(be: &CpuBackend, dst: &mut [f32], src: &[f32], len: usize) -> Result<()> {
    check_len("add_assign dst", dst, len)?;
    check_len("add_assign src", src, len)?;
    let add = |(d, s): (&mut [f32], &[f32])| {
        for (d, s) in d.iter_mut().zip(s) {
            *d += *s;
        }
    };
    if len <= CHUNK || be.threads == 1 {
        add((&mut dst[..len], &src[..len]));
    } else {
        be.pool.install(|| {
            dst[..len]
                .par_chunks_mut(CHUNK)
                .zip(src[..len].par_chunks(CHUNK))
                .for_each(add);
        });
    }
    Ok(())
}
