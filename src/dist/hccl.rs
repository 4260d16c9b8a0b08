//! HCCL on Ascend (`shared/reference/cann.md` §3): [`HcclCommunicator`], the host collectives of
//! a job over an HCCL communicator, and [`HcclReducer`], the gradient all-reduce on the Ascend
//! backend's own buffers.
//!
//! Two ways to make the communicator, as MindSpore and torch_npu do:
//! - **rank table** (`RANK_TABLE_FILE`, `RANK_ID`, `RANK_SIZE`, `DEVICE_ID`; one process per
//!   device started by a script): `HcclCommInitClusterInfo(table, rank)`, no MPI involved, and
//!   the same communicator carries the host collectives;
//! - **root info** under `mpirun`: rank 0 makes one with `HcclGetRootInfo`, MPI broadcasts its
//!   4108 bytes, every rank calls `HcclCommInitRootInfo`; MPI keeps the host collectives and
//!   HCCL carries the gradients.
use super::reducer::plan_buckets;
use super::{Communicator, GradBuffer, GradientReducer};
use crate::backend::ascend::{AscendBackend, AscendBuffer, HcclComm, Precision};
use crate::backend::Backend;
use crate::{Error, Result};
use std::path::Path;
use std::sync::Arc;

/// A [`Communicator`] over an HCCL communicator: host buffers go through the device (upload,
/// collective, download) on a float32 backend of their own.
pub struct HcclCommunicator {
    // Field order is drop order: the communicator before the backend (and its device).
    comm: HcclComm,
    backend: AscendBackend,
}

impl std::fmt::Debug for HcclCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HcclCommunicator({:?})", self.comm)
    }
}

impl HcclCommunicator {
    /// Joins the communicator the rank table at `table` describes as `rank`, on NPU `device`
    /// (the table's `device_id` for that rank). Errors: CANN or HCCL unavailable, the device
    /// missing, `HcclCommInitClusterInfo` failing (its message).
    pub fn from_rank_table(device: i32, table: &Path, rank: usize) -> Result<HcclCommunicator> {
        let backend = AscendBackend::new(device, Precision::Fp32)?;
        let comm = backend.hccl_init_cluster_info(table, rank)?;
        Ok(HcclCommunicator { comm, backend })
    }

    /// Makes a communicator over the ranks of `bootstrap` (MPI), on NPU `device`: rank 0's
    /// `HcclGetRootInfo` is broadcast with [`Communicator::broadcast_bytes`], then every rank
    /// calls `HcclCommInitRootInfo`. Errors: as [`HcclCommunicator::from_rank_table`].
    pub fn from_root_info(device: i32, bootstrap: &dyn Communicator) -> Result<HcclCommunicator> {
        let backend = AscendBackend::new(device, Precision::Fp32)?;
        let mut info = if bootstrap.rank() == 0 {
            backend.hccl_root_info()?
        } else {
            vec![0u8; crate::backend::ascend::ROOT_INFO_BYTES]
        };
        bootstrap.broadcast_bytes(&mut info, 0)?;
        let comm = backend.hccl_init_root_info(bootstrap.size(), &info, bootstrap.rank())?;
        Ok(HcclCommunicator { comm, backend })
    }

    /// The HCCL communicator.
    pub fn comm(&self) -> &HcclComm {
        &self.comm
    }

    /// The NPU the communicator was made on.
    pub fn device_id(&self) -> i32 {
        self.backend.device_id()
    }
}

