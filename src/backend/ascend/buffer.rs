//! [`AscendBuffer`], the backend's `Buffer`, the Backend's buffer entry points (`alloc`, `upload`,
//! `download`, `write`), and the helpers the op files use to describe buffers as aclnn tensors,
//! cast them, and take temporaries from the cache.
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
use super::AscendBackend;
use crate::backend::{check_len, BufferLen};
use crate::{Error, Result};

/// A device buffer of the Ascend backend: room for `len` f32 values (so also for `len` fp16),
/// holding data of type [`AscendBuffer::dtype`]. Dropping it returns its memory to the
/// backend's cache.
pub struct AscendBuffer {
    /// Its memory; reached through [`AscendBuffer::block`], which forgets the fp16 copy.
    mem: Block,
    pub(super) len: usize,
    pub(super) dtype: DType,
    /// An fp16 copy of f32 contents ([`read_as`]), so that a weight cast for the forward also
    /// serves the backward's data gradient: the block (allocated at the first cast, kept while
    /// the buffer lives) and how many leading values it holds (0: none), reset by every other
    /// access to the memory.
    half: std::sync::Mutex<Option<Block>>,
    half_valid: std::sync::atomic::AtomicUsize,
    /// The device's fp16-copy epoch when the copy was made: a failed capture bumps the
    /// device's, since its recorded casts never ran.
    half_epoch: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for AscendBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AscendBuffer")
            .field("len", &self.len)
            .field("dtype", &self.dtype)
            .field("bytes", &self.mem.bytes())
            .finish()
    }
}

impl BufferLen for AscendBuffer {
    fn buffer_len(&self) -> usize {
        self.len
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
        self.block().ptr()
    }

