//! HCCL collectives on an [`AscendBackend`]'s stream (`shared/reference/cann.md` §3): a
//! communicator ([`HcclComm`], destroyed on drop) made from a root info (`HcclGetRootInfo` on
//! rank 0, shipped to the others out of band, then `HcclCommInitRootInfo`) or from a rank table
//! (`HcclCommInitClusterInfo`), and in-place all-reduce, broadcast and barrier on device
//! buffers. Collectives are stream-ordered; every method here synchronises the backend's stream
//! before returning, so results are ready (and a dead peer is reported) when it returns.
use std::ffi::CString;
use std::path::Path;

use senet_cann_sys::{HcclComm as RawComm, HcclDataType, HcclReduceOp, HcclResult, HcclRootInfo};

use super::buffer;
use super::tensor::DType;
use super::{AscendBackend, AscendBuffer};
use crate::{Error, Result};

/// Size of HCCL's root info blob (`HCCL_ROOT_INFO_BYTES`, the same in every CANN seen).
pub const ROOT_INFO_BYTES: usize = senet_cann_sys::SENET_HCCL_ROOT_INFO_BYTES as usize;

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
    Err(Error::Device {
        call: call.to_string(),
        code: r.0 as i64,
        name: format!("HcclResult {}", r.0),
        message,
    })
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
        let comm = HcclComm { raw, rank, size: 0 };
        let mut size = 0u32;
        // SAFETY: a live communicator and a valid out-pointer.
        check(api, "HcclGetRankSize", unsafe {
            size_of(comm.raw, &mut size)
        })?;
        Ok(HcclComm {
            size: size as usize,
            ..comm
        })
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
        buffer::check("hccl_all_reduce_sum", buf, len)?;
        let api = hccl()?;
        let f = sym!(api, HcclAllReduce);
        let mut ctx = self.dev.enter()?;
        let p = buf.device_ptr();
        // SAFETY: in-place all-reduce of `len` values of a live device buffer on our stream.
        let r = unsafe {
            f(
                p,
                p,
                len as u64,
                hccl_dtype(buf.dtype())?,
                HcclReduceOp::HCCL_REDUCE_SUM,
                comm.raw,
                ctx.stream(),
            )
        };
        check(api, "HcclAllReduce", r)?;
        ctx.sync()
            .map_err(|e| Error::Invalid(format!("HcclAllReduce: {e}")))
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
        buffer::check("hccl_broadcast", buf, len)?;
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
