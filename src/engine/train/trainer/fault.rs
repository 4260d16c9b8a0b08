//! Fault injection for the tests of a failing rank of a data-parallel job.
use crate::{Error, Result};

/// What the faulty rank does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Die at once (SIGABRT, no cleanup).
    Abort,
    /// Stop making progress (sleep forever), alive.
    Hang,
}

/// A fault the tests inject into one rank, after one step.
#[derive(Debug, Clone, Copy)]
pub(super) struct FaultInjection {
    /// The global step (1-based) after which the fault strikes.
    at_step: u64,
    /// The rank it strikes.
    rank: usize,
    fault: Fault,
}

impl FaultInjection {
    /// Reads the test variables: `SENET_TEST_ABORT_AT_STEP=k` makes rank
    /// `SENET_TEST_FAULT_RANK` (default 1) abort right after its step `k`;
    /// `SENET_TEST_HANG_AT_STEP=k` makes it hang there instead. None when neither is set.
    /// Errors: values that are not integers, named.
    pub(super) fn from_env() -> Result<Option<FaultInjection>> {
        let get = |key: &str| -> Result<Option<u64>> {
            match std::env::var(key) {
                Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| {
                    Error::Config(format!("{key}='{v}' is not a non-negative integer"))
                }),
                _ => Ok(None),
            }
        };
        let (at_step, fault) = match (
            get("SENET_TEST_ABORT_AT_STEP")?,
            get("SENET_TEST_HANG_AT_STEP")?,
        ) {
            (Some(k), _) => (k, Fault::Abort),
            (None, Some(k)) => (k, Fault::Hang),
            (None, None) => return Ok(None),
        };
        let rank = get("SENET_TEST_FAULT_RANK")?.unwrap_or(1) as usize;
        Ok(Some(FaultInjection {
            at_step,
            rank,
            fault,
        }))
    }

    /// Strikes when `rank` has just run global step `step` (1-based) and it is the one chosen:
    /// aborts the process or hangs forever. Returns otherwise.
    pub(super) fn check(&self, step: u64, rank: usize) {
        if step != self.at_step || rank != self.rank {
            return;
        }
        eprintln!(
            "senet rank {rank}: fault injection at step {step}: {}",
            match self.fault {
                Fault::Abort => "aborting this process (SENET_TEST_ABORT_AT_STEP)",
                Fault::Hang => "hanging (SENET_TEST_HANG_AT_STEP)",
            }
        );
        match self.fault {
            Fault::Abort => std::process::abort(),
            Fault::Hang => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
        }
    }
}
