//! One device as the backend uses it: context, stream, memory cache and the queue of aclnn
//! argument objects awaiting the next synchronise; and [`Ctx`], the state every backend entry
//! point works in.
//!
//! Threading: the backend is `Send + Sync` and may be called from several threads, but its work
//! is serialised: [`DeviceShared::enter`] locks the device's queue for the whole entry point and
//! makes the context current on the calling thread (ACL contexts are per thread, cann.md
//! §1.3), so device calls never interleave and always run in the right context.
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use senet_cann_sys::{
    aclBoolArray, aclIntArray, aclScalar, aclTensor, aclTensorList, aclrtMemcpyKind, aclrtStream,
    Cann,
};

use super::error::{check_acl, sym};
use super::memory::{raw_free_all, raw_malloc, size_class, Block, Cache};
use super::runtime::{Context, Stream};
use super::tensor::{
    AclBoolArray, AclIntArray, AclObject, AclScalar, AclTensor, AclTensorList, ScalarValue,
    TensorDesc,
};
use crate::backend::DeviceCounters;
use crate::{Error, Result};

const ACL: &str = "libascendcl.so";

/// Argument objects kept alive until the stream is synchronised, and the pinned host buffers
/// that asynchronous uploads copy from.
#[derive(Default)]
pub struct Queue {
    pending: Vec<AclObject>,
    /// Synchronises so far (a staging buffer used before the latest one is free again).
    syncs: u64,
    staging: Vec<Staging>,
    /// The stream is being captured (`graph.rs`): no synchronise may run, and the objects
    /// created meanwhile go to the graph at the end of the capture.
    pub(super) capturing: bool,
}

/// A pinned host buffer (`aclrtMallocHost`) an asynchronous upload copies from, and the
/// synchronise count when its last copy was queued (the copy has run once a later synchronise
/// returned).
struct Staging {
    ptr: *mut c_void,
    bytes: usize,
    queued_at: u64,
}

// SAFETY: the pointer is pinned host memory owned by the queue, used under its lock.
unsafe impl Send for Staging {}

/// Pinned staging buffers kept per device at least: an op-by-op step uploads its images and its
/// loss targets.
const MAX_STAGING: usize = 4;

/// Pinned bytes the staging buffers may hold beyond [`MAX_STAGING`] buffers: a step whose
/// figures stay on the device (`TrainNet::step_staged`) uploads one buffer per step and
/// synchronises only when it logs, so a log interval's uploads are in flight together. An
/// upload that finds every buffer in flight and this budget spent synchronises first.
const MAX_STAGING_BYTES: usize = 256 << 20;

/// Pending objects above which [`DeviceShared::enter`] synchronises first, so the host memory
/// they hold stays bounded between downloads.
pub const MAX_PENDING: usize = 16_384;

/// The device state shared by a backend and every buffer it allocated (a buffer may outlive
/// its backend; the device is released when the last of them is dropped).
pub struct DeviceShared {
    cann: &'static Cann,
    // Field order is drop order: the stream before its context.
    stream: Stream,
    ctx: Context,
    cache: Mutex<Cache>,
    queue: Mutex<Queue>,
    counts: Counts,
    /// Bumped when a capture fails: the fp16 copies marked valid by its recorded (never run)
    /// casts are stale (`buffer.rs`).
    half_epoch: AtomicU64,
}

/// The running [`DeviceCounters`] of one device (relaxed atomics: each is only ever added to).
#[derive(Default)]
pub(super) struct Counts {
    launches: AtomicU64,
    synchronizes: AtomicU64,
    blocking_copies: AtomicU64,
    allocations: AtomicU64,
    h2d_bytes: AtomicU64,
    d2h_bytes: AtomicU64,
    replays: AtomicU64,
}

/// What [`Counts::add`] counts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Count {
    /// An operator launch.
    Launch,
    /// A synchronise.
    Synchronize,
    /// An `aclrtMalloc`.
    Allocation,
    /// A blocking copy of this many bytes host to device.
    BlockingH2d(usize),
    /// A blocking copy of this many bytes device to host.
    BlockingD2h(usize),
    /// An asynchronous copy of this many bytes host to device.
    AsyncH2d(usize),
    /// A graph replay (`aclmdlRIExecuteAsync`).
    Replay,
}

