//! Streams (FIFO queues of deferred tasks) and events (markers in those queues).
//!
//! Asynchronous work is queued, not run: a stream's tasks run, in order, only when someone
//! synchronises it (`aclrtSynchronizeStream`, `aclrtSynchronizeDevice`, `aclrtSynchronizeEvent`,
//! a synchronous memcpy/memset, a waiting stream reaching its wait, destroying the stream).
//! Results read before that are stale, as they may be on hardware.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The body of a queued task; `Err` is reported by the next synchronisation. Shared, so a
/// captured task ([`crate::capture`]) can be queued again at each replay.
pub type TaskFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// One queued piece of work.
pub struct Task {
    /// Position in the stream (1, 2, ...).
    pub seq: u64,
    /// Which API call queued it, for error messages.
    pub what: String,
    /// Starts of the allocations it reads or writes (kept busy until it runs).
    pub uses: Vec<usize>,
    /// The work.
    pub run: TaskFn,
}

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    next_seq: u64,
    done_seq: u64,
    errors: Vec<String>,
}

/// A stream: its device and context, and its queue.
pub struct Stream {
    /// Handle value.
    pub id: usize,
    /// Device the stream belongs to.
    pub device: i32,
    /// Context it was created in.
    pub context: usize,
    queue: Mutex<Queue>,
    /// Held while a thread runs this stream's tasks, so tasks never run concurrently.
    runner: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stream {
    /// A new, empty stream.
    pub fn new(id: usize, device: i32, context: usize) -> Self {
        Stream {
            id,
            device,
            context,
            queue: Mutex::new(Queue::default()),
            runner: Mutex::new(()),
        }
    }

    /// Queues `run`; `uses` must already be counted in the memory registry. Returns the task's
    /// sequence number.
    pub fn enqueue(&self, what: String, uses: Vec<usize>, run: TaskFn) -> u64 {
        let mut q = lock(&self.queue);
        q.next_seq += 1;
        let seq = q.next_seq;
        q.tasks.push_back(Task {
            seq,
            what,
            uses,
            run,
        });
        seq
    }

    /// Sequence number of the last task queued (0 before the first).
    pub fn last_seq(&self) -> u64 {
        lock(&self.queue).next_seq
    }

    /// Number of queued tasks not yet run.
    pub fn pending(&self) -> usize {
        lock(&self.queue).tasks.len()
    }

    /// Sequence number of the last task that ran.
    pub fn done_seq(&self) -> u64 {
        lock(&self.queue).done_seq
    }

    /// Runs queued tasks in order up to and including sequence number `upto` (all of them for
    /// `u64::MAX`). Returns the errors of tasks that failed since the last report.
    pub fn run_until(&self, upto: u64) -> Vec<String> {
        if self.done_seq() >= upto && upto != u64::MAX {
            return Vec::new();
        }
        let _runner = lock(&self.runner);
        loop {
            let task = {
                let mut q = lock(&self.queue);
                match q.tasks.front() {
                    Some(t) if t.seq <= upto => q.tasks.pop_front(),
                    _ => None,
                }
            };
            let Some(task) = task else { break };
            let Task {
                seq,
                what,
                uses,
                run,
            } = task;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run()))
                .unwrap_or_else(|_| Err("the task panicked".to_string()));
            crate::state::with_emu(|e| e.memory.drop_uses(&uses));
            let mut q = lock(&self.queue);
            q.done_seq = seq;
            if let Err(msg) = result {
                q.errors
                    .push(format!("{what} failed when the stream ran it: {msg}"));
            }
        }
        std::mem::take(&mut lock(&self.queue).errors)
    }

    /// Drops every queued task without running it (aclFinalize); returns their `uses`.
    pub fn discard(&self) -> Vec<usize> {
        let mut q = lock(&self.queue);
        let tasks = std::mem::take(&mut q.tasks);
        tasks.into_iter().flat_map(|t| t.uses).collect()
    }
}

/// Where and when an event was last recorded.
#[derive(Clone)]
pub struct Record {
    /// The stream the marker was queued on.
    pub stream: Arc<Stream>,
    /// The marker's sequence number in that stream.
    pub seq: u64,
    /// When the marker ran (None while still queued).
    pub at: Arc<Mutex<Option<Instant>>>,
    /// The work the marker is ordered after ([`crate::order`]).
    pub clock: crate::order::Clock,
}

/// An event.
pub struct Event {
    /// Handle value.
    pub id: usize,
    /// Device of the context it was created in.
    pub device: i32,
    /// The most recent `aclrtRecordEvent`.
    pub last: Mutex<Option<Record>>,
}

impl Event {
    /// The most recent record, if any.
    pub fn record(&self) -> Option<Record> {
        lock(&self.last).clone()
    }

    /// Sets the most recent record.
    pub fn set_record(&self, r: Record) {
        *lock(&self.last) = Some(r);
    }
}

/// When the marker of `r` ran, if it has.
pub fn ran_at(r: &Record) -> Option<Instant> {
    *lock(&r.at)
}

/// Sets the time a marker ran.
pub fn mark(at: &Arc<Mutex<Option<Instant>>>) {
    *lock(at) = Some(Instant::now());
}
