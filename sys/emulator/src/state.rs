//! Global emulator state: initialisation, configuration, devices, contexts, streams, events,
//! memory, and each thread's current context.
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use senet_cann_sys::*;

use crate::api::{Fail, Res};
use crate::contract::{CannVersion, Product};
use crate::memory::Memory;
use crate::order::Order;
use crate::stream::{Event, Stream, TaskFn};

/// Environment variable: number of emulated devices (default 8).
pub const ENV_DEVICES: &str = "SENET_EMU_DEVICES";
/// Environment variable: SoC name `aclrtGetSocName` reports (default `Ascend910B1`).
pub const ENV_SOC: &str = "SENET_EMU_SOC";
/// Environment variable: HBM bytes per device (default 32 GiB).
pub const ENV_HBM: &str = "SENET_EMU_HBM_BYTES";
/// Environment variable: failures to inject at `aclInit` (`function:afterCalls:code[,...]`).
pub const ENV_FAIL: &str = "SENET_EMU_FAIL";
/// Environment variable: the CANN release whose contract applies (`8.0` or `9.1`, default the
/// newest the contract covers).
pub const ENV_CANN_VERSION: &str = "SENET_EMU_CANN_VERSION";

/// Where the process is in the `aclInit` / `aclFinalize` life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// `aclInit` never called.
    #[default]
    Never,
    /// Between `aclInit` and `aclFinalize`.
    Active,
    /// After `aclFinalize` (a new `aclInit` is accepted).
    Finalized,
}

/// Configuration read from the environment at `aclInit`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Number of devices.
    pub devices: u32,
    /// SoC name (leaked so `aclrtGetSocName`'s pointer stays valid).
    pub soc: &'static CString,
    /// The contract's product line of the SoC.
    pub product: Product,
    /// The CANN release emulated.
    pub version: CannVersion,
    /// HBM bytes per device.
    pub hbm: u64,
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Config, String> {
        let devices = match std::env::var(ENV_DEVICES) {
            Ok(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| format!("{ENV_DEVICES}={v:?} is not a device count in 1..=64"))?,
            Err(_) => 8,
        };
        let hbm = match std::env::var(ENV_HBM) {
            Ok(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{ENV_HBM}={v:?} is not a positive byte count"))?,
            Err(_) => 32 << 30,
        };
        let soc = std::env::var(ENV_SOC)
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "Ascend910B1".to_string());
        let soc = soc.trim();
        let product = Product::from_soc(soc).ok_or_else(|| {
            format!(
                "{ENV_SOC}={soc:?} is not a SoC the emulator knows; use one of {}",
                Product::SOC_NAMES
            )
        })?;
        let version = match std::env::var(ENV_CANN_VERSION) {
            Ok(v) if !v.trim().is_empty() => CannVersion::parse(&v).ok_or_else(|| {
                format!("{ENV_CANN_VERSION}={v:?} is not a CANN release the contract covers (8.0 or 9.1)")
            })?,
            _ => CannVersion::NEWEST,
        };
        let soc = CString::new(soc).map_err(|_| format!("{ENV_SOC} contains a NUL"))?;
        Ok(Config {
            devices,
            soc: Box::leak(Box::new(soc)),
            product,
            version,
            hbm,
        })
    }
}

/// A context: a device and the context's default stream.
pub struct Context {
    /// Device.
    pub device: i32,
    /// The stream a null `aclrtStream` means in this context.
    pub default_stream: Arc<Stream>,
}

/// Everything behind the global lock.
#[derive(Default)]
pub struct Emu {
    /// Life-cycle phase.
    pub phase: Phase,
    /// Configuration (valid while `phase == Active`).
    pub config: Option<Config>,
    /// Live contexts by handle.
    pub contexts: HashMap<usize, Context>,
    /// Per device: `aclrtSetDevice` reference count and the default context.
    pub device_refs: HashMap<i32, (u32, usize)>,
    /// Live streams by handle (default streams included).
    pub streams: HashMap<usize, Arc<Stream>>,
    /// Live events by handle.
    pub events: HashMap<usize, Arc<Event>>,
    /// Device and pinned host memory.
    pub memory: Memory,
    /// Which queued tasks are ordered after which ([`crate::order`]).
    pub order: Order,
    /// Streams being captured and model run instances ([`crate::capture`]).
    pub captures: crate::capture::Captures,
}