impl Counts {
    pub(super) fn add(&self, c: Count) {
        let bump = |a: &AtomicU64, n: usize| {
            a.fetch_add(n as u64, Ordering::Relaxed);
        };
        match c {
            Count::Launch => bump(&self.launches, 1),
            Count::Synchronize => bump(&self.synchronizes, 1),
            Count::Allocation => bump(&self.allocations, 1),
            Count::BlockingH2d(n) => {
                bump(&self.blocking_copies, 1);
                bump(&self.h2d_bytes, n);
            }
            Count::BlockingD2h(n) => {
                bump(&self.blocking_copies, 1);
                bump(&self.d2h_bytes, n);
            }
            Count::AsyncH2d(n) => bump(&self.h2d_bytes, n),
            Count::Replay => bump(&self.replays, 1),
        }
    }

    fn snapshot(&self) -> DeviceCounters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DeviceCounters {
            launches: get(&self.launches),
            synchronizes: get(&self.synchronizes),
            blocking_copies: get(&self.blocking_copies),
            allocations: get(&self.allocations),
            h2d_bytes: get(&self.h2d_bytes),
            d2h_bytes: get(&self.d2h_bytes),
            replays: get(&self.replays),
        }
    }
}

impl DeviceShared {
    /// Opens `device` with a fresh context and stream. Errors: as [`Context::new`].
    pub fn new(device: i32) -> Result<Arc<DeviceShared>> {
        let ctx = Context::new(device)?;
        let stream = Stream::new(&ctx)?;
        Ok(Arc::new(DeviceShared {
            cann: super::runtime::init()?,
            stream,
            ctx,
            cache: Mutex::new(Cache::default()),
            queue: Mutex::new(Queue::default()),
            counts: Counts::default(),
            half_epoch: AtomicU64::new(0),
        }))
    }

    /// Locks the device for one entry point and makes its context current on this thread.
    pub fn enter(self: &Arc<Self>) -> Result<Ctx<'_>> {
        let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        self.ctx.make_current()?;
        let mut ctx = Ctx {
            dev: self,
            q,
            current: Vec::new(),
        };
        if ctx.q.pending.len() > MAX_PENDING && !ctx.q.capturing {
            ctx.sync()?;
        }
        Ok(ctx)
    }

    /// The device id.
    pub fn device_id(&self) -> i32 {
        self.ctx.device()
    }

    /// The device's context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Returns a block to the cache (called by [`Block`]'s drop, on any thread).
    pub(super) fn release(&self, ptr: *mut c_void, class: usize) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(ptr, class);
    }

    /// The device work issued through this device so far.
    pub fn counters(&self) -> DeviceCounters {
        self.counts.snapshot()
    }

    /// Counts one call into the runtime.
    pub(super) fn count(&self, c: Count) {
        self.counts.add(c);
    }

    /// The fp16-copy epoch (see the field).
    pub(super) fn half_epoch(&self) -> u64 {
        self.half_epoch.load(Ordering::Acquire)
    }

    /// Forgets every fp16 copy (after a failed capture).
    pub(super) fn forget_half_copies(&self) {
        self.half_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The device's cache, locked.
    pub(super) fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (blocks handed out, bytes handed out, bytes cached).
    pub fn memory_stats(&self) -> (usize, usize, usize) {
        let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        (c.used_blocks, c.used_bytes, c.cached_bytes)
    }
}

impl Drop for DeviceShared {
    fn drop(&mut self) {
        // Every block has been returned (each holds an Arc to this state). Finish queued work,
        // destroy the argument objects, free the memory; then the stream and the context drop.
        let _ = self.ctx.make_current();
        let _ = self.stream.synchronize();
        let q = self.queue.get_mut().unwrap_or_else(|e| e.into_inner());
        q.pending.clear();
        if let Ok(free) = self.cann.acl.aclrtFreeHost.as_ref() {
            for s in q.staging.drain(..) {
                // SAFETY: pinned memory from aclrtMallocHost; the stream is idle.
                unsafe { free(s.ptr) };
            }
        }
        let cache = self.cache.get_mut().unwrap_or_else(|e| e.into_inner());
        cache.end_graph();
        let blocks = cache.drain();
        raw_free_all(self.cann, &blocks);
    }
}

