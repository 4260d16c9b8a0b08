//! [`Communicator`] over MPI's `MPI_COMM_WORLD`, through the `mpi` crate (rsmpi) and the MPI
//! library senet was built against (Debian's Open MPI: `libopenmpi-dev`). Only with the cargo
//! feature `mpi`.
use super::{check_root, Communicator};
use crate::{Error, Result};
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::Universe;
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::Threading;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Exit status of a process whose collective waited longer than `SENET_DIST_TIMEOUT`
/// (124, as `timeout(1)`).
pub const EXIT_COLLECTIVE_TIMEOUT: i32 = 124;

/// Values per MPI call: MPI counts are C ints.
const MAX_COUNT: usize = 1 << 30;

/// What the trainer thread is doing in MPI, for the watchdog.
struct Watch {
    /// Milliseconds since `origin` (+1) when the current collective started; 0 = none.
    since_ms: AtomicU64,
    /// 1 all-reduce, 2 broadcast, 3 barrier.
    op: AtomicU8,
    /// Values in the current collective.
    len: AtomicUsize,
    stop: AtomicBool,
    origin: Instant,
}

impl Watch {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64 + 1
    }
}

/// Marks a collective for the watchdog while alive.
struct InCollective<'a>(Option<&'a Watch>);

impl<'a> InCollective<'a> {
    fn start(watch: Option<&'a Watch>, op: u8, len: usize) -> InCollective<'a> {
        if let Some(w) = watch {
            w.op.store(op, Ordering::Relaxed);
            w.len.store(len, Ordering::Relaxed);
            w.since_ms.store(w.now_ms(), Ordering::Release);
        }
        InCollective(watch)
    }
}

impl Drop for InCollective<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.0 {
            w.since_ms.store(0, Ordering::Release);
        }
    }
}

/// The MPI state, used by one thread at a time.
struct State {
    world: SimpleCommunicator,
    scratch_f32: Vec<f32>,
    scratch_f64: Vec<f64>,
    /// Dropped last: finalises MPI.
    universe: Option<Universe>,
}

/// `MPI_COMM_WORLD` of a job started by `mpirun` (or another launcher of the same MPI).
///
/// MPI is initialised by [`MpiCommunicator::init`] (thread level `MPI_THREAD_SERIALIZED`
/// requested; calls are serialised by a mutex) and finalised when the communicator is dropped:
/// there is one per process. Reductions are MPI's `MPI_SUM` (Open MPI reduces in a fixed order
/// for a given job size, so runs are reproducible).
///
/// With a timeout (`SENET_DIST_TIMEOUT`, default 30 minutes), a watchdog thread ends this
/// process (status [`EXIT_COLLECTIVE_TIMEOUT`], after a message naming the collective) when one
/// collective has waited longer than that; `mpirun` then ends the others. A rank that dies is
/// noticed by `mpirun` itself, which ends the job at once.
pub struct MpiCommunicator {
    state: Mutex<State>,
    rank: usize,
    size: usize,
    watch: Option<(Arc<Watch>, Duration)>,
}

// SAFETY: every MPI call goes through `state`'s mutex (one thread at a time, as
// MPI_THREAD_SERIALIZED allows), except `abort`, which MPI allows from any thread in practice
// and which ends the process.
unsafe impl Send for MpiCommunicator {}
// SAFETY: as for Send.
unsafe impl Sync for MpiCommunicator {}

impl MpiCommunicator {
    /// Initialises MPI and wraps `MPI_COMM_WORLD`; `timeout` bounds the wait of one collective
    /// (None: no limit). Errors: [`Error::Invalid`] when MPI was already initialised in this
    /// process (make one communicator per process and share it) or provides no thread support
    /// at all.
    pub fn init(timeout: Option<Duration>) -> Result<MpiCommunicator> {
        let (universe, level) =
            mpi::initialize_with_threading(Threading::Serialized).ok_or_else(|| {
                Error::Invalid(
                    "MPI is already initialised in this process: create one communicator \
                     (senet::dist::init) and pass it to every job"
                        .into(),
                )
            })?;
        if level < Threading::Funneled {
            return Err(Error::Invalid(format!(
                "the MPI library provides thread level {level:?}; senet needs at least \
                 MPI_THREAD_FUNNELED ({})",
                Self::library_version()
            )));
        }
        let world = universe.world();
        let rank = world.rank() as usize;
        let size = world.size() as usize;
        let watch = timeout.map(|t| {
            let w = Arc::new(Watch {
                since_ms: AtomicU64::new(0),
                op: AtomicU8::new(0),
                len: AtomicUsize::new(0),
                stop: AtomicBool::new(false),
                origin: Instant::now(),
            });
            spawn_watchdog(Arc::clone(&w), t, rank, size);
            (w, t)
        });
        Ok(MpiCommunicator {
            state: Mutex::new(State {
                world,
                scratch_f32: Vec::new(),
                scratch_f64: Vec::new(),
                universe: Some(universe),
            }),
            rank,
            size,
            watch,
        })
    }

