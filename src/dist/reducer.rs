//! Averaging the gradients of a data-parallel step over the ranks (MindSpore's
//! `DistributedGradReducer` with `gradients_mean=True`: all-reduce sum, then times 1/ranks).
use super::Communicator;
use crate::backend::Backend;
use crate::{Error, Result};
use std::sync::Arc;

/// Default size of one fused all-reduce bucket: 25 MiB of f32 gradients (PyTorch DDP's
/// default; seresnet18's 11.7 M gradients make two buckets, seresnet50's 28 M five).
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Environment variable: the gradient bucket size in MiB (PyTorch DDP's `bucket_cap_mb`; a
/// positive number, fractions allowed; default 25).
pub const ENV_BUCKET_CAP_MB: &str = "SENET_BUCKET_CAP_MB";

/// The gradient bucket size in bytes: `SENET_BUCKET_CAP_MB` MiB, else
/// [`DEFAULT_BUCKET_BYTES`]. Errors: [`Error::Invalid`] naming the variable when it is not a
/// positive number of MiB holding at least one f32.
pub fn bucket_bytes() -> Result<usize> {
    match std::env::var(ENV_BUCKET_CAP_MB) {
        Ok(v) => parse_bucket_cap_mb(&v),
        Err(_) => Ok(DEFAULT_BUCKET_BYTES),
    }
}

/// Bytes of a bucket of `v` MiB (see [`bucket_bytes`]).
fn parse_bucket_cap_mb(v: &str) -> Result<usize> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|mb| mb.is_finite() && *mb > 0.0 && *mb <= 1e6)
        .map(|mb| (mb * (1u64 << 20) as f64) as usize)
        .filter(|&b| b >= 4)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{ENV_BUCKET_CAP_MB}={v:?}: the gradient bucket size must be a number of MiB in (0, 1e6] holding at least one f32 (4 bytes)"
            ))
        })
}

/// One trainable parameter's gradient on the device, as a [`GradientReducer`] sees it.
pub struct GradBuffer<'a, B: Backend> {
    /// The parameter's name (MindCV's, e.g. `layer1.0.conv1.weight`).
    pub name: &'a str,
    /// The gradient: its first `len` values.
    pub grad: &'a mut B::Buffer,
    /// Number of values.
    pub len: usize,
}

/// Replaces every gradient of a step by its mean over the ranks, between the backward
/// ([`crate::optim::TrainNet::forward_backward`]) and the optimizer
/// ([`crate::optim::TrainNet::apply_momentum`]).
///
/// The CPU uses [`HostStagedReducer`]. A device with its own collective library implements
/// this on its buffers directly: the Ascend backend's HCCL reducer enqueues `HcclAllReduce`
/// (sum) on fused device buckets on the backend's stream, in the order given, followed by the
/// scaling by 1/ranks, so the optimizer's kernels queued after it see the averaged gradients.
pub trait GradientReducer<B: Backend>: Send {
    /// Ranks the gradients are averaged over.
    fn size(&self) -> usize;