/// The state of one backend entry point: the device locked, its context current.
///
/// Argument objects created during the entry point are kept in `current` (a synchronise in
/// the middle of the entry point, e.g. before a host copy or when an allocation fails, must not
/// destroy objects later ops of the same entry point still use); when the entry point ends they
/// join the queue's pending list, destroyed at the next synchronise.
pub struct Ctx<'a> {
    /// The device.
    pub dev: &'a Arc<DeviceShared>,
    q: MutexGuard<'a, Queue>,
    current: Vec<AclObject>,
}

impl Drop for Ctx<'_> {
    fn drop(&mut self) {
        let current = std::mem::take(&mut self.current);
        self.q.pending.extend(current);
    }
}

impl Ctx<'_> {
    /// The CANN libraries.
    pub fn cann(&self) -> &'static Cann {
        self.dev.cann
    }

    /// The device's stream.
    pub fn stream(&self) -> aclrtStream {
        self.dev.stream.raw()
    }

    /// The device's stream as its RAII type.
    pub fn stream_ref(&self) -> &Stream {
        &self.dev.stream
    }

    /// Waits for all queued work, then destroys the argument objects of earlier entry points
    /// (those of the current one may still be needed by its later ops). The objects are
    /// destroyed even when the wait reports an error (the work is over either way). While
    /// the stream is being captured the call is made (CANN refuses it and invalidates the
    /// capture, which is the error returned) but nothing is destroyed: the work did not run.
    pub fn sync(&mut self) -> Result<()> {
        self.dev.count(Count::Synchronize);
        if self.q.capturing {
            return self.dev.stream.synchronize();
        }
        let r = self.dev.stream.synchronize();
        self.q.pending.clear();
        self.q.syncs += 1;
        r
    }

    /// A block of at least `bytes` bytes from the cache, or a new `aclrtMalloc`. When CANN
    /// reports the allocation failing, the stream is synchronised, the cache emptied back to
    /// CANN and the allocation retried once. Errors: [`Error::Device`] naming `aclrtMalloc`.
    pub fn alloc(&mut self, bytes: usize) -> Result<Block> {
        let class = size_class(bytes.max(1));
        let cached = self
            .dev
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(class);
        let ptr = match cached {
            Some(p) => p,
            None => match self.malloc(class) {
                Ok(p) => p,
                Err(first) => {
                    let cached_bytes = self
                        .dev
                        .cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .cached_bytes;
                    if cached_bytes == 0 || self.q.capturing {
                        return Err(first);
                    }
                    self.sync()?;
                    let blocks = self
                        .dev
                        .cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .drain();
                    raw_free_all(self.cann(), &blocks);
                    self.malloc(class)?
                }
            },
        };
        if cached.is_none() {
            self.dev
                .cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .note_new(ptr, class);
        }
        Ok(Block::new(ptr, class, Arc::clone(self.dev)))
    }

    /// Marks the start of a capture: later objects belong to it, synchronises are refused.
    pub(super) fn set_capturing(&mut self, on: bool) {
        self.q.capturing = on;
    }

    /// The argument objects queued since the last synchronise (at the end of a capture: the
    /// capture's, which its graph keeps).
    pub(super) fn take_pending(&mut self) -> Vec<AclObject> {
        std::mem::take(&mut self.q.pending)
    }

    /// Counts one call into the runtime.
    pub(super) fn count(&self, c: Count) {
        self.dev.count(c);
    }

    /// A counted `aclrtMalloc` of `bytes`.
    fn malloc(&self, bytes: usize) -> Result<*mut c_void> {
        self.dev.count(Count::Allocation);
        raw_malloc(self.cann(), bytes)
    }

    /// Zeroes the first `bytes` bytes of `block`, in stream order (`aclrtMemsetAsync`).
    pub fn zero(&mut self, block: &Block, bytes: usize) -> Result<()> {
        self.check_block(block, bytes)?;
        let cann = self.cann();
        let f = sym(&cann.acl.aclrtMemsetAsync, "aclrtMemsetAsync", ACL)?;
        // SAFETY: the range lies inside the block (checked); the block outlives the queued work
        // or is recycled only in stream order (see memory.rs).
        let code = unsafe { f(block.ptr(), block.bytes(), 0, bytes, self.stream()) };
        check_acl(cann, "aclrtMemsetAsync", code)
    }

    /// Copies `host` to the start of `block`: synchronises the stream (queued work may still use
    /// the block's previous contents), then `aclrtMemcpy` host-to-device.
    pub fn upload_bytes(&mut self, block: &Block, host: &[u8]) -> Result<()> {
        self.check_block(block, host.len())?;
        if host.is_empty() {
            return Ok(());
        }
        self.sync()?;
        let cann = self.cann();
        let f = sym(&cann.acl.aclrtMemcpy, "aclrtMemcpy", ACL)?;
        self.dev.count(Count::BlockingH2d(host.len()));
        // SAFETY: host is valid for host.len() bytes and the destination range lies inside the
        // block; the call is synchronous.
        let code = unsafe {
            f(
                block.ptr(),
                block.bytes(),
                host.as_ptr() as *const c_void,
                host.len(),
                aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_DEVICE,
            )
        };
        check_acl(cann, "aclrtMemcpy", code)
    }

    /// Copies `host` to the start of `block` in stream order, without waiting: `host` is copied
    /// into a pinned staging buffer (`aclrtMallocHost`) and `aclrtMemcpyAsync` queued from
    /// there, so work queued before reads the block's old contents and work queued after the
    /// new. The rule that keeps a pinned buffer from being rewritten before its copy ran: a
    /// staging buffer is reused only once a synchronise returned after its copy was queued
    /// (the stream runs in order, so the copy had run); while all are in flight a new one is
    /// added ([`MAX_STAGING`], then up to [`MAX_STAGING_BYTES`]), and past that the stream is
    /// synchronised first.
    pub fn upload_async(&mut self, block: &Block, host: &[u8]) -> Result<()> {
        self.check_block(block, host.len())?;
        if host.is_empty() {
            return Ok(());
        }
        let syncs = self.q.syncs;
        let free = |s: &Staging| s.queued_at < syncs;
        let i = match self
            .q
            .staging
            .iter()
            .position(|s| free(s) && s.bytes >= host.len())
        {
            Some(i) => i,
            None => self.new_staging(host.len())?,
        };
        let cann = self.cann();
        let f = sym(&cann.acl.aclrtMemcpyAsync, "aclrtMemcpyAsync", ACL)?;
        let staging = &mut self.q.staging[i];
        // SAFETY: the staging buffer holds `bytes >= host.len()` bytes and no queued copy reads
        // it (a synchronise passed its last one).
        unsafe { std::ptr::copy_nonoverlapping(host.as_ptr(), staging.ptr as *mut u8, host.len()) };
        staging.queued_at = syncs;
        let src = staging.ptr;
        // SAFETY: the source stays allocated and unchanged until a synchronise passes this
        // copy; the destination range lies inside the block, recycled only in stream order.
        let code = unsafe {
            f(
                block.ptr(),
                block.bytes(),
                src,
                host.len(),
                aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_DEVICE,
                self.stream(),
            )
        };
        check_acl(cann, "aclrtMemcpyAsync", code)?;
        self.dev.count(Count::AsyncH2d(host.len()));
        Ok(())
    }

    /// The index of a free staging buffer of at least `bytes` bytes: a free one too small is
    /// replaced, else a new one is added, else (all in flight) the stream is synchronised and
    /// the first is used (replaced when too small).
    fn new_staging(&mut self, bytes: usize) -> Result<usize> {
        let syncs = self.q.syncs;
        let i = match self.q.staging.iter().position(|s| s.queued_at < syncs) {
            Some(i) => i,
            None if self.q.staging.len() < MAX_STAGING
                || self.q.staging.iter().map(|s| s.bytes).sum::<usize>() + bytes
                    <= MAX_STAGING_BYTES =>
            {
                let ptr = self.malloc_host(bytes)?;
                self.q.staging.push(Staging {
                    ptr,
                    bytes,
                    queued_at: 0,
                });
                return Ok(self.q.staging.len() - 1);
            }
            None => {
                self.sync()?;
                0
            }
        };
        if self.q.staging[i].bytes < bytes {
            let ptr = self.malloc_host(bytes)?;
            let old = std::mem::replace(&mut self.q.staging[i].ptr, ptr);
            self.q.staging[i].bytes = bytes;
            let cann = self.cann();
            let free = sym(&cann.acl.aclrtFreeHost, "aclrtFreeHost", ACL)?;
            // SAFETY: pinned memory from aclrtMallocHost that no queued copy reads any more.
            check_acl(cann, "aclrtFreeHost", unsafe { free(old) })?;
        }
        Ok(i)
    }

    /// `aclrtMallocHost` of `bytes` pinned bytes.
    fn malloc_host(&self, bytes: usize) -> Result<*mut c_void> {
        let cann = self.cann();
        let f = sym(&cann.acl.aclrtMallocHost, "aclrtMallocHost", ACL)?;
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: writes one pointer; bytes > 0.
        check_acl(cann, "aclrtMallocHost", unsafe { f(&mut p, bytes) })?;
        Ok(p)
    }

    /// Copies the first `host.len()` bytes of `block` to `host`, after synchronising the stream
    /// so that every queued write to the block has landed.
    pub fn download_bytes(&mut self, block: &Block, host: &mut [u8]) -> Result<()> {
        self.check_block(block, host.len())?;
        if host.is_empty() {
            return self.sync();
        }
        self.sync()?;
        let cann = self.cann();
        let f = sym(&cann.acl.aclrtMemcpy, "aclrtMemcpy", ACL)?;
        let len = host.len();
        self.dev.count(Count::BlockingD2h(len));
        // SAFETY: host is valid for len bytes; the source range lies inside the block.
        let code = unsafe {
            f(
                host.as_mut_ptr() as *mut c_void,
                len,
                block.ptr(),
                len,
                aclrtMemcpyKind::ACL_MEMCPY_DEVICE_TO_HOST,
            )
        };
        check_acl(cann, "aclrtMemcpy", code)
    }

    fn check_block(&self, block: &Block, bytes: usize) -> Result<()> {
        if !Arc::ptr_eq(block.device(), self.dev) {
            return Err(Error::Invalid(
                "an Ascend buffer was used with another device's backend".into(),
            ));
        }
        if bytes > block.bytes() {
            return Err(Error::Shape(format!(
                "{bytes} bytes do not fit a device block of {}",
                block.bytes()
            )));
        }
        Ok(())
    }

    /// An `aclTensor` for `d`, kept until the next synchronise.
    pub fn tensor(&mut self, d: &TensorDesc) -> Result<*mut aclTensor> {
        let t = AclTensor::new(self.cann(), d)?;
        let raw = t.raw();
        self.current.push(AclObject::Tensor(t));
        Ok(raw)
    }

    /// An `aclTensorList` of new tensors for `descs`, kept (with them) until the next
    /// synchronise.
    pub fn tensor_list(&mut self, descs: &[TensorDesc]) -> Result<*mut aclTensorList> {
        let l = AclTensorList::new(self.cann(), descs)?;
        let raw = l.raw();
        self.current.push(AclObject::TensorList(l));
        Ok(raw)
    }

    /// An `aclIntArray`, kept until the next synchronise.
    pub fn int_array(&mut self, v: &[i64]) -> Result<*mut aclIntArray> {
        let a = AclIntArray::new(self.cann(), v)?;
        let raw = a.raw();
        self.current.push(AclObject::IntArray(a));
        Ok(raw)
    }

    /// An `aclBoolArray`, kept until the next synchronise.
    pub fn bool_array(&mut self, v: &[bool]) -> Result<*mut aclBoolArray> {
        let a = AclBoolArray::new(self.cann(), v)?;
        let raw = a.raw();
        self.current.push(AclObject::BoolArray(a));
        Ok(raw)
    }

    /// An `aclScalar`, kept until the next synchronise.
    pub fn scalar(&mut self, v: ScalarValue) -> Result<*mut aclScalar> {
        let s = AclScalar::new(self.cann(), v)?;
        let raw = s.raw();
        self.current.push(AclObject::Scalar(s));
        Ok(raw)
    }
}