    /// A new buffer over `mem` holding `dtype`.
    fn new(mem: Block, len: usize, dtype: DType) -> AscendBuffer {
        AscendBuffer {
            mem,
            len,
            dtype,
            half: std::sync::Mutex::new(None),
            half_valid: std::sync::atomic::AtomicUsize::new(0),
            half_epoch: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The device address for a read only (the fp16 copy stays valid): the loss reading its
    /// targets from the tail of the input buffer, whose head the backward reads as fp16.
    pub(super) fn read_ptr(&self) -> *mut std::ffi::c_void {
        self.mem.ptr()
    }

    /// The memory, for any use but [`read_as`]'s cached fp16 read: whoever takes it may write
    /// it, so the fp16 copy is forgotten.
    pub(super) fn block(&self) -> &Block {
        self.half_valid
            .store(0, std::sync::atomic::Ordering::Release);
        &self.mem
    }
}

// ---- the Backend's buffer entry points

/// [`Backend::alloc`](crate::backend::Backend::alloc): a block from the cache, zeroed, tagged f32.
pub(super) fn alloc(be: &AscendBackend, len: usize) -> Result<AscendBuffer> {
    let mut ctx = be.dev.enter()?;
    let block = ctx.alloc(len * 4)?;
    ctx.zero(&block, len * 4)?;
    Ok(AscendBuffer::new(block, len, DType::F32))
}

/// [`Backend::upload`](crate::backend::Backend::upload): a new block holding `host` (f32).
pub(super) fn upload(be: &AscendBackend, host: &[f32]) -> Result<AscendBuffer> {
    let mut ctx = be.dev.enter()?;
    let block = ctx.alloc(host.len() * 4)?;
    ctx.upload_bytes(&block, f32_bytes(host))?;
    Ok(AscendBuffer::new(block, host.len(), DType::F32))
}

/// [`Backend::download`](crate::backend::Backend::download): the first `out.len()` values, converted
/// to f32 from the dtype the buffer holds.
pub(super) fn download(be: &AscendBackend, buf: &AscendBuffer, out: &mut [f32]) -> Result<()> {
    check_len("download", buf, out.len())?;
    let mut ctx = be.dev.enter()?;
    match buf.dtype {
        DType::F32 => ctx.download_bytes(buf.block(), f32_bytes_mut(out)),
        DType::F16 => {
            let mut half = vec![half::f16::ZERO; out.len()];
            let bytes = half.len() * 2;
            // SAFETY: f16 is two plain bytes; the slice covers exactly the vector.
            let raw =
                unsafe { std::slice::from_raw_parts_mut(half.as_mut_ptr() as *mut u8, bytes) };
            ctx.download_bytes(buf.block(), raw)?;
            for (o, h) in out.iter_mut().zip(&half) {
                *o = h.to_f32();
            }
            Ok(())
        }
        other => Err(Error::Invalid(format!(
            "download: buffer holds {other:?} data"
        ))),
    }
}

/// [`Backend::write`](crate::backend::Backend::write): `host` into the start of `buf`, which then
/// holds f32, in stream order without waiting ([`super::device::Ctx::upload_async`]).
pub(super) fn write(be: &AscendBackend, buf: &mut AscendBuffer, host: &[f32]) -> Result<()> {
    check_len("write", buf, host.len())?;
    let mut ctx = be.dev.enter()?;
    ctx.upload_async(buf.block(), f32_bytes(host))?;
    buf.dtype = DType::F32;
    Ok(())
}

pub fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

pub fn f32_bytes_mut(v: &mut [f32]) -> &mut [u8] {
    // SAFETY: as above; every byte pattern written back is a valid f32.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(v)) }
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
    /// The device address of the data the tensor describes (the buffer's, its fp16 copy's, or
    /// the temporary's), for further views of the same data.
    pub ptr: *mut std::ffi::c_void,
}

/// A device temporary of `dims` elements of `dtype`, with a contiguous tensor over it.
pub fn temp(ctx: &mut Ctx, dims: &[usize], dtype: DType) -> Result<Arg> {
    let block = ctx.alloc(numel(dims) * dtype.size())?;
    let t = ctx.tensor(&TensorDesc::contiguous(block.ptr(), dtype, dims))?;
    Ok(Arg {
        ptr: block.ptr(),
        t,
        tmp: Some(block),
    })
}

/// `Error::Invalid` unless `buf` was allocated by the device `ctx` works on.
pub fn same_device(ctx: &Ctx, buf: &AscendBuffer) -> Result<()> {
    if std::sync::Arc::ptr_eq(buf.mem.device(), ctx.dev) {
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
    ctx.tensor(&TensorDesc::contiguous(buf.block().ptr(), buf.dtype, dims))
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
    ctx.tensor(&TensorDesc::contiguous(buf.block().ptr(), dtype, dims))
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
    if want == DType::F16 && buf.dtype == DType::F32 {
        return read_f16(ctx, buf, dims);
    }
    let t = view(ctx, buf, dims)?;
    if buf.dtype == want {
        return Ok(Arg {
            t,
            tmp: None,
            ptr: buf.mem.ptr(),
        });
    }
    let out = temp(ctx, dims, want)?;
    cast_into(ctx, t, want, out.t)?;
    Ok(out)
}

/// `buf` (holding f32) viewed as `dims` of fp16: its fp16 copy when that holds the values (no
/// write to the buffer since the cast), else cast into the copy first. The tensor has no
/// temporary: the copy lives as long as the buffer.
fn read_f16(ctx: &mut Ctx, buf: &AscendBuffer, dims: &[usize]) -> Result<Arg> {
    use std::sync::atomic::Ordering;
    let n = numel(dims);
    let mut half = buf
        .half
        .lock()
        .map_err(|_| Error::Invalid("an Ascend buffer's fp16 copy lock was poisoned".into()))?;
    if half.is_none() {
        *half = Some(ctx.alloc(buf.len * DType::F16.size())?);
    }
    let copy = half.as_ref().map_or(std::ptr::null_mut(), |b| b.ptr());
    let out = ctx.tensor(&TensorDesc::contiguous(copy, DType::F16, dims))?;
    let epoch = ctx.dev.half_epoch();
    if buf.half_valid.load(Ordering::Acquire) < n || buf.half_epoch.load(Ordering::Acquire) != epoch
    {
        let src = view(ctx, buf, dims)?;
        cast_into(ctx, src, DType::F16, out)?;
        buf.half_valid.store(n, Ordering::Release);
        buf.half_epoch.store(epoch, Ordering::Release);
    }
    Ok(Arg {
        t: out,
        tmp: None,
        ptr: copy,
    })
}
