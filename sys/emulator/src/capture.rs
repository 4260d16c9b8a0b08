//! Stream capture into a model run instance (`aclmdlRICapture*`, `aclmdlRIExecuteAsync`,
//! `aclmdlRIDestroy`), as CANN's runtime API reference documents it ("模型运行实例管理", pages
//! aclcppdevg_03_1782-1788, 1821-1822 of CANN 8.1.RC1-9.0.0) with the programming guide's
//! "单流捕获" restrictions (runtime_doc_dev_0030); the error codes are `rt_error_codes.h`'s.
//! `docs/npu-performance.md` §6 gives the sources and what they leave open.
//!
//! - Only on Atlas A2/A3 (and the Ascend 950) with CANN 8.1 or later: the first-generation 910
//!   is marked ☓ in every version's product table, and CANN 8.0 predates the API. Elsewhere
//!   every call fails with `ACL_ERROR_RT_FEATURE_NOT_SUPPORT` (what the runtime returns there
//!   is not documented; the first-generation 910's runtime may not export the symbols at all).
//! - Between `aclmdlRICaptureBegin(stream, mode)` and `aclmdlRICaptureEnd(stream, &ri)` the work
//!   queued on `stream` is recorded, not run (it keeps its allocations busy: they may not be
//!   freed until the instance is destroyed, restriction 7). Begin on a capturing stream:
//!   `ACL_ERROR_RT_STREAM_CAPTURED`; End on one that is not: `ACL_ERROR_RT_STREAM_NOT_CAPTURED`;
//!   End from another thread than Begin's unless RELAXED: `..._STREAM_CAPTURE_WRONG_THREAD`;
//!   End of an invalidated capture: `..._STREAM_CAPTURE_INVALIDATED` (and no instance).
//! - Synchronising (a stream, an event, the device) is illegal in every mode while the thread
//!   may not make unsafe calls, and so are `aclrtMemcpy`, `aclrtMemset` and async copies whose
//!   host side is not `aclrtMallocHost` memory: they fail with
//!   `ACL_ERROR_RT_CAPTURE_MODE_NOT_SUPPORT` and invalidate the capture. Whether a thread may:
//!   its own mode (`aclmdlRICaptureThreadExchangeMode`, GLOBAL by default) RELAXED: yes; else
//!   not while it has a capture begun in GLOBAL or THREAD_LOCAL mode, nor, in GLOBAL mode, while
//!   another thread has one begun in GLOBAL mode (page 1788's three modes, which follow CUDA's
//!   stream-capture modes). Synchronising the capturing stream itself always fails.
//! - `aclrtMalloc` / `aclrtFree` are not in the documented unsafe list and stay allowed.
//! - `aclmdlRIExecuteAsync(ri, stream)` queues the recorded work on `stream`, in order, with the
//!   arguments it was recorded with; each replayed task reads its buffers' contents when it runs.
//!   `aclmdlRIDestroy` releases the instance and its hold on the allocations.
//! - Not emulated, so refused (`ACL_ERROR_RT_FEATURE_NOT_SUPPORT`, naming the limit): event
//!   records and waits on a capturing stream (multi-stream capture through events), task groups
//!   and task updates. The default stream cannot be captured (restriction: no default-stream
//!   work during capture).
use std::cell::Cell;
use std::collections::HashMap;
use std::thread::ThreadId;

use senet_cann_sys::*;

use crate::api::{Fail, Res};
use crate::contract::{CannVersion, Product};
use crate::runtime_api::{acl, invalid, nonnull};
use crate::state::{self, with_emu, Emu};
use crate::stream::TaskFn;

/// A recorded task.
#[derive(Clone)]
pub struct Captured {
    what: String,
    uses: Vec<usize>,
    run: TaskFn,
}

/// A stream being captured.
pub struct Capture {
    mode: aclmdlRICaptureMode,
    thread: ThreadId,
    /// Why it was invalidated, if it was.
    invalid: Option<String>,
    /// The handle of the instance being built (reported by `aclmdlRICaptureGetInfo`).
    model: usize,
    tasks: Vec<Captured>,
}

