//! Cross-stream ordering: which queued tasks the device may run concurrently, and the refusal
//! of a task that touches memory an unordered task of another stream touches (a data race).
//!
//! The emulator runs a stream's work lazily, when something synchronises it, so a missing
//! `aclrtStreamWaitEvent` would go unnoticed: the reader usually runs after the writer anyway.
//! On a device the streams run concurrently, and the only orderings are (`acl_rt.h` and the
//! ACL runtime guide, `aclrtRecordEvent` / `aclrtStreamWaitEvent` / `aclrtSynchronize*`):
//! - tasks of one stream run in the order they were queued;
//! - `aclrtStreamWaitEvent(s, e)` orders every later task of `s` after the work before `e`'s
//!   most recent `aclrtRecordEvent` (and, transitively, after what that work was ordered after);
//! - a host synchronise (`aclrtSynchronizeStream`, `aclrtSynchronizeEvent`,
//!   `aclrtSynchronizeDevice`, destroying a stream) orders every task queued afterwards, on any
//!   stream, after the work it waited for.
//!
//! This module tracks that relation with vector clocks (per stream: the last task of each other
//! stream known to finish before its next task) and, per allocation, the last queued task that
//! used it. A new task using an allocation whose last user is another stream's task it is not
//! ordered after is refused at the call that queues it, naming both. The emulator does not know
//! which arguments a task only reads, so every use counts as a write: two streams reading one
//! buffer concurrently are refused too (senet never does that; a program that does must order
//! them to pass here).
use std::collections::HashMap;

/// The last task of each stream known to come before some point: stream id -> sequence number.
pub type Clock = HashMap<usize, u64>;

fn merge(into: &mut Clock, from: &Clock) {
    for (&s, &q) in from {
        let e = into.entry(s).or_insert(0);
        *e = (*e).max(q);
    }
}

/// A queued task's use of an allocation.
#[derive(Debug, Clone)]
struct Access {
    stream: usize,
    seq: u64,
    what: String,
}

/// The ordering state (behind the emulator's global lock).
#[derive(Default)]
pub struct Order {
    /// Per stream: what its next task is ordered after (its own earlier tasks implied).
    streams: HashMap<usize, Clock>,
    /// What host synchronisation has shown to be finished.
    host: Clock,
    /// Per allocation start: the last queued task that used it.
    last: HashMap<usize, Access>,
}

impl Order {
    fn ordered(&self, stream: usize, a: &Access) -> bool {
        let known = |c: &Clock| c.get(&a.stream).is_some_and(|&q| q >= a.seq);
        a.stream == stream || known(&self.host) || self.streams.get(&stream).is_some_and(known)
    }

    /// Checks that a task of `stream` using the allocations `uses` is ordered after every
    /// earlier task of another stream that used one of them. `Err` describes the race.
    pub fn check(&self, stream: usize, what: &str, uses: &[usize]) -> Result<(), String> {
        for start in uses {
            if let Some(a) = self.last.get(start) {
                if !self.ordered(stream, a) {
                    return Err(format!(
                        "data race: {what} on stream {stream:#x} uses the device allocation at {start:#x}, which {} (task {} of stream {:#x}) also uses, and nothing orders the two (no aclrtStreamWaitEvent on an event recorded after it, no synchronise of its stream since) [streams run concurrently on the device; acl_rt.h aclrtStreamWaitEvent / aclrtRecordEvent]",
                        a.what, a.seq, a.stream
                    ));
                }
            }
        }
        Ok(())
    }

    /// Records that task `seq` of `stream` (queued by `what`) uses `uses`.
    pub fn note(&mut self, stream: usize, seq: u64, what: &str, uses: &[usize]) {
        for &start in uses {
            self.last.insert(
                start,
                Access {
                    stream,
                    seq,
                    what: what.to_string(),
                },
            );
        }
    }

    /// What a marker queued as task `seq` of `stream` is ordered after (for an event record).
    pub fn snapshot(&self, stream: usize, seq: u64) -> Clock {
        let mut c = self.streams.get(&stream).cloned().unwrap_or_default();
        c.insert(stream, seq);
        c
    }

    /// `stream` waits for a record whose snapshot is `clock`.
    pub fn wait(&mut self, stream: usize, clock: &Clock) {
        merge(self.streams.entry(stream).or_default(), clock);
    }

    /// The host waited for the work `clock` describes.
    pub fn host_waited(&mut self, clock: &Clock) {
        merge(&mut self.host, clock);
    }

    /// The host waited for every task queued so far on `stream` (the last being `seq`).
    pub fn host_waited_stream(&mut self, stream: usize, seq: u64) {
        let c = self.snapshot(stream, seq);
        self.host_waited(&c);
    }

    /// Forgets an allocation (freed).
    pub fn forget(&mut self, start: usize) {
        self.last.remove(&start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_and_host_syncs_order_tasks() {
        let mut o = Order::default();
        o.note(1, 5, "write", &[100]);
        assert!(o.check(1, "same stream", &[100]).is_ok());
        let e = o.check(2, "reader", &[100]).unwrap_err();
        assert!(e.contains("data race") && e.contains("write"), "{e}");
        // A record on stream 1 before the write does not order it.
        let early = o.snapshot(1, 4);
        o.wait(2, &early);
        assert!(o.check(2, "reader", &[100]).is_err());
        // One after it does, transitively for a third stream too.
        let late = o.snapshot(1, 6);
        o.wait(2, &late);
        assert!(o.check(2, "reader", &[100]).is_ok());
        o.note(2, 1, "reader", &[100]);
        assert!(o.check(3, "third", &[100]).is_err());
        let via2 = o.snapshot(2, 2);
        o.wait(3, &via2);
        assert!(o.check(3, "third", &[100]).is_ok());
        // A host synchronise orders everything queued after it.
        o.note(3, 9, "third", &[200]);
        assert!(o.check(1, "later", &[200]).is_err());
        o.host_waited_stream(3, 9);
        assert!(o.check(1, "later", &[200]).is_ok());
        o.forget(200);
        assert!(!o.last.contains_key(&200));
    }
}
