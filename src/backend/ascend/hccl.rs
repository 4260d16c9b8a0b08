//! HCCL collectives on an [`AscendBackend`]'s stream (`shared/reference/cann.md` §3): a
//! communicator ([`HcclComm`], destroyed on drop) made from a root info (`HcclGetRootInfo` on
//! rank 0, shipped to the others out of band, then `HcclCommInitRootInfo`) or from a rank table
//! (`HcclCommInitClusterInfo`), and in-place all-reduce, broadcast and barrier on device
//! buffers. Collectives are stream-ordered. The blocking methods synchronise the backend's
//! stream before returning, so results are ready (and a dead peer is reported) when they return;
//! [`AscendBackend::hccl_all_reduce_sum_overlapped`] instead queues the all-reduce on a second
//! stream ([`CommStream`]) behind an event of the backend's stream, and
//! [`AscendBackend::wait_comm_stream`] makes the backend's stream wait for it (a failure then
//! surfaces at the backend's next synchronise).
use std::ffi::CString;
use std::path::Path;

use senet_cann_sys::{HcclComm as RawComm, HcclDataType, HcclReduceOp, HcclResult, HcclRootInfo};

use super::device::DeviceShared;
use super::runtime::{Event, Stream};
use super::tensor::DType;
use super::{AscendBackend, AscendBuffer};
use crate::backend::check_len;
use crate::{Error, Result};
use std::sync::Arc;

/// Size of HCCL's root info blob (`HCCL_ROOT_INFO_BYTES`, the same in every CANN seen).
pub const ROOT_INFO_BYTES: usize = senet_cann_sys::SENET_HCCL_ROOT_INFO_BYTES as usize;

/// `Error::Shape` unless `buf` has room for `len` elements of its current dtype (its capacity
/// is `len()` f32, i.e. `4 * len()` bytes).
fn check_room(what: &str, buf: &AscendBuffer, len: usize) -> Result<()> {
    if len * buf.dtype().size() > buf.len() * 4 {
        return Err(Error::Shape(format!(
            "{what}: {len} {:?} values do not fit a buffer of {} f32",
            buf.dtype(),
            buf.len()
        )));
    }
    Ok(())
}

fn hccl() -> Result<&'static senet_cann_sys::Hccl> {
    senet_cann_sys::hccl()
        .map(|(h, _)| h)
        .map_err(|e| Error::DeviceUnavailable(format!("HCCL: {e}")))
}

/// The symbol `field` of libhccl, or [`Error::DeviceUnavailable`] naming it.
macro_rules! sym {
    ($api:expr, $name:ident) => {
        $api.$name.as_ref().map_err(|e| {
            Error::DeviceUnavailable(format!(
                "HCCL: {} is missing from libhccl.so: {e}",
                stringify!($name)
            ))
        })?
    };
}

/// `Ok` for `HCCL_SUCCESS`, else [`Error::Device`] naming `call` with `HcclGetErrorString`'s
/// text.
fn check(api: &senet_cann_sys::Hccl, call: &str, r: HcclResult) -> Result<()> {
    if r == HcclResult::HCCL_SUCCESS {
        return Ok(());
    }
    let message = match api.HcclGetErrorString.as_ref() {
        // SAFETY: HcclGetErrorString returns NULL or a static NUL-terminated string.
        Ok(f) => {
            let p = unsafe { f(r) };
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: non-null, NUL-terminated, static.
                unsafe { std::ffi::CStr::from_ptr(p) }
                    .to_string_lossy()
                    .into_owned()
            }
        }
        Err(_) => String::new(),
    };
    // CANN's runtime keeps the detailed text of the failure (the emulator's, at least).
    let message = match senet_cann_sys::cann() {
        Ok(cann) => format!("{message}; {}", super::error::recent_message(cann)),
        Err(_) => message,
    };
    Err(Error::Device {
        call: call.to_string(),
        code: r.0 as i64,
        name: result_name(r).to_string(),
        message,
    })
}