static EMU: Mutex<Option<Emu>> = Mutex::new(None);
static NEXT_ID: AtomicUsize = AtomicUsize::new(0x5e_0000);

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

fn lock() -> MutexGuard<'static, Option<Emu>> {
    EMU.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` with the global state locked. Never call it from inside another `with_emu`.
pub fn with_emu<R>(f: impl FnOnce(&mut Emu) -> R) -> R {
    let mut g = lock();
    f(g.get_or_insert_with(Emu::default))
}

/// A fresh handle value, never reused within the process (so stale handles are detected).
pub fn next_id() -> usize {
    NEXT_ID.fetch_add(16, Ordering::Relaxed)
}

/// The calling thread's current context handle (0 for none).
pub fn current_handle() -> usize {
    CURRENT.with(|c| c.get())
}

/// Sets the calling thread's current context.
pub fn set_current(ctx: usize) {
    CURRENT.with(|c| c.set(ctx));
}

impl Emu {
    /// Fails with `ACL_ERROR_UNINITIALIZE` unless between `aclInit` and `aclFinalize`.
    pub fn require_init(&self) -> Res<()> {
        match self.phase {
            Phase::Active => Ok(()),
            Phase::Never => Err(Fail::new(
                ACL_ERROR_UNINITIALIZE,
                "aclInit has not been called",
            )),
            Phase::Finalized => Err(Fail::new(
                ACL_ERROR_UNINITIALIZE,
                "called after aclFinalize",
            )),
        }
    }

    /// The configuration (requires `aclInit`).
    pub fn config(&self) -> Res<&Config> {
        self.require_init()?;
        Ok(self.config.as_ref().expect("config set while active"))
    }

    /// The calling thread's current context, as `(handle, context)`.
    pub fn current(&self) -> Res<(usize, &Context)> {
        self.require_init()?;
        let h = current_handle();
        match self.contexts.get(&h) {
            Some(c) => Ok((h, c)),
            None => Err(Fail::new(
                ACL_ERROR_RT_CONTEXT_NULL,
                if h == 0 {
                    "this thread has no current context: call aclrtSetDevice or aclrtSetCurrentContext first"
                } else {
                    "this thread's current context was destroyed (aclrtDestroyContext, aclrtResetDevice or aclFinalize)"
                },
            )),
        }
    }

    /// The stream a handle means: null is the current context's default stream; others must be
    /// live streams of the current context (`ACL_ERROR_RT_STREAM_CONTEXT` otherwise, contract
    /// Part D: "stream not in current context", `rt_error_codes.h:24`), not merely of its device.
    pub fn stream(&self, handle: aclrtStream) -> Res<Arc<Stream>> {
        let (cur, ctx) = self.current()?;
        if handle.is_null() {
            return Ok(ctx.default_stream.clone());
        }
        let s = self.streams.get(&(handle as usize)).ok_or_else(|| {
            Fail::new(
                ACL_ERROR_INVALID_PARAM,
                format!(
                    "stream {handle:p} is not a live stream (destroyed, or not from aclrtCreateStream)"
                ),
            )
        })?;
        if s.context != cur {
            return Err(Fail::new(
                ACL_ERROR_RT_STREAM_CONTEXT,
                format!(
                    "stream {handle:p} belongs to context {:#x} (device {}), but the current context is {cur:#x} (device {}) [contract rule: {}; source: {}]",
                    s.context,
                    s.device,
                    ctx.device,
                    crate::contract::rules::STREAM_CONTEXT.text,
                    crate::contract::rules::STREAM_CONTEXT.src
                ),
            ));
        }
        Ok(s.clone())
    }

    /// Queues `run` on `s` as the work of the call `what`, using the allocations `uses` (kept
    /// busy until it runs), after checking that it is ordered after every other stream's
    /// queued use of them ([`Order::check`]; `Err` is the race's description). Returns the
    /// task's sequence number. On a stream being captured the task is recorded instead
    /// ([`crate::capture`]; sequence number 0).
    pub fn enqueue(
        &mut self,
        s: &Stream,
        what: &str,
        uses: Vec<usize>,
        run: TaskFn,
    ) -> Result<u64, String> {
        if let Some(r) = self.captures.record(s.id, what, &uses, &run) {
            r?;
            self.memory.add_uses(&uses);
            crate::stats::trace(|| format!("{:#x}\tcaptured {what}", s.id));
            return Ok(0);
        }
        self.order.check(s.id, what, &uses)?;
        self.memory.add_uses(&uses);
        let seq = s.enqueue(what.to_string(), uses.clone(), run);
        self.order.note(s.id, seq, what, &uses);
        crate::stats::trace(|| format!("{:#x}\t{what}", s.id));
        Ok(seq)
    }

    /// Creates a context (and its default stream) on `device`.
    pub fn new_context(&mut self, device: i32) -> usize {
        let id = next_id();
        let sid = next_id();
        let stream = Arc::new(Stream::new(sid, device, id));
        self.streams.insert(sid, stream.clone());
        self.contexts.insert(
            id,
            Context {
                device,
                default_stream: stream,
            },
        );
        id
    }

    /// Streams (default ones included) of `device`.
    pub fn device_streams(&self, device: i32) -> Vec<Arc<Stream>> {
        let mut v: Vec<_> = self
            .streams
            .values()
            .filter(|s| s.device == device)
            .cloned()
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// Checks `device` is in range.
    pub fn check_device(&self, device: i32) -> Res<()> {
        let n = self.config()?.devices;
        if device < 0 || device as u32 >= n {
            return Err(Fail::new(
                ACL_ERROR_RT_INVALID_DEVICEID,
                format!("device {device} does not exist (the emulator has {n}; set {ENV_DEVICES})"),
            ));
        }
        Ok(())
    }
}

/// The host has waited for `stream`'s tasks up to `upto` (all of them for `u64::MAX`), ordered
/// after them `clock` (the event record's, or the stream's own when `None`); `call` names the
/// synchronise in the trace.
pub fn host_waited(stream: &Stream, upto: u64, clock: Option<&crate::order::Clock>, call: &str) {
    with_emu(|e| match clock {
        Some(c) => e.order.host_waited(c),
        None => {
            let seq = if upto == u64::MAX {
                stream.last_seq()
            } else {
                upto
            };
            e.order.host_waited_stream(stream.id, seq)
        }
    });
    crate::stats::trace(|| format!("host\t{call}"));
}

/// Runs every queued task of `stream`; a task failure becomes `ACL_ERROR_RT_INTERNAL_ERROR`.
pub fn sync_stream(stream: &Stream, upto: u64) -> Res<()> {
    let errors = stream.run_until(upto);
    if upto == u64::MAX {
        host_waited(stream, upto, None, "aclrtSynchronizeStream");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Fail::new(ACL_ERROR_RT_INTERNAL_ERROR, errors.join("; ")))
    }
}

/// Runs the queues of every stream of `device` until all are empty.
pub fn sync_device(device: i32) -> Res<()> {
    with_emu(|e| {
        let ids: Vec<usize> = e.device_streams(device).iter().map(|s| s.id).collect();
        crate::capture::check_unsafe(e, "aclrtSynchronizeDevice", &ids)
    })?;
    let mut errors = Vec::new();
    loop {
        let streams = with_emu(|e| e.device_streams(device));
        if streams.iter().all(|s| s.pending() == 0) {
            break;
        }
        for s in streams {
            errors.extend(s.run_until(u64::MAX));
            host_waited(&s, u64::MAX, None, "aclrtSynchronizeDevice");
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Fail::new(ACL_ERROR_RT_INTERNAL_ERROR, errors.join("; ")))
    }
}