    /// The backward has finished the gradients `ready` (positions in `grads`, the list
    /// [`GradientReducer::all_reduce_mean`] takes) for this step. Called during the backward
    /// ([`crate::optim::TrainNet::forward_backward_reduced`]) in the order it produces them,
    /// each gradient at most once per step, before that step's `all_reduce_mean`; every rank
    /// makes the same calls. A reducer that overlaps its communication with the rest of the
    /// backward starts it here (the gradients `ready` are not written again this step); the
    /// default does nothing and leaves all the work to `all_reduce_mean`.
    /// Errors: the backend's, the communicator's.
    fn gradients_ready(
        &mut self,
        backend: &B,
        grads: &mut [GradBuffer<'_, B>],
        ready: &[usize],
    ) -> Result<()> {
        let _ = (backend, grads, ready);
        Ok(())
    }

    /// Averages `grads` over the ranks in place, completing what
    /// [`GradientReducer::gradients_ready`] started this step (gradients never reported are
    /// reduced here): afterwards every rank holds, for each gradient, `(Σ_ranks grad) / size`,
    /// and the backend's later work sees it. `grads` lists every trainable parameter in model
    /// order; every rank passes the same list. Errors: the backend's transfer errors, the
    /// communicator's.
    fn all_reduce_mean(&mut self, backend: &B, grads: &mut [GradBuffer<'_, B>]) -> Result<()>;
}

/// A group of consecutive gradients all-reduced as one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bucket {
    /// Indices into the gradient list, each with its offset in the bucket.
    pub(crate) members: Vec<(usize, usize)>,
    /// Values in the bucket.
    pub(crate) len: usize,
}

/// Gradients fused into buckets of at most `bucket_elems` values, from the last gradient to
/// the first (the order the backward produces them in); a gradient larger than a bucket gets
/// one of its own.
pub(crate) fn plan_buckets(lens: &[usize], bucket_elems: usize) -> Vec<Bucket> {
    let mut buckets = Vec::new();
    let mut cur = Bucket {
        members: Vec::new(),
        len: 0,
    };
    for (i, &len) in lens.iter().enumerate().rev() {
        if !cur.members.is_empty() && cur.len + len > bucket_elems {
            buckets.push(std::mem::replace(
                &mut cur,
                Bucket {
                    members: Vec::new(),
                    len: 0,
                },
            ));
        }
        cur.members.push((i, cur.len));
        cur.len += len;
    }
    if !cur.members.is_empty() {
        buckets.push(cur);
    }
    buckets
}

/// The generic [`GradientReducer`]: for each bucket, the gradients are downloaded into one
/// host buffer, summed over the ranks by the host [`Communicator`] (one all-reduce per bucket),
/// multiplied by `1/size` and written back. Works on any backend; on the CPU the transfers are
/// plain copies. With one rank it does nothing.
///
/// The all-reduce runs after the whole backward (no overlap with it): on the CPU the backward
/// already keeps every core busy, so overlapping would only move time around.
pub struct HostStagedReducer {
    comm: Arc<dyn Communicator>,
    bucket_elems: usize,
    staging: Vec<f32>,
    /// The plan of the gradient lengths it was made for.
    plan: Option<(Vec<usize>, Vec<Bucket>)>,
}

impl HostStagedReducer {
    /// A reducer over `comm` with buckets of at most `bucket_bytes` bytes of f32.
    /// Errors: [`Error::Invalid`] when `bucket_bytes` is below 4 (one value).
    pub fn new(comm: Arc<dyn Communicator>, bucket_bytes: usize) -> Result<HostStagedReducer> {
        if bucket_bytes < 4 {
            return Err(Error::Invalid(format!(
                "gradient bucket of {bucket_bytes} bytes: at least 4 (one f32) needed"
            )));
        }
        Ok(HostStagedReducer {
            comm,
            bucket_elems: bucket_bytes / 4,
            staging: Vec::new(),
            plan: None,
        })
    }

    /// Number of all-reduce messages per step for gradients of these lengths.
    pub fn buckets_for(&self, lens: &[usize]) -> usize {
        plan_buckets(lens, self.bucket_elems).len()
    }
}

impl<B: Backend> GradientReducer<B> for HostStagedReducer {
    fn size(&self) -> usize {
        self.comm.size()
    }

    fn all_reduce_mean(&mut self, backend: &B, grads: &mut [GradBuffer<'_, B>]) -> Result<()> {
        let size = self.comm.size();
        if size == 1 {
            return Ok(());
        }
        let lens: Vec<usize> = grads.iter().map(|g| g.len).collect();
        if self.plan.as_ref().is_none_or(|(l, _)| *l != lens) {
            let buckets = plan_buckets(&lens, self.bucket_elems);
            let largest = buckets.iter().map(|b| b.len).max().unwrap_or(0);
            self.staging.resize(largest, 0.0);
            self.plan = Some((lens, buckets));
        }
        let (_, buckets) = self.plan.as_ref().expect("planned above");
        let inv = 1.0 / size as f32;
        for b in buckets {
            let host = &mut self.staging[..b.len];
            for &(i, at) in &b.members {
                let g = &grads[i];
                backend.download(g.grad, &mut host[at..at + g.len])?;
            }
            self.comm.all_reduce_sum_f32(host)?;
            host.iter_mut().for_each(|v| *v *= inv);
            for &(i, at) in &b.members {
                let g = &mut grads[i];
                backend.write(g.grad, &host[at..at + g.len])?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    #[test]
    fn buckets_fuse_from_the_last_gradient() {
        let b = plan_buckets(&[3, 4, 2, 10, 1], 6);
        let members: Vec<Vec<usize>> = b
            .iter()
            .map(|b| b.members.iter().map(|m| m.0).collect())
            .collect();
        assert_eq!(members, vec![vec![4], vec![3], vec![2, 1], vec![0]]);
        assert_eq!(b[2].members, vec![(2, 0), (1, 2)]);
        assert_eq!(b.iter().map(|b| b.len).sum::<usize>(), 20);
        assert!(plan_buckets(&[], 6).is_empty());
        assert_eq!(plan_buckets(&[1, 1, 1], 100).len(), 1);
    }

    #[test]
    fn bucket_caps_are_mib_as_ddp_bucket_cap_mb() {
        assert_eq!(parse_bucket_cap_mb("25").unwrap(), DEFAULT_BUCKET_BYTES);
        assert_eq!(parse_bucket_cap_mb(" 0.5 ").unwrap(), 1 << 19);
        for bad in ["0", "-1", "NaN", "inf", "x", "", "1e-7", "2e6"] {
            let e = parse_bucket_cap_mb(bad).unwrap_err().to_string();
            assert!(e.contains(ENV_BUCKET_CAP_MB), "{bad}: {e}");
        }
    }

    #[test]
    fn one_rank_leaves_gradients_alone() {
        let be = CpuBackend::new(1).unwrap();
        let mut r = HostStagedReducer::new(Arc::new(super::super::SingleProcess), 8).unwrap();
        let mut g = vec![1.0f32, 2.0, 3.0];
        let mut grads = [GradBuffer::<CpuBackend> {
            name: "w",
            grad: &mut g,
            len: 3,
        }];
        r.all_reduce_mean(&be, &mut grads).unwrap();
        assert_eq!(g, [1.0, 2.0, 3.0]);
        assert!(HostStagedReducer::new(Arc::new(super::super::SingleProcess), 3).is_err());
    }

    /// A fake two-rank communicator whose peer holds fixed values: checks the staging
    /// (offsets, lengths, the 1/size scaling) without MPI.
    struct FakePeer(Vec<f32>, std::sync::Mutex<usize>);

    impl Communicator for FakePeer {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            2
        }
        fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
            let mut at = self.1.lock().unwrap();
            for v in buf.iter_mut() {
                *v += self.0[*at];
                *at += 1;
            }
            Ok(())
        }
        fn all_reduce_sum_f64(&self, _buf: &mut [f64]) -> Result<()> {
            unreachable!()
        }
        fn broadcast_f32(&self, _buf: &mut [f32], _root: usize) -> Result<()> {
            unreachable!()
        }
        fn broadcast_bytes(&self, _buf: &mut [u8], _root: usize) -> Result<()> {
            unreachable!()
        }
        fn barrier(&self) -> Result<()> {
            Ok(())
        }
        fn abort(&self, _code: i32) -> ! {
            unreachable!()
        }
    }

    #[test]
    fn two_ranks_average_every_value() {
        let be = CpuBackend::new(1).unwrap();
        // Buckets of 4 values: [c] then [b, a] (reverse order); the peer's values follow
        // that order.
        let peer = vec![10.0f32, 20.0, 30.0, 1.0, 2.0, 3.0];
        let comm = Arc::new(FakePeer(peer, std::sync::Mutex::new(0)));
        let mut r = HostStagedReducer::new(comm, 16).unwrap();
        // Buffers longer than the gradients: the tails stay untouched.
        let (mut a, mut b, mut c) = (vec![1.0f32, 9.0], vec![2.0f32, 4.0, 9.0], vec![0.0; 3]);
        c[..3].copy_from_slice(&[4.0, 6.0, 8.0]);
        let mut grads = [
            GradBuffer::<CpuBackend> {
                name: "a",
                grad: &mut a,
                len: 1,
            },
            GradBuffer {
                name: "b",
                grad: &mut b,
                len: 2,
            },
            GradBuffer {
                name: "c",
                grad: &mut c,
                len: 3,
            },
        ];
        r.all_reduce_mean(&be, &mut grads).unwrap();
        assert_eq!(c, [7.0, 13.0, 19.0]);
        assert_eq!(b, [1.5, 3.0, 9.0]);
        assert_eq!(a, [2.0, 9.0]);
        assert_eq!(r.buckets_for(&[1, 2, 3]), 2);
    }
}