/// The symbolic name of an `HcclResult` (cann.md §3.3).
fn result_name(r: HcclResult) -> &'static str {
    const NAMES: [&str; 25] = [
        "HCCL_SUCCESS",
        "HCCL_E_PARA",
        "HCCL_E_PTR",
        "HCCL_E_MEMORY",
        "HCCL_E_INTERNAL",
        "HCCL_E_NOT_SUPPORT",
        "HCCL_E_NOT_FOUND",
        "HCCL_E_UNAVAIL",
        "HCCL_E_SYSCALL",
        "HCCL_E_TIMEOUT",
        "HCCL_E_OPEN_FILE_FAILURE",
        "HCCL_E_TCP_CONNECT",
        "HCCL_E_ROCE_CONNECT",
        "HCCL_E_TCP_TRANSFER",
        "HCCL_E_ROCE_TRANSFER",
        "HCCL_E_RUNTIME",
        "HCCL_E_DRV",
        "HCCL_E_PROFILING",
        "HCCL_E_CCE",
        "HCCL_E_NETWORK",
        "HCCL_E_AGAIN",
        "HCCL_E_REMOTE",
        "HCCL_E_SUSPENDING",
        "HCCL_E_OPRETRY_FAIL",
        "HCCL_E_OOM",
    ];
    usize::try_from(r.0)
        .ok()
        .and_then(|i| NAMES.get(i).copied())
        .unwrap_or("unknown HcclResult")
}

/// Queues `HcclAllReduce` (sum, in place) of the first `len` values of `buf` on `stream` (of the
/// current context). Errors: `buf` shorter than `len`, HCCL missing, the call failing.
fn all_reduce_on(
    comm: &HcclComm,
    buf: &mut AscendBuffer,
    len: usize,
    stream: senet_cann_sys::aclrtStream,
) -> Result<()> {
    check_room("hccl_all_reduce_sum", buf, len)?;
    let api = hccl()?;
    let f = sym!(api, HcclAllReduce);
    let p = buf.device_ptr();
    // SAFETY: in-place all-reduce of `len` values of a live device buffer on a stream of the
    // current context.
    let r = unsafe {
        f(
            p,
            p,
            len as u64,
            hccl_dtype(buf.dtype())?,
            HcclReduceOp::HCCL_REDUCE_SUM,
            comm.raw,
            stream,
        )
    };
    check(api, "HcclAllReduce", r)
}

/// A second stream of an [`AscendBackend`] for collectives, with the events that order it
/// against the backend's own stream (made by [`AscendBackend::comm_stream`]). Dropping it
/// synchronises the stream first (`aclrtDestroyStream` wants no queued work, contract Part D).
pub struct CommStream {
    // Field order is drop order: the events and the stream before the device they live on.
    ready: Vec<Event>,
    done: Event,
    stream: Stream,
    dev: Arc<DeviceShared>,
}

impl CommStream {
    fn check(&self, be: &AscendBackend) -> Result<()> {
        if Arc::ptr_eq(&self.dev, &be.dev) {
            Ok(())
        } else {
            Err(Error::Invalid(
                "a comm stream was used with another backend than the one that made it".into(),
            ))
        }
    }
}

impl Drop for CommStream {
    fn drop(&mut self) {
        if self.dev.context().make_current().is_ok() {
            // Errors of the queued collectives were reported at the compute stream's
            // synchronise after its wait; nothing to report from a drop.
            let _ = self.stream.synchronize();
        }
    }
}

impl std::fmt::Debug for CommStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CommStream({} ready events)", self.ready.len())
    }
}

/// An HCCL communicator of `size` ranks, this process being `rank`; bound to the device of the
/// backend that made it. `HcclCommDestroy` on drop.
pub struct HcclComm {
    raw: RawComm,
    rank: usize,
    size: usize,
}

// SAFETY: an HcclComm handle may be used from any thread whose current device is the
// communicator's; every use goes through an AscendBackend entry point, which makes the device's
// context current first.
unsafe impl Send for HcclComm {}
// SAFETY: as above; collectives on one communicator are serialised by the backend's device lock.
unsafe impl Sync for HcclComm {}

impl std::fmt::Debug for HcclComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HcclComm(rank {} of {})", self.rank, self.size)
    }
}