    /// The MPI library's version line (`MPI_Get_library_version`), e.g. `Open MPI v4.1.4, ...`.
    pub fn library_version() -> String {
        mpi::environment::library_version()
            .ok()
            .and_then(|v| v.lines().next().map(|l| l.trim().to_string()))
            .unwrap_or_else(|| "unknown MPI".to_string())
    }

    /// The collective timeout in force, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.watch.as_ref().map(|(_, t)| *t)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn watch(&self) -> Option<&Watch> {
        self.watch.as_ref().map(|(w, _)| &**w)
    }
}

fn spawn_watchdog(w: Arc<Watch>, timeout: Duration, rank: usize, size: usize) {
    let tick = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let limit_ms = timeout.as_millis() as u64;
    std::thread::Builder::new()
        .name("senet-dist-watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(tick);
            if w.stop.load(Ordering::Relaxed) {
                return;
            }
            let since = w.since_ms.load(Ordering::Acquire);
            if since != 0 && w.now_ms().saturating_sub(since) > limit_ms {
                let op = match w.op.load(Ordering::Relaxed) {
                    1 => "an all-reduce",
                    2 => "a broadcast",
                    _ => "a barrier",
                };
                eprintln!(
                    "senet rank {rank} of {size}: {op} of {} value(s) has waited more than {:.0} s \
                     for the other ranks (SENET_DIST_TIMEOUT): a rank has died or is stuck; \
                     exiting so that the launcher ends the job",
                    w.len.load(Ordering::Relaxed),
                    timeout.as_secs_f64()
                );
                // Without MPI_Finalize or atexit handlers: another thread is inside MPI.
                #[cfg(unix)]
                // SAFETY: _exit only ends the process.
                unsafe {
                    libc::_exit(EXIT_COLLECTIVE_TIMEOUT)
                };
                #[cfg(not(unix))]
                std::process::exit(EXIT_COLLECTIVE_TIMEOUT);
            }
        })
        .expect("spawning the watchdog thread");
}

impl Drop for MpiCommunicator {
    fn drop(&mut self) {
        if let Some((w, _)) = &self.watch {
            w.stop.store(true, Ordering::Relaxed);
        }
        let mut st = self.lock();
        // Finalise after the world handle is gone.
        let universe = st.universe.take();
        drop(st);
        drop(universe);
    }
}

impl Communicator for MpiCommunicator {
    fn name(&self) -> &'static str {
        "mpi"
    }

    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        if self.size == 1 || buf.is_empty() {
            return Ok(());
        }
        let _w = InCollective::start(self.watch(), 1, buf.len());
        let st = &mut *self.lock();
        for chunk in buf.chunks_mut(MAX_COUNT) {
            st.scratch_f32.clear();
            st.scratch_f32.extend_from_slice(chunk);
            st.world
                .all_reduce_into(&st.scratch_f32[..], chunk, SystemOperation::sum());
        }
        Ok(())
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        if self.size == 1 || buf.is_empty() {
            return Ok(());
        }
        let _w = InCollective::start(self.watch(), 1, buf.len());
        let st = &mut *self.lock();
        for chunk in buf.chunks_mut(MAX_COUNT) {
            st.scratch_f64.clear();
            st.scratch_f64.extend_from_slice(chunk);
            st.world
                .all_reduce_into(&st.scratch_f64[..], chunk, SystemOperation::sum());
        }
        Ok(())
    }

    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        check_root(root, self.size)?;
        if self.size == 1 || buf.is_empty() {
            return Ok(());
        }
        let _w = InCollective::start(self.watch(), 2, buf.len());
        let st = self.lock();
        let root = st.world.process_at_rank(root as i32);
        for chunk in buf.chunks_mut(MAX_COUNT) {
            root.broadcast_into(chunk);
        }
        Ok(())
    }

    fn broadcast_bytes(&self, buf: &mut [u8], root: usize) -> Result<()> {
        check_root(root, self.size)?;
        if self.size == 1 || buf.is_empty() {
            return Ok(());
        }
        let _w = InCollective::start(self.watch(), 2, buf.len());
        let st = self.lock();
        let root = st.world.process_at_rank(root as i32);
        for chunk in buf.chunks_mut(MAX_COUNT) {
            root.broadcast_into(chunk);
        }
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        let _w = InCollective::start(self.watch(), 3, 0);
        self.lock().world.barrier();
        Ok(())
    }

    fn abort(&self, code: i32) -> ! {
        SimpleCommunicator::world().abort(code)
    }
}