/// A model run instance made by `aclmdlRICaptureEnd`.
pub struct Model {
    device: i32,
    tasks: Vec<Captured>,
}

/// Captures by stream id, and instances by handle.
#[derive(Default)]
pub struct Captures {
    streams: HashMap<usize, Capture>,
    models: HashMap<usize, Model>,
}

thread_local! {
    static THREAD_MODE: Cell<u32> = const { Cell::new(0) };
}

fn not_supported(msg: impl Into<String>) -> Fail {
    Fail::new(ACL_ERROR_RT_FEATURE_NOT_SUPPORT, msg)
}

/// Fails unless the emulated product and CANN release have the capture API.
fn require_api(e: &Emu, call: &str) -> Res<()> {
    let cfg = e.config()?;
    let soc = cfg.soc.to_string_lossy();
    if !matches!(cfg.product, Product::A2 | Product::A3 | Product::Ascend950) {
        return Err(not_supported(format!(
            "{call} is not supported on {soc}: the runtime API's product table marks stream capture ☓ for Atlas 训练系列产品 (first-generation 910) and the inference parts, √ for Atlas A2/A3 training products (CANN 8.1.RC1-9.0.0, aclcppdevg_03_1782)"
        )));
    }
    if cfg.version == CannVersion::V8_0 {
        return Err(not_supported(format!(
            "{call} is not in CANN 8.0: stream capture first appears in CANN 8.1.RC1 (aclcppdevg_03_1782)"
        )));
    }
    Ok(())
}

impl Captures {
    /// Whether `stream` is being captured.
    pub fn capturing(&self, stream: usize) -> bool {
        self.streams.contains_key(&stream)
    }

    /// Records a task queued on a capturing `stream` (the caller holds its allocations until
    /// the instance is destroyed or the capture fails). Returns `None` when `stream` is not
    /// capturing.
    pub fn record(
        &mut self,
        stream: usize,
        what: &str,
        uses: &[usize],
        run: &TaskFn,
    ) -> Option<Result<(), String>> {
        let c = self.streams.get_mut(&stream)?;
        if let Some(why) = &c.invalid {
            return Some(Err(format!(
                "{what}: the capture of stream {stream:#x} was invalidated ({why}) [ACL_ERROR_RT_STREAM_CAPTURE_INVALIDATED]"
            )));
        }
        c.tasks.push(Captured {
            what: what.to_string(),
            uses: uses.to_vec(),
            run: run.clone(),
        });
        Some(Ok(()))
    }

    /// The captures the calling thread's unsafe call would break, per the modes (see the
    /// module doc): the thread's own GLOBAL/THREAD_LOCAL captures, and in GLOBAL thread mode
    /// other threads' GLOBAL captures.
    fn blocking(&self) -> Vec<usize> {
        let mode = THREAD_MODE.with(|m| m.get());
        if mode == aclmdlRICaptureMode::ACL_MODEL_RI_CAPTURE_MODE_RELAXED.0 {
            return Vec::new();
        }
        let me = std::thread::current().id();
        let global = aclmdlRICaptureMode::ACL_MODEL_RI_CAPTURE_MODE_GLOBAL;
        let relaxed = aclmdlRICaptureMode::ACL_MODEL_RI_CAPTURE_MODE_RELAXED;
        self.streams
            .iter()
            .filter(|(_, c)| c.invalid.is_none())
            .filter(|(_, c)| {
                (c.thread == me && c.mode != relaxed) || (mode == global.0 && c.mode == global)
            })
            .map(|(&s, _)| s)
            .collect()
    }

    fn invalidate(&mut self, streams: &[usize], why: &str) {
        for s in streams {
            if let Some(c) = self.streams.get_mut(s) {
                c.invalid.get_or_insert_with(|| why.to_string());
            }
        }
    }
}