impl HcclComm {
    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl Drop for HcclComm {
    fn drop(&mut self) {
        if let Ok(api) = hccl() {
            if let Ok(f) = api.HcclCommDestroy.as_ref() {
                // SAFETY: `raw` came from a successful init and is destroyed once.
                unsafe { f(self.raw) };
            }
        }
    }
}

/// HCCL's type for a buffer's dtype. Errors: a type HCCL cannot reduce (double), named.
fn hccl_dtype(d: DType) -> Result<HcclDataType> {
    Ok(match d {
        DType::F32 => HcclDataType::HCCL_DATA_TYPE_FP32,
        DType::F16 => HcclDataType::HCCL_DATA_TYPE_FP16,
        DType::I64 => HcclDataType::HCCL_DATA_TYPE_INT64,
        DType::I32 => HcclDataType::HCCL_DATA_TYPE_INT32,
        DType::I8 => HcclDataType::HCCL_DATA_TYPE_INT8,
        other => {
            return Err(Error::Invalid(format!(
                "HCCL collectives take f32, f16 or integer buffers, not {other:?}"
            )))
        }
    })
}

impl AscendBackend {
    /// The root info of a new communicator, on rank 0 (`HcclGetRootInfo`, with this backend's
    /// device current): [`ROOT_INFO_BYTES`] bytes to send to every rank (e.g. over MPI) for
    /// [`AscendBackend::hccl_init_root_info`]. Errors: HCCL missing or the call failing.
    pub fn hccl_root_info(&self) -> Result<Vec<u8>> {
        let api = hccl()?;
        let f = sym!(api, HcclGetRootInfo);
        let _ctx = self.dev.enter()?;
        let mut info = HcclRootInfo {
            internal: [0; ROOT_INFO_BYTES],
        };
        // SAFETY: `info` is a valid out-parameter of the declared size.
        check(api, "HcclGetRootInfo", unsafe { f(&mut info) })?;
        Ok(info.internal.iter().map(|b| *b as u8).collect())
    }

    /// Joins the communicator of `size` ranks described by rank 0's `root_info` as `rank`
    /// (`HcclCommInitRootInfo`; blocks until every rank joined or HCCL_CONNECT_TIMEOUT).
    /// Errors: a root info of the wrong size, `rank >= size`, the call failing.
    pub fn hccl_init_root_info(
        &self,
        size: usize,
        root_info: &[u8],
        rank: usize,
    ) -> Result<HcclComm> {
        if root_info.len() != ROOT_INFO_BYTES {
            return Err(Error::Invalid(format!(
                "HCCL root info must be {ROOT_INFO_BYTES} bytes, got {}",
                root_info.len()
            )));
        }
        if rank >= size {
            return Err(Error::Invalid(format!(
                "HCCL rank {rank} is not below the rank count {size}"
            )));
        }
        let api = hccl()?;
        let f = sym!(api, HcclCommInitRootInfo);
        let mut info = HcclRootInfo {
            internal: [0; ROOT_INFO_BYTES],
        };
        for (d, s) in info.internal.iter_mut().zip(root_info) {
            *d = *s as std::os::raw::c_char;
        }
        let _ctx = self.dev.enter()?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid root info and out-pointer; the device's context is current.
        let r = unsafe { f(size as u32, &info, rank as u32, &mut raw) };
        check(api, "HcclCommInitRootInfo", r)?;
        Ok(HcclComm { raw, rank, size })
    }

