//! [`AscendBuffer`], the backend's `Buffer`, and the helpers the op files use to describe
//! buffers as aclnn tensors, cast them, and take temporaries from the cache.
//!
//! At the [`Backend`](crate::backend::Backend) boundary every buffer is "room for `len` f32"
//! (`alloc(len)`); inside, a buffer holds either f32 or, in the O2 mode, fp16 data, and carries a
//! [`DType`] tag that every op writing it maintains. [`download`](crate::backend::Backend::download)
//! converts to f32 whatever the tag.
use senet_cann_sys::aclTensor;

use super::device::Ctx;
use super::memory::Block;
use super::op::aclnn;
use super::tensor::{DType, TensorDesc};
use crate::{Error, Result};

/// A device buffer of the Ascend backend: room for `len` f32 values (so also for `len` fp16),
/// holding data of type [`AscendBuffer::dtype`]. Dropping it returns its memory to the
/// backend's cache.
pub struct AscendBuffer {
    pub(super) block: Block,
    pub(super) len: usize,
    pub(super) dtype: DType,
}

impl std::fmt::Debug for AscendBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AscendBuffer")
            .field("len", &self.len)
            .field("dtype", &self.dtype)
            .field("bytes", &self.block.bytes())
            .finish()
    }
}

impl AscendBuffer {
    /// Capacity in values (what `alloc` was asked for).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the capacity is zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The type of the data the buffer currently holds (f32, or fp16 in the O2 mode).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device address (64-byte aligned).
    pub fn device_ptr(&self) -> *mut std::ffi::c_void {
        self.block.ptr()
    }
}

/// `Error::Shape` unless `buf` has room for `need` values (the CPU backend's message).
pub fn check(what: &str, buf: &AscendBuffer, need: usize) -> Result<()> {
    if buf.len < need {
        return Err(Error::Shape(format!(
            "{what}: buffer of {} values, {need} needed",
            buf.len
        )));
    }
    Ok(())
}

/// Elements of a shape.
pub fn numel(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// A tensor argument, and the temporary it lives in when it had to be cast (kept alive until
/// the op has been launched; the cache recycles it in stream order afterwards).
pub struct Arg {
    /// The aclnn tensor.
    pub t: *mut aclTensor,
    /// The temporary holding the cast data, if any.
    pub tmp: Option<Block>,
}

/// A device temporary of `dims` elements of `dtype`, with a contiguous tensor over it.
pub fn temp(ctx: &mut Ctx, dims: &[usize], dtype: DType) -> Result<Arg> {
    let block = ctx.alloc(numel(dims) * dtype.size())?;
    let t = ctx.tensor(&TensorDesc::contiguous(block.ptr(), dtype, dims))?;
    Ok(Arg {
        t,
        tmp: Some(block),
    })
}

/// `Error::Invalid` unless `buf` was allocated by the device `ctx` works on.
fn same_device(ctx: &Ctx, buf: &AscendBuffer) -> Result<()> {
    if std::sync::Arc::ptr_eq(buf.block.device(), ctx.dev) {
        Ok(())
    } else {
        Err(Error::Invalid(
            "an Ascend buffer was used with another backend than the one that allocated it".into(),
        ))
    }
}

/// A contiguous tensor of `dims` over the start of `buf`, as the data it holds.
pub fn view(ctx: &mut Ctx, buf: &AscendBuffer, dims: &[usize]) -> Result<*mut aclTensor> {
    same_device(ctx, buf)?;
    ctx.tensor(&TensorDesc::contiguous(buf.block.ptr(), buf.dtype, dims))
}

/// A contiguous tensor of `dims` over the start of `buf` that an op will write as `dtype`; the
/// caller sets `buf.dtype = dtype` once the op is queued.
pub fn out_view(
    ctx: &mut Ctx,
    buf: &AscendBuffer,
    dims: &[usize],
    dtype: DType,
) -> Result<*mut aclTensor> {
    same_device(ctx, buf)?;
    ctx.tensor(&TensorDesc::contiguous(buf.block.ptr(), dtype, dims))
}

/// `out = cast(src)` (`aclnnCast`, cann.md §2.3).
pub fn cast_into(
    ctx: &mut Ctx,
    src: *mut aclTensor,
    dtype: DType,
    out: *mut aclTensor,
) -> Result<()> {
    aclnn!(
        ctx,
        aclnnCast,
        aclnnCastGetWorkspaceSize,
        src,
        dtype.acl(),
        out
    )
}

/// `buf` viewed as `dims` of type `want`: the buffer itself when it already holds `want`,
/// else a temporary filled by `aclnnCast`.
pub fn read_as(ctx: &mut Ctx, buf: &AscendBuffer, dims: &[usize], want: DType) -> Result<Arg> {
    let t = view(ctx, buf, dims)?;
    if buf.dtype == want {
        return Ok(Arg { t, tmp: None });
    }
    let out = temp(ctx, dims, want)?;
    cast_into(ctx, t, want, out.t)?;
    Ok(out)
}