/// Fails a call that is unsafe during capture (`call`: a blocking copy or memset, an async copy
/// with unpinned host memory, or a synchronise of the streams `synced`) when the calling
/// thread may not make it or it synchronises a capturing stream, invalidating the captures it
/// would break.
pub fn check_unsafe(e: &mut Emu, call: &str, synced: &[usize]) -> Res<()> {
    {
        let mut hit = e.captures.blocking();
        for &s in synced {
            if e.captures.capturing(s) && !hit.contains(&s) {
                hit.push(s);
            }
        }
        if hit.is_empty() {
            return Ok(());
        }
        let why = format!("{call} during the capture");
        e.captures.invalidate(&hit, &why);
        Err(Fail::new(
            ACL_ERROR_RT_CAPTURE_MODE_NOT_SUPPORT,
            format!(
                "{call} is not allowed while stream(s) {} are being captured (programming guide, 单流捕获 restrictions: no synchronise in any mode; no aclrtMemcpy/aclrtMemset/unpinned async copy unless the thread's capture mode is RELAXED); the capture is invalidated",
                hit.iter()
                    .map(|s| format!("{s:#x}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }
}

/// Refuses event work on a capturing stream (multi-stream capture is not emulated).
pub fn refuse_event_on_capture(e: &Emu, call: &str, stream: usize) -> Res<()> {
    if e.captures.capturing(stream) {
        return Err(not_supported(format!(
            "{call} on stream {stream:#x}, which is being captured: the emulator models single-stream capture only (events on a capturing stream pull other streams into the capture on a device)"
        )));
    }
    Ok(())
}

/// Starts capturing the work queued on `stream`.
#[no_mangle]
pub extern "C" fn aclmdlRICaptureBegin(stream: aclrtStream, mode: aclmdlRICaptureMode) -> aclError {
    acl("aclmdlRICaptureBegin", || {
        with_emu(|e| {
            require_api(e, "aclmdlRICaptureBegin")?;
            if stream.is_null() {
                return Err(invalid(
                    "stream is null: the default stream cannot be captured",
                ));
            }
            let s = e.stream(stream)?;
            if mode.0 > 2 {
                return Err(invalid(format!("unknown aclmdlRICaptureMode {}", mode.0)));
            }
            if e.captures.capturing(s.id) {
                return Err(Fail::new(
                    ACL_ERROR_RT_STREAM_CAPTURED,
                    format!("stream {stream:p} is already being captured"),
                ));
            }
            e.captures.streams.insert(
                s.id,
                Capture {
                    mode,
                    thread: std::thread::current().id(),
                    invalid: None,
                    model: state::next_id(),
                    tasks: Vec::new(),
                },
            );
            Ok(())
        })
    })
}

/// The capture status of `stream` and, while a capture is active, its instance's handle.
#[no_mangle]
pub unsafe extern "C" fn aclmdlRICaptureGetInfo(
    stream: aclrtStream,
    status: *mut aclmdlRICaptureStatus,
    modelRI: *mut aclmdlRI,
) -> aclError {
    acl("aclmdlRICaptureGetInfo", || {
        nonnull(status, "status")?;
        nonnull(modelRI, "modelRI")?;
        let (st, m) = with_emu(|e| {
            require_api(e, "aclmdlRICaptureGetInfo")?;
            let s = e.stream(stream)?;
            Ok::<_, Fail>(match e.captures.streams.get(&s.id) {
                None => (aclmdlRICaptureStatus::ACL_MODEL_RI_CAPTURE_STATUS_NONE, 0),
                Some(c) if c.invalid.is_some() => (
                    aclmdlRICaptureStatus::ACL_MODEL_RI_CAPTURE_STATUS_INVALIDATED,
                    0,
                ),
                Some(c) => (
                    aclmdlRICaptureStatus::ACL_MODEL_RI_CAPTURE_STATUS_ACTIVE,
                    c.model,
                ),
            })
        })?;
        *status = st;
        *modelRI = m as aclmdlRI;
        Ok(())
    })
}

/// Ends the capture of `stream` and returns the instance holding the recorded work.
#[no_mangle]
pub unsafe extern "C" fn aclmdlRICaptureEnd(
    stream: aclrtStream,
    modelRI: *mut aclmdlRI,
) -> aclError {
    acl("aclmdlRICaptureEnd", || {
        nonnull(modelRI, "modelRI")?;
        let id = with_emu(|e| {
            require_api(e, "aclmdlRICaptureEnd")?;
            let s = e.stream(stream)?;
            let Some(c) = e.captures.streams.get(&s.id) else {
                return Err(Fail::new(
                    ACL_ERROR_RT_STREAM_NOT_CAPTURED,
                    format!(
                        "stream {stream:p} is not being captured (no aclmdlRICaptureBegin on it)"
                    ),
                ));
            };
            if c.mode != aclmdlRICaptureMode::ACL_MODEL_RI_CAPTURE_MODE_RELAXED
                && c.thread != std::thread::current().id()
            {
                return Err(Fail::new(
                    ACL_ERROR_RT_STREAM_CAPTURE_WRONG_THREAD,
                    "aclmdlRICaptureEnd must come from the thread that called aclmdlRICaptureBegin (mode not RELAXED)",
                ));
            }
            let c = e.captures.streams.remove(&s.id).expect("checked above");
            if let Some(why) = c.invalid {
                for t in &c.tasks {
                    e.memory.drop_uses(&t.uses);
                }
                return Err(Fail::new(
                    ACL_ERROR_RT_STREAM_CAPTURE_INVALIDATED,
                    format!("the capture of stream {stream:p} was invalidated: {why}"),
                ));
            }
            e.captures.models.insert(
                c.model,
                Model {
                    device: s.device,
                    tasks: c.tasks,
                },
            );
            Ok(c.model)
        })?;
        *modelRI = id as aclmdlRI;
        Ok(())
    })
}

/// Swaps the calling thread's capture mode with `*mode`.
#[no_mangle]
pub unsafe extern "C" fn aclmdlRICaptureThreadExchangeMode(
    mode: *mut aclmdlRICaptureMode,
) -> aclError {
    acl("aclmdlRICaptureThreadExchangeMode", || {
        nonnull(mode, "mode")?;
        with_emu(|e| require_api(e, "aclmdlRICaptureThreadExchangeMode"))?;
        let new = (*mode).0;
        if new > 2 {
            return Err(invalid(format!("unknown aclmdlRICaptureMode {new}")));
        }
        let old = THREAD_MODE.with(|m| m.replace(new));
        *mode = aclmdlRICaptureMode(old);
        Ok(())
    })
}

/// Queues the instance's recorded work on `stream`, in order.
#[no_mangle]
pub extern "C" fn aclmdlRIExecuteAsync(modelRI: aclmdlRI, stream: aclrtStream) -> aclError {
    acl("aclmdlRIExecuteAsync", || {
        with_emu(|e| {
            require_api(e, "aclmdlRIExecuteAsync")?;
            let s = e.stream(stream)?;
            let m =
                e.captures.models.get(&(modelRI as usize)).ok_or_else(|| {
                    invalid(format!("{modelRI:p} is not a live model run instance"))
                })?;
            if m.device != s.device {
                return Err(invalid(format!(
                    "the instance was captured on device {}, the stream is on device {}",
                    m.device, s.device
                )));
            }
            if e.captures.capturing(s.id) {
                return Err(not_supported(
                    "replaying an instance into a capture is not emulated",
                ));
            }
            let tasks = m.tasks.clone();
            for t in tasks {
                e.enqueue(&s, &t.what, t.uses, t.run).map_err(invalid)?;
            }
            Ok(())
        })
    })
}

/// Destroys an instance; its allocations may be freed afterwards (once replays queued before
/// have run).
#[no_mangle]
pub extern "C" fn aclmdlRIDestroy(modelRI: aclmdlRI) -> aclError {
    acl("aclmdlRIDestroy", || {
        with_emu(|e| {
            require_api(e, "aclmdlRIDestroy")?;
            let m = e
                .captures
                .models
                .remove(&(modelRI as usize))
                .ok_or_else(|| invalid(format!("{modelRI:p} is not a live model run instance")))?;
            for t in &m.tasks {
                e.memory.drop_uses(&t.uses);
            }
            Ok(())
        })
    })
}