    /// Joins the communicator a rank table describes (`HcclCommInitClusterInfo`, the
    /// `RANK_TABLE_FILE` launch of MindSpore) as `rank`; the rank count comes from HCCL
    /// (`HcclGetRankSize`). This backend's device must be the table's `device_id` for `rank`.
    /// Errors: a path that is not UTF-8 or holds a NUL, the calls failing.
    pub fn hccl_init_cluster_info(&self, rank_table: &Path, rank: usize) -> Result<HcclComm> {
        let api = hccl()?;
        let init = sym!(api, HcclCommInitClusterInfo);
        let size_of = sym!(api, HcclGetRankSize);
        let path = rank_table
            .to_str()
            .and_then(|s| CString::new(s).ok())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "rank table path {} is not a valid C string",
                    rank_table.display()
                ))
            })?;
        let _ctx = self.dev.enter()?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: NUL-terminated path, valid out-pointer, the device's context is current.
        check(api, "HcclCommInitClusterInfo", unsafe {
            init(path.as_ptr(), rank as u32, &mut raw)
        })?;
        let mut size = 0u32;
        // SAFETY: a live communicator and a valid out-pointer.
        let r = unsafe { size_of(raw, &mut size) };
        // Owned from here: destroyed on the error path too.
        let comm = HcclComm {
            raw,
            rank,
            size: size as usize,
        };
        check(api, "HcclGetRankSize", r)?;
        Ok(comm)
    }

    /// In-place sum over the ranks of the first `len` values of `buf` (its current dtype:
    /// f32, or fp16 in the O2 mode), `HcclAllReduce` on this backend's stream, then a
    /// synchronise. Errors: `buf` shorter than `len`, the call or the stream failing (a dead
    /// peer surfaces here, naming `HcclAllReduce`).
    pub fn hccl_all_reduce_sum(
        &self,
        comm: &HcclComm,
        buf: &mut AscendBuffer,
        len: usize,
    ) -> Result<()> {
        let mut ctx = self.dev.enter()?;
        all_reduce_on(comm, buf, len, ctx.stream())?;
        ctx.sync()
            .map_err(|e| Error::Invalid(format!("HcclAllReduce: {e}")))
    }

    /// A second stream of this backend's context for collectives that overlap its compute
    /// ([`AscendBackend::hccl_all_reduce_sum_overlapped`]). Errors: the stream or an event
    /// cannot be created.
    pub fn comm_stream(&self) -> Result<CommStream> {
        let ctx = self.dev.context();
        Ok(CommStream {
            ready: Vec::new(),
            done: Event::new(ctx)?,
            stream: Stream::new(ctx)?,
            dev: Arc::clone(&self.dev),
        })
    }

    /// Queues on `cs` an in-place sum over the ranks of the first `len` values of `buf` that
    /// starts once the work queued so far on this backend's stream has finished: the event
    /// `cs.ready[slot]` is recorded on the backend's stream (`aclrtRecordEvent`), the comm
    /// stream waits for it (`aclrtStreamWaitEvent`) and runs `HcclAllReduce`, then records
    /// `cs.done`. The host does not wait: nothing may touch `buf` until
    /// [`AscendBackend::wait_comm_stream`] (work queued on this backend's stream before this
    /// call may: it is ordered before). `slot` picks the ready event (one per bucket of a
    /// step, so a record never replaces one the comm stream has not waited for yet).
    /// Errors: `buf` shorter than `len`, `cs` of another backend, a call failing (a failure of
    /// the all-reduce itself surfaces at the next synchronise after the wait).
    pub fn hccl_all_reduce_sum_overlapped(
        &self,
        cs: &mut CommStream,
        slot: usize,
        comm: &HcclComm,
        buf: &mut AscendBuffer,
        len: usize,
    ) -> Result<()> {
        cs.check(self)?;
        while cs.ready.len() <= slot {
            cs.ready.push(Event::new(self.dev.context())?);
        }
        let ctx = self.dev.enter()?;
        cs.ready[slot].record(ctx.stream_ref())?;
        cs.stream.wait_event(&cs.ready[slot])?;
        all_reduce_on(comm, buf, len, cs.stream.raw())?;
        cs.done.record(&cs.stream)
    }

    /// Makes the work queued on this backend's stream from now on wait for everything queued
    /// on `cs` so far (its last `cs.done` record). Errors: `cs` of another backend, the call
    /// failing.
    pub fn wait_comm_stream(&self, cs: &CommStream) -> Result<()> {
        cs.check(self)?;
        let ctx = self.dev.enter()?;
        ctx.stream_ref().wait_event(&cs.done)
    }
    /// Copies `root`'s first `len` values of `buf` to every rank (`HcclBroadcast`), then
    /// synchronises. Errors: as [`AscendBackend::hccl_all_reduce_sum`]; `root` out of range.
    pub fn hccl_broadcast(
        &self,
        comm: &HcclComm,
        buf: &mut AscendBuffer,
        len: usize,
        root: usize,
    ) -> Result<()> {
        check_room("hccl_broadcast", buf, len)?;
        if root >= comm.size {
            return Err(Error::Invalid(format!(
                "broadcast root {root} is not below the rank count {}",
                comm.size
            )));
        }
        let api = hccl()?;
        let f = sym!(api, HcclBroadcast);
        let mut ctx = self.dev.enter()?;
        // SAFETY: `len` values of a live device buffer, on our stream.
        let r = unsafe {
            f(
                buf.device_ptr(),
                len as u64,
                hccl_dtype(buf.dtype())?,
                root as u32,
                comm.raw,
                ctx.stream(),
            )
        };
        check(api, "HcclBroadcast", r)?;
        ctx.sync()
            .map_err(|e| Error::Invalid(format!("HcclBroadcast: {e}")))
    }

    /// Waits until every rank reached the barrier (`HcclBarrier`), then synchronises.
    /// Errors: as [`AscendBackend::hccl_all_reduce_sum`].
    pub fn hccl_barrier(&self, comm: &HcclComm) -> Result<()> {
        let api = hccl()?;
        let f = sym!(api, HcclBarrier);
        let mut ctx = self.dev.enter()?;
        // SAFETY: a live communicator, our stream.
        check(api, "HcclBarrier", unsafe { f(comm.raw, ctx.stream()) })?;
        ctx.sync()
            .map_err(|e| Error::Invalid(format!("HcclBarrier: {e}")))
    }
}