impl Communicator for HcclCommunicator {
    fn name(&self) -> &'static str {
        "hccl"
    }

    fn rank(&self) -> usize {
        self.comm.rank()
    }

    fn size(&self) -> usize {
        self.comm.size()
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.backend.hccl_all_reduce_host_f32(&self.comm, buf)
    }

    /// Exact and the same on every rank: each rank's values are broadcast in turn and every
    /// rank adds them in rank order (the host collectives are a few values per epoch).
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        let mut total = vec![0.0f64; buf.len()];
        for root in 0..self.size() {
            let mut bytes: Vec<u8> = buf.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.broadcast_bytes(&mut bytes, root)?;
            for (t, c) in total.iter_mut().zip(bytes.chunks_exact(8)) {
                *t += f64::from_le_bytes(c.try_into().expect("8 bytes"));
            }
        }
        buf.copy_from_slice(&total);
        Ok(())
    }

    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        super::check_root(root, self.size())?;
        let mut bytes: Vec<u8> = buf.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.broadcast_bytes(&mut bytes, root)?;
        for (v, c) in buf.iter_mut().zip(bytes.chunks_exact(4)) {
            *v = f32::from_le_bytes(c.try_into().expect("4 bytes"));
        }
        Ok(())
    }

    fn broadcast_bytes(&self, buf: &mut [u8], root: usize) -> Result<()> {
        super::check_root(root, self.size())?;
        self.backend
            .hccl_broadcast_host_bytes(&self.comm, buf, root)
    }

    fn barrier(&self) -> Result<()> {
        self.backend.hccl_barrier(&self.comm)
    }

    /// HCCL has no abort: the process exits, and the other ranks' next collective fails (a
    /// closed connection) or times out (`HCCL_EXEC_TIMEOUT`).
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// The gradient all-reduce of the Ascend backend: gradients packed into fused device buckets
/// (the [`super::DEFAULT_BUCKET_BYTES`] plan of the host-staged reducer, last layer first),
/// `HcclAllReduce` (sum) on the training backend's stream, times `1/ranks`
/// (`aclnnInplaceMuls`), unpacked; a gradient as large as a bucket is reduced in place.
pub struct HcclReducer {
    comm: Arc<dyn Communicator>,
    bucket_elems: usize,
    /// The packing buffer, grown to the largest bucket on first use.
    flat: Option<AscendBuffer>,
}

impl HcclReducer {
    /// A reducer over `comm`, which must be an [`HcclCommunicator`]. Errors: another kind of
    /// communicator; a bucket smaller than one value.
    pub fn new(comm: Arc<dyn Communicator>, bucket_bytes: usize) -> Result<HcclReducer> {
        if hccl_of(&*comm).is_none() {
            return Err(Error::Invalid(format!(
                "the HCCL gradient reducer needs an HCCL communicator, got {}",
                comm.name()
            )));
        }
        let bucket_elems = bucket_bytes / 4;
        if bucket_elems == 0 {
            return Err(Error::Invalid(format!(
                "gradient bucket of {bucket_bytes} bytes holds no f32 value"
            )));
        }
        Ok(HcclReducer {
            comm,
            bucket_elems,
            flat: None,
        })
    }
}

/// The HCCL communicator behind `comm`, if it is one.
pub fn hccl_of(comm: &dyn Communicator) -> Option<&HcclCommunicator> {
    comm.as_any()?.downcast_ref::<HcclCommunicator>()
}

impl GradientReducer<AscendBackend> for HcclReducer {
    fn size(&self) -> usize {
        self.comm.size()
    }

    fn all_reduce_mean(
        &mut self,
        backend: &AscendBackend,
        grads: &mut [GradBuffer<'_, AscendBackend>],
    ) -> Result<()> {
        let n = self.comm.size();
        if n == 1 {
            return Ok(());
        }
        let hccl = hccl_of(&*self.comm).expect("checked in new").comm();
        let inv = 1.0 / n as f32;
        let lens: Vec<usize> = grads.iter().map(|g| g.len).collect();
        for bucket in plan_buckets(&lens, self.bucket_elems) {
            if let [(i, _)] = bucket.members[..] {
                let g = &mut grads[i];
                backend.hccl_all_reduce_sum(hccl, g.grad, g.len)?;
                backend.scale(g.grad, g.len, inv)?;
                continue;
            }
            let flat = match &mut self.flat {
                Some(f) if f.len() >= bucket.len => f,
                slot => slot.insert(backend.alloc(self.bucket_elems.max(bucket.len))?),
            };
            for &(i, off) in &bucket.members {
                backend.copy_range(grads[i].grad, 0, flat, off, grads[i].len)?;
            }
            backend.hccl_all_reduce_sum(hccl, flat, bucket.len)?;
            backend.scale(flat, bucket.len, inv)?;
            for &(i, off) in &bucket.members {
                let len = grads[i].len;
                backend.copy_range(flat, off, grads[i].grad, 0, len)?;
            }
        }
        Ok(())
    }
}
