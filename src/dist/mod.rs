//! Data-parallel training: who this process is in the job (from the launcher's variables,
//! [`init`]), the collectives the trainer needs ([`Communicator`]) and the gradient all-reduce
//! ([`GradientReducer`]).
//!
//! MindCV trains its recipes on 8 devices with MindSpore's `data_parallel` mode and
//! `gradients_mean=True`: every device runs the whole network on its own shard of each epoch,
//! the gradients are summed over the devices and divided by their number, and every device
//! applies the same update. senet does the same on an existing communication engine, never a
//! home-made one:
//!
//! - **CPU: MPI** through the `mpi` crate (rsmpi) and the system's Open MPI, behind the cargo
//!   feature `mpi` (`MpiCommunicator`; without the feature, [`init`] explains how to build
//!   with it). Processes are started by `mpirun`, which also ends the job when one of them dies.
//! - **Ascend: HCCL**, in two places: a `Communicator` over an HCCL communicator
//!   (initialised from the rank table, `HcclCommInitClusterInfo(RANK_TABLE_FILE, RANK_ID)`, or,
//!   under mpirun, from a root info that rank 0 makes with `HcclGetRootInfo` and sends to the
//!   others with [`Communicator::broadcast_bytes`] before `HcclCommInitRootInfo`), used for the
//!   small host collectives of a rank-table job; and a [`GradientReducer`] for the Ascend
//!   backend ([`HcclReducer`]) that all-reduces the gradient buffers where they are, in
//!   fused device buckets, as `HcclAllReduce` calls on the backend's stream, returned by the
//!   Ascend [`crate::engine::device::BackendFactory::gradient_reducer`].
//!
//! Without a launcher, [`SingleProcess`] (rank 0 of 1, every collective a no-op) keeps the
//! single-process path free of any MPI dependency.
pub(crate) mod hccl;
pub(crate) mod launch;
#[cfg(feature = "mpi")]
mod mpi;
mod reducer;

#[cfg(feature = "mpi")]
pub use self::mpi::{MpiCommunicator, EXIT_COLLECTIVE_TIMEOUT};
pub use hccl::{HcclCommunicator, HcclReducer};
pub use reducer::{
    bucket_bytes, GradBuffer, GradientReducer, HostStagedReducer, DEFAULT_BUCKET_BYTES,
    ENV_BUCKET_CAP_MB,
};

use crate::{Error, Result};
use half::f16;
use std::sync::Arc;

/// The collectives of a data-parallel job, on host memory, over the processes of the job
/// (ranks `0..size()`).
///
/// Every rank must make the same calls in the same order with the same lengths (the usual MPI
/// rule); a rank that calls something else, or stops calling, makes the others wait. Errors:
/// [`Error::Invalid`] for a bad argument (a root outside `0..size()`); a failure of the
/// engine itself normally ends the whole job (MPI's default error handler aborts).
pub trait Communicator: Send + Sync {
    /// Short name for logs: `single`, `mpi`.
    fn name(&self) -> &'static str;

    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;

    /// Number of processes in the job (1 without a launcher).
    fn size(&self) -> usize;

    /// Element-wise sum over the ranks, in place: afterwards every rank holds the same sums
    /// (MPI `Allreduce` with `MPI_SUM`). Every rank passes the same length.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()>;

    /// [`Communicator::all_reduce_sum_f32`] in f64 (metrics: loss sums and hit counts, exact for
    /// integers below 2^53).
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;

    /// [`Communicator::all_reduce_sum_f32`] on half-precision values. MPI has no half type:
    /// this default widens to f32, sums in f32 and rounds each result to f16 once (at least as
    /// accurate as a sum in f16). A device communicator (HCCL) sums f16 natively instead.
    fn all_reduce_sum_f16(&self, buf: &mut [f16]) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        let mut wide: Vec<f32> = buf.iter().map(|v| v.to_f32()).collect();
        self.all_reduce_sum_f32(&mut wide)?;
        for (dst, v) in buf.iter_mut().zip(wide) {
            *dst = f16::from_f32(v);
        }
        Ok(())
    }

    /// Copies rank `root`'s `buf` into every rank's `buf` (MPI `Bcast`). Errors: `root >= size()`.
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()>;

    /// [`Communicator::broadcast_f32`] on bytes (e.g. HCCL's root info, agreement checks).
    fn broadcast_bytes(&self, buf: &mut [u8], root: usize) -> Result<()>;

    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;

    /// Ends this process and, through the launcher, the whole job with exit code `code` (MPI
    /// `Abort`). Used when one rank fails: returning an error would leave the other ranks
    /// waiting for it in their next collective.
    fn abort(&self, code: i32) -> !;

    /// The concrete communicator, for a backend that works with its own kind directly (the
    /// Ascend reducer finds the HCCL communicator this way). None by default.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

impl std::fmt::Debug for dyn Communicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Communicator({}, rank {} of {})",
            self.name(),
            self.rank(),
            self.size()
        )
    }
}

/// Checks a broadcast or reduction root against the job size.
pub(crate) fn check_root(root: usize, size: usize) -> Result<()> {
    if root >= size {
        return Err(Error::Invalid(format!(
            "collective root {root} is not a rank of this job of {size} process(es)"
        )));
    }
    Ok(())
}