impl AscendBackend {
    /// Copies `len` values between two device buffers at element offsets: `dst[dst_off..] =
    /// src[src_off..]` (`aclnnInplaceCopy` on offset views, in stream order; the dtype is
    /// `src`'s, and `dst` takes it). For packing gradients into fused all-reduce buckets.
    /// Errors: a range outside either buffer.
    pub fn copy_range(
        &self,
        src: &AscendBuffer,
        src_off: usize,
        dst: &mut AscendBuffer,
        dst_off: usize,
        len: usize,
    ) -> Result<()> {
        check_len("copy_range source", src, src_off + len)?;
        check_len("copy_range destination", dst, dst_off + len)?;
        if len == 0 {
            return Ok(());
        }
        let mut ctx = self.dev.enter()?;
        let at = |buf: &AscendBuffer, off: usize| {
            let mut d =
                super::tensor::TensorDesc::contiguous(buf.device_ptr(), src.dtype(), &[len]);
            d.offset = off as i64;
            d.storage = vec![(off + len) as i64];
            d
        };
        let st = ctx.tensor(&at(src, src_off))?;
        let dt = ctx.tensor(&at(dst, dst_off))?;
        super::op::aclnn!(
            ctx,
            aclnnInplaceCopy,
            aclnnInplaceCopyGetWorkspaceSize,
            dt,
            st
        )?;
        dst.dtype = src.dtype();
        Ok(())
    }

    /// Sums `host` over the ranks in place through the device (upload, `HcclAllReduce`,
    /// download): the host-side collective of an HCCL communicator. Errors: as
    /// [`AscendBackend::hccl_all_reduce_sum`].
    pub fn hccl_all_reduce_host_f32(&self, comm: &HcclComm, host: &mut [f32]) -> Result<()> {
        if host.is_empty() {
            return Ok(());
        }
        let mut buf = crate::backend::Backend::upload(self, host)?;
        self.hccl_all_reduce_sum(comm, &mut buf, host.len())?;
        crate::backend::Backend::download(self, &buf, host)
    }

    /// Copies `root`'s `bytes` to every rank through the device (`HcclBroadcast` of INT8).
    /// Errors: as [`AscendBackend::hccl_broadcast`].
    pub fn hccl_broadcast_host_bytes(
        &self,
        comm: &HcclComm,
        bytes: &mut [u8],
        root: usize,
    ) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut buf = crate::backend::Backend::alloc(self, bytes.len().div_ceil(4))?;
        {
            let mut ctx = self.dev.enter()?;
            ctx.upload_bytes(&buf.block, bytes)?;
        }
        buf.dtype = DType::I8;
        self.hccl_broadcast(comm, &mut buf, bytes.len(), root)?;
        let mut ctx = self.dev.enter()?;
        ctx.download_bytes(&buf.block, bytes)
    }
}
