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
use super::{Communicator, GradBuffer, GradientReducer};
use crate::backend::ascend::{AscendBackend, AscendBuffer, CommStream, HcclComm, Precision};
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

/// The gradient all-reduce of the Ascend backend, overlapped with the backward as PyTorch DDP
/// does it: the gradients are fused into buckets in the order the backward finishes them
/// ([`GradientReducer::gradients_ready`]); a bucket is closed as soon as it holds at least
/// `bucket_bytes` of f32 (DDP's rule, so a bucket may pass the size by its last gradient) and
/// its gradients are packed into the bucket's device buffer on the backend's stream, then
/// `HcclAllReduce` (sum) runs on a second stream of the backend ([`CommStream`]) after an
/// event recorded behind the packing, while the backend's stream goes on with the backward. A
/// gradient that fills a bucket alone is reduced in place. [`GradientReducer::all_reduce_mean`]
/// closes the last bucket, makes the backend's stream wait for the comm stream's last event,
/// then multiplies each bucket by `1/ranks` (`aclnnInplaceMuls`) and unpacks it, so the
/// optimizer's kernels queued after it see the averaged gradients. The bucket buffers are
/// allocated on the first step and reused (every rank's backward is the same, so are its
/// buckets). The per-element arithmetic is the sequential reducer's: a sum over the ranks,
/// then times `1/ranks`.
pub struct HcclReducer {
    // Field order is drop order: the comm stream (synchronised on drop) before the buffers its
    // work used.
    stream: Option<CommStream>,
    comm: Arc<dyn Communicator>,
    bucket_elems: usize,
    /// Packing buffers by bucket number.
    flats: Vec<AscendBuffer>,
    /// This step's closed buckets, in launch order.
    launched: Vec<Bucket>,
    /// Gradients finished but not yet in a closed bucket, in order, and their total length.
    open: Vec<usize>,
    open_len: usize,
    /// Which gradients were reported this step.
    seen: Vec<bool>,
}

/// A closed bucket: its gradients with their offsets in the packing buffer (none for a
/// gradient reduced in place).
struct Bucket {
    members: Vec<(usize, usize)>,
    len: usize,
    packed: bool,
}

impl HcclReducer {
    /// A reducer over `comm`, which must be an [`HcclCommunicator`], closing buckets at
    /// `bucket_bytes` of f32 ([`super::DEFAULT_BUCKET_BYTES`] as DDP's). Errors: another kind
    /// of communicator; a bucket smaller than one value.
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
            stream: None,
            comm,
            bucket_elems,
            flats: Vec::new(),
            launched: Vec::new(),
            open: Vec::new(),
            open_len: 0,
            seen: Vec::new(),
        })
    }

    /// Closes the open bucket: packs it (unless it is one gradient) and queues its all-reduce
    /// on the comm stream.
    fn launch(
        &mut self,
        backend: &AscendBackend,
        grads: &mut [GradBuffer<'_, AscendBackend>],
    ) -> Result<()> {
        let members = std::mem::take(&mut self.open);
        let len = std::mem::replace(&mut self.open_len, 0);
        let slot = self.launched.len();
        let hccl = hccl_of(&*self.comm).expect("checked in new").comm();
        let cs = match &mut self.stream {
            Some(cs) => cs,
            empty => empty.insert(backend.comm_stream()?),
        };
        if let [i] = members[..] {
            let g = &mut grads[i];
            backend.hccl_all_reduce_sum_overlapped(cs, slot, hccl, g.grad, g.len)?;
            self.launched.push(Bucket {
                members: vec![(i, 0)],
                len,
                packed: false,
            });
            return Ok(());
        }
        if self.flats.get(slot).is_none_or(|f| f.len() < len) {
            let buf = backend.alloc(len)?;
            match self.flats.get_mut(slot) {
                Some(f) => *f = buf,
                None => self.flats.push(buf),
            }
        }
        let flat = &mut self.flats[slot];
        let mut placed = Vec::with_capacity(members.len());
        let mut off = 0;
        for i in members {
            backend.copy_range(grads[i].grad, 0, flat, off, grads[i].len)?;
            placed.push((i, off));
            off += grads[i].len;
        }
        backend.hccl_all_reduce_sum_overlapped(cs, slot, hccl, flat, len)?;
        self.launched.push(Bucket {
            members: placed,
            len,
            packed: true,
        });
        Ok(())
    }
}

impl GradientReducer<AscendBackend> for HcclReducer {
    fn size(&self) -> usize {
        self.comm.size()
    }

    fn gradients_ready(
        &mut self,
        backend: &AscendBackend,
        grads: &mut [GradBuffer<'_, AscendBackend>],
        ready: &[usize],
    ) -> Result<()> {
        if self.comm.size() == 1 {
            return Ok(());
        }
        if self.seen.len() != grads.len() {
            if !self.launched.is_empty() || !self.open.is_empty() {
                return Err(Error::Invalid(format!(
                    "gradient list changed from {} to {} entries within a step",
                    self.seen.len(),
                    grads.len()
                )));
            }
            self.seen = vec![false; grads.len()];
        }
        for &i in ready {
            let Some(g) = grads.get(i) else {
                return Err(Error::Invalid(format!(
                    "gradient {i} reported ready, but there are {}",
                    grads.len()
                )));
            };
            if std::mem::replace(&mut self.seen[i], true) {
                return Err(Error::Invalid(format!(
                    "gradient '{}' reported ready twice in one step",
                    g.name
                )));
            }
            self.open.push(i);
            self.open_len += g.len;
            if self.open_len >= self.bucket_elems {
                self.launch(backend, grads)?;
            }
        }
        Ok(())
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
        // Gradients the backward did not report: last first, as the backward would.
        let unseen: Vec<usize> = (0..grads.len())
            .rev()
            .filter(|&i| !self.seen.get(i).copied().unwrap_or(false))
            .collect();
        self.gradients_ready(backend, grads, &unseen)?;
        if !self.open.is_empty() {
            self.launch(backend, grads)?;
        }
        if let Some(cs) = &self.stream {
            backend.wait_comm_stream(cs)?;
        }
        let inv = 1.0 / n as f32;
        let launched = std::mem::take(&mut self.launched);
        self.seen.iter_mut().for_each(|s| *s = false);
        for (slot, b) in launched.iter().enumerate() {
            if !b.packed {
                let g = &mut grads[b.members[0].0];
                backend.scale(g.grad, g.len, inv)?;
                continue;
            }
            let flat = &mut self.flats[slot];
            backend.scale(flat, b.len, inv)?;
            for &(i, off) in &b.members {
                let len = grads[i].len;
                backend.copy_range(flat, off, grads[i].grad, 0, len)?;
            }
        }
        Ok(())
    }
}

/// The HCCL communicator behind `comm`, if it is one.
pub fn hccl_of(comm: &dyn Communicator) -> Option<&HcclCommunicator> {
    comm.as_any()?.downcast_ref::<HcclCommunicator>()
}