/// The one process of a run without a launcher: rank 0 of 1. Reductions and broadcasts leave
/// the buffers as they are; [`Communicator::abort`] exits the process.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn name(&self) -> &'static str {
        "single"
    }
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum_f32(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast_f32(&self, _buf: &mut [f32], root: usize) -> Result<()> {
        check_root(root, 1)
    }
    fn broadcast_bytes(&self, _buf: &mut [u8], root: usize) -> Result<()> {
        check_root(root, 1)
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// The communicator of this process for a run whose recipe says `distribute`, from the launch
/// environment (the launcher's variables):
///
/// - `distribute` false: [`SingleProcess`]. Error if a launcher started several processes
///   (each would train on the whole data set alone and write the same files).
/// - `distribute` true under `mpirun` (Open MPI variables) or a PMI launcher: an
///   `MpiCommunicator` over `MPI_COMM_WORLD` (MPI is initialised here and finalised when the
///   last reference is dropped, so create it once per process and keep it for the whole job).
///   Errors: the binary was built without the `mpi` feature (the message says how to build it);
///   MPI's world differs from what the launcher announced (a binary built against another MPI).
/// - `distribute` true with a rank table (`RANK_TABLE_FILE`, `RANK_ID`, `RANK_SIZE`,
///   `DEVICE_ID`): the table is read and validated, and an [`HcclCommunicator`] joins it
///   on the rank's device (`HcclCommInitClusterInfo`). Errors: CANN or HCCL unavailable.
/// - `distribute` true without a launcher: an error showing the `mpirun` command to use, built
///   from this process's own command line (MindCV fails obscurely there, issues #329 and #480).
///
/// Launch-variable errors name the variable and its value.
pub fn init(distribute: bool) -> Result<Arc<dyn Communicator>> {
    let info = launch::detect()?;
    let args: Vec<String> = std::env::args().collect();
    init_with(distribute, &info, &args)
}

/// [`init`] with the launch information and the command line given (the command line only
/// feeds the messages).
pub(crate) fn init_with(
    distribute: bool,
    info: &launch::LaunchInfo,
    args: &[String],
) -> Result<Arc<dyn Communicator>> {
    use launch::Launcher;
    if !distribute {
        if info.size > 1 {
            return Err(Error::Config(format!(
                "distribute is False, but {} started this process as rank {} of {}: every rank \
                 would train on the whole data set and write the same checkpoints. Pass \
                 --distribute (recipe key distribute: True) for data-parallel training, or start \
                 one process",
                info.launcher.describe(),
                info.rank,
                info.size
            )));
        }
        return Ok(Arc::new(SingleProcess));
    }
    match &info.launcher {
        Launcher::None => Err(launch::not_launched_error(args)),
        Launcher::OpenMpi | Launcher::Pmi => mpi_world(info, args),
        Launcher::RankTable => {
            let table = info
                .rank_table
                .as_ref()
                .ok_or_else(|| Error::Config("RANK_TABLE_FILE was detected but not read".into()))?;
            let device = info.device_id.ok_or_else(|| {
                Error::Config(format!(
                    "rank {} of the rank table {}: no DEVICE_ID and no device_id for this rank",
                    info.rank,
                    table.path.display()
                ))
            })?;
            Ok(Arc::new(hccl::HcclCommunicator::from_rank_table(
                device as i32,
                &table.path,
                info.rank,
            )?))
        }
    }
}

#[cfg(feature = "mpi")]
fn mpi_world(info: &launch::LaunchInfo, _args: &[String]) -> Result<Arc<dyn Communicator>> {
    let comm = MpiCommunicator::init(launch::timeout_from_env()?)?;
    if comm.size() != info.size || comm.rank() != info.rank {
        return Err(Error::Config(format!(
            "{} announced rank {} of {}, but MPI reports rank {} of {}: this senet was built \
             against another MPI than the launcher's (use the mpirun of the MPI senet was built \
             with: {})",
            info.launcher.describe(),
            info.rank,
            info.size,
            comm.rank(),
            comm.size(),
            MpiCommunicator::library_version()
        )));
    }
    Ok(Arc::new(comm))
}

#[cfg(not(feature = "mpi"))]
fn mpi_world(info: &launch::LaunchInfo, _args: &[String]) -> Result<Arc<dyn Communicator>> {
    Err(Error::Config(format!(
        "distribute: True under {} (rank {} of {}), but this senet was built without MPI \
         support. Rebuild it with the `mpi` feature: `cargo build --release --features mpi` \
         (needs `apt-get install libopenmpi-dev openmpi-bin libclang-dev`)",
        info.launcher.describe(),
        info.rank,
        info.size
    )))
}

/// Rank 0's `value` and the number of ranks whose `value` differs from it (the same on
/// every rank).
fn compare_with_root(comm: &dyn Communicator, value: u64) -> Result<(u64, usize)> {
    let mut root = value.to_le_bytes();
    comm.broadcast_bytes(&mut root, 0)?;
    let root = u64::from_le_bytes(root);
    let mut differ = [(root != value) as u8 as f64];
    comm.all_reduce_sum_f64(&mut differ)?;
    Ok((root, differ[0] as usize))
}

/// Checks that every rank has the same `value` of `what` (e.g. a count: ranks that disagree
/// would wait for each other forever). Rank 0's value is broadcast, every rank compares, and
/// the number of disagreeing ranks is summed, so all ranks return the same verdict.
/// Errors: [`Error::Invalid`] naming `what`, rank 0's value and this rank's.
pub fn agree(comm: &dyn Communicator, what: &str, value: u64) -> Result<()> {
    if comm.size() == 1 {
        return Ok(());
    }
    match compare_with_root(comm, value)? {
        (_, 0) => Ok(()),
        (root, n) => Err(Error::Invalid(format!(
            "the ranks of this job disagree on {what}: rank 0 has {root}, rank {} has {value} \
             ({n} rank(s) differ from rank 0): every rank needs the same recipe, data and \
             checkpoint",
            comm.rank()
        ))),
    }
}

/// [`agree`] on a description (compared through its [`fingerprint`]): the error shows this
/// rank's `description`, so each rank's message tells what it has.
pub fn agree_on(comm: &dyn Communicator, what: &str, description: &str) -> Result<()> {
    if comm.size() == 1 {
        return Ok(());
    }
    match compare_with_root(comm, fingerprint(description))? {
        (_, 0) => Ok(()),
        (_, n) => Err(Error::Invalid(format!(
            "the ranks of this job disagree on {what} ({n} rank(s) differ from rank 0); rank {} \
             has: {description}. Every rank needs the same recipe, data and checkpoint",
            comm.rank()
        ))),
    }
}

/// This machine's name (`/proc/sys/kernel/hostname`, else `HOSTNAME`, else `?`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// Checks that no two ranks of the job drive the same accelerator `device` of one machine
/// (e.g. `--device_id 3` or an exported `DEVICE_ID` given to every rank): every rank's
/// (host, device) is broadcast in turn, and every rank reaches the same verdict. Also, in a
/// rank-table job, that this rank trains on the device its HCCL communicator was made on.
/// Errors: [`Error::Config`] naming the ranks and the device.
pub fn check_distinct_devices(comm: &dyn Communicator, device: i32) -> Result<()> {
    if let Some(h) = hccl::hccl_of(comm) {
        if h.device_id() != device {
            return Err(Error::Config(format!(
                "rank {} trains on device {device}, but the rank table puts it on device {} \
                 (drop --device_id, or make it the table's)",
                comm.rank(),
                h.device_id()
            )));
        }
    }
    if comm.size() == 1 {
        return Ok(());
    }
    const LEN: usize = 256;
    let me = format!("{}\t{device}", host_name());
    let mut seen: Vec<String> = Vec::with_capacity(comm.size());
    for root in 0..comm.size() {
        let mut buf = [0u8; LEN];
        if root == comm.rank() {
            let b = me.as_bytes();
            buf[..b.len().min(LEN)].copy_from_slice(&b[..b.len().min(LEN)]);
        }
        comm.broadcast_bytes(&mut buf, root)?;
        let end = buf.iter().position(|b| *b == 0).unwrap_or(LEN);
        seen.push(String::from_utf8_lossy(&buf[..end]).into_owned());
    }
    for (i, a) in seen.iter().enumerate() {
        if let Some(j) = seen[i + 1..].iter().position(|b| b == a) {
            let (host, dev) = a.split_once('\t').unwrap_or((a, "?"));
            return Err(Error::Config(format!(
                "ranks {i} and {} both use device {dev} of {host}: give each rank its own \
                 device (under mpirun each rank takes its local rank unless --device_id or \
                 DEVICE_ID says otherwise)",
                i + 1 + j
            )));
        }
    }
    Ok(())
}

/// 64-bit FNV-1a hash of `text`: the fingerprint [`agree_on`] compares.
pub fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_process_is_rank_0_of_1() {
        let c = SingleProcess;
        assert_eq!((c.rank(), c.size()), (0, 1));
        let mut v = [1.0f32, 2.0];
        c.all_reduce_sum_f32(&mut v).unwrap();
        assert_eq!(v, [1.0, 2.0]);
        let mut h = [f16::from_f32(1.5)];
        c.all_reduce_sum_f16(&mut h).unwrap();
        assert_eq!(h[0].to_f32(), 1.5);
        assert!(c.broadcast_f32(&mut v, 0).is_ok());
        let e = c.broadcast_f32(&mut v, 1).unwrap_err().to_string();
        assert!(e.contains("root 1"), "{e}");
        agree(&c, "anything", 7).unwrap();
        agree_on(&c, "anything", "text").unwrap();
        let d: &dyn Communicator = &c;
        assert_eq!(format!("{d:?}"), "Communicator(single, rank 0 of 1)");
    }

    #[test]
    fn fingerprints_differ() {
        assert_eq!(fingerprint("a"), fingerprint("a"));
        assert_ne!(fingerprint("spe=10"), fingerprint("spe=11"));
    }
}
