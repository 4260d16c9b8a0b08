//! The exported ACL runtime: `aclInit`, `aclFinalize`, `aclGetRecentErrMsg`, devices,
//! contexts, streams and events (`libascendcl.so`'s part of `cann_subset.h`; memory is in
//! `memory_api.rs`).
use std::ffi::CStr;
use std::os::raw::c_char;
use std::sync::{Arc, Mutex};

use senet_cann_sys::*;

use crate::api::{self, Fail, Res};
use crate::control;
use crate::state::{self, with_emu, Config, Phase};
use crate::stream::{self, Event, Record, Stream};

pub(crate) fn acl(name: &str, body: impl FnOnce() -> Res<()>) -> aclError {
    api::status(name, ACL_ERROR_INTERNAL_ERROR, body)
}

pub(crate) fn invalid(msg: impl Into<String>) -> Fail {
    Fail::new(ACL_ERROR_INVALID_PARAM, msg)
}

/// Fails with `ACL_ERROR_INVALID_PARAM` if the output pointer `p` (named `what`) is null.
pub(crate) fn nonnull<T>(p: *const T, what: &str) -> Res<()> {
    api::ensure(!p.is_null(), ACL_ERROR_INVALID_PARAM, || {
        format!("{what} is null")
    })
}

/// Initialises the runtime: reads the emulator's configuration (`SENET_EMU_DEVICES`,
/// `SENET_EMU_SOC`, `SENET_EMU_HBM_BYTES`) and `SENET_EMU_FAIL`. `configPath` may be null or
/// empty; otherwise the file must exist. A second call while initialised returns
/// `ACL_ERROR_REPEAT_INITIALIZE`; a call after `aclFinalize` initialises again.
#[no_mangle]
pub unsafe extern "C" fn aclInit(configPath: *const c_char) -> aclError {
    acl("aclInit", || {
        if !configPath.is_null() {
            let p = CStr::from_ptr(configPath).to_string_lossy().into_owned();
            if !p.is_empty() && !std::path::Path::new(&p).is_file() {
                return Err(invalid(format!("config file {p:?} does not exist")));
            }
        }
        with_emu(|e| {
            if e.phase == Phase::Active {
                return Err(Fail::new(
                    ACL_ERROR_REPEAT_INITIALIZE,
                    "aclInit was already called in this process",
                ));
            }
            let cfg = Config::from_env().map_err(invalid)?;
            if let Ok(spec) = std::env::var(state::ENV_FAIL) {
                control::inject_from_spec(&spec).map_err(invalid)?;
            }
            e.config = Some(cfg);
            e.phase = Phase::Active;
            Ok(())
        })
    })
}

/// Finalises the runtime: runs all queued work, then destroys every context, stream and event
/// and frees all device and pinned host memory. aclnn objects stay (they belong to nnopbase).
#[no_mangle]
pub extern "C" fn aclFinalize() -> aclError {
    acl("aclFinalize", || {
        let streams = with_emu(|e| match e.phase {
            Phase::Never => Err(Fail::new(
                ACL_ERROR_UNINITIALIZE,
                "aclInit has not been called",
            )),
            Phase::Finalized => Err(Fail::new(
                ACL_ERROR_REPEAT_FINALIZE,
                "aclFinalize was already called",
            )),
            Phase::Active => Ok(e.streams.values().cloned().collect::<Vec<_>>()),
        })?;
        for s in &streams {
            let _ = s.run_until(u64::MAX);
        }
        with_emu(|e| {
            for s in e.streams.values() {
                let uses = s.discard();
                e.memory.drop_uses(&uses);
            }
            e.streams.clear();
            e.events.clear();
            e.contexts.clear();
            e.device_refs.clear();
            e.memory.release_all();
            e.order = Default::default();
            e.captures = Default::default();
            e.phase = Phase::Finalized;
        });
        state::set_current(0);
        crate::stats::write_now();
        Ok(())
    })
}

/// The calling thread's most recent error text ("" if none); valid until the thread's next
/// failing call.
#[no_mangle]
pub extern "C" fn aclGetRecentErrMsg() -> *const c_char {
    control::count("aclGetRecentErrMsg");
    api::recent_ptr()
}

/// Reports ACL version 1.10.0 (the CANN 8.0 headers).
#[no_mangle]
pub unsafe extern "C" fn aclrtGetVersion(
    majorVersion: *mut i32,
    minorVersion: *mut i32,
    patchVersion: *mut i32,
) -> aclError {
    acl("aclrtGetVersion", || {
        with_emu(|e| e.require_init())?;
        nonnull(majorVersion, "majorVersion")?;
        nonnull(minorVersion, "minorVersion")?;
        nonnull(patchVersion, "patchVersion")?;
        *majorVersion = 1;
        *minorVersion = 10;
        *patchVersion = 0;
        Ok(())
    })
}

/// The SoC name (`SENET_EMU_SOC`, default `Ascend910B1`); null before `aclInit`.
#[no_mangle]
pub extern "C" fn aclrtGetSocName() -> *const c_char {
    api::call(
        "aclrtGetSocName",
        0,
        |_| std::ptr::null(),
        || with_emu(|e| Ok(e.config()?.soc.as_ptr())),
    )
}

/// Binds the calling thread to `deviceId` and its default context (created on first use;
/// reference counted by `aclrtResetDevice`).
#[no_mangle]
pub extern "C" fn aclrtSetDevice(deviceId: i32) -> aclError {
    acl("aclrtSetDevice", || {
        let ctx = with_emu(|e| {
            e.check_device(deviceId)?;
            let ctx = match e.device_refs.get(&deviceId).copied() {
                Some((n, ctx)) => {
                    e.device_refs.insert(deviceId, (n + 1, ctx));
                    ctx
                }
                None => {
                    let ctx = e.new_context(deviceId);
                    e.device_refs.insert(deviceId, (1, ctx));
                    ctx
                }
            };
            Ok(ctx)
        })?;
        state::set_current(ctx);
        Ok(())
    })
}

/// Removes the context `ctx` and its streams from the registries and runs the streams' queued
/// work; for `aclrtResetDevice` and `aclrtDestroyContext`.
fn retire_context(ctx: usize) -> Res<()> {
    let streams: Vec<Arc<Stream>> = with_emu(|e| {
        e.contexts.remove(&ctx);
        let ids: Vec<usize> = e
            .streams
            .values()
            .filter(|s| s.context == ctx)
            .map(|s| s.id)
            .collect();
        ids.iter().filter_map(|id| e.streams.remove(id)).collect()
    });
    if state::current_handle() == ctx {
        state::set_current(0);
    }
    let mut errors = Vec::new();
    for s in streams {
        errors.extend(s.run_until(u64::MAX));
        state::host_waited(&s, u64::MAX, None, "aclrtDestroyContext");
    }
    api::ensure(errors.is_empty(), ACL_ERROR_RT_INTERNAL_ERROR, || {
        errors.join("; ")
    })
}

/// Drops one `aclrtSetDevice` reference; the last one runs the default context's queued work
/// and destroys it with its streams. Device memory stays allocated (free it with `aclrtFree`).
#[no_mangle]
pub extern "C" fn aclrtResetDevice(deviceId: i32) -> aclError {
    acl("aclrtResetDevice", || {
        let retire = with_emu(|e| {
            e.check_device(deviceId)?;
            match e.device_refs.get(&deviceId).copied() {
                None => Err(invalid(format!(
                    "device {deviceId} was not set (no aclrtSetDevice({deviceId}) to match)"
                ))),
                Some((1, ctx)) => {
                    e.device_refs.remove(&deviceId);
                    Ok(Some(ctx))
                }
                Some((n, ctx)) => {
                    e.device_refs.insert(deviceId, (n - 1, ctx));
                    Ok(None)
                }
            }
        })?;
        match retire {
            Some(ctx) => retire_context(ctx),
            None => Ok(()),
        }
    })
}

/// The device of the calling thread's current context.
#[no_mangle]
pub unsafe extern "C" fn aclrtGetDevice(deviceId: *mut i32) -> aclError {
    acl("aclrtGetDevice", || {
        nonnull(deviceId, "deviceId")?;
        let d = with_emu(|e| Ok::<_, Fail>(e.current()?.1.device))?;
        *deviceId = d;
        Ok(())
    })
}

/// Number of emulated devices (`SENET_EMU_DEVICES`, default 8).
#[no_mangle]
pub unsafe extern "C" fn aclrtGetDeviceCount(count: *mut u32) -> aclError {
    acl("aclrtGetDeviceCount", || {
        nonnull(count, "count")?;
        let n = with_emu(|e| Ok::<_, Fail>(e.config()?.devices))?;
        *count = n;
        Ok(())
    })
}

/// Runs the queued work of every stream of the current device.
#[no_mangle]
pub extern "C" fn aclrtSynchronizeDevice() -> aclError {
    acl("aclrtSynchronizeDevice", || {
        let d = with_emu(|e| Ok::<_, Fail>(e.current()?.1.device))?;
        state::sync_device(d)
    })
}

/// Creates a context on `deviceId` and makes it the calling thread's current context.
#[no_mangle]
pub unsafe extern "C" fn aclrtCreateContext(context: *mut aclrtContext, deviceId: i32) -> aclError {
    acl("aclrtCreateContext", || {
        nonnull(context, "context")?;
        let ctx = with_emu(|e| {
            e.check_device(deviceId)?;
            Ok::<_, Fail>(e.new_context(deviceId))
        })?;
        state::set_current(ctx);
        *context = ctx as aclrtContext;
        Ok(())
    })
}

/// Destroys a context made by `aclrtCreateContext`, after running its streams' queued work.
#[no_mangle]
pub extern "C" fn aclrtDestroyContext(context: aclrtContext) -> aclError {
    acl("aclrtDestroyContext", || {
        let h = context as usize;
        with_emu(|e| {
            e.require_init()?;
            if context.is_null() {
                return Err(invalid("context is null"));
            }
            if !e.contexts.contains_key(&h) {
                return Err(invalid(format!("{context:p} is not a live context")));
            }
            if let Some((d, _)) = e.device_refs.iter().find(|(_, (_, c))| *c == h) {
                return Err(invalid(format!(
                    "{context:p} is the default context of device {d}; release it with aclrtResetDevice"
                )));
            }
            Ok(())
        })?;
        retire_context(h)
    })
}

/// Makes `context` the calling thread's current context.
#[no_mangle]
pub extern "C" fn aclrtSetCurrentContext(context: aclrtContext) -> aclError {
    acl("aclrtSetCurrentContext", || {
        with_emu(|e| {
            e.require_init()?;
            api::ensure(
                e.contexts.contains_key(&(context as usize)),
                ACL_ERROR_INVALID_PARAM,
                || format!("{context:p} is not a live context"),
            )
        })?;
        state::set_current(context as usize);
        Ok(())
    })
}

/// The calling thread's current context.
#[no_mangle]
pub unsafe extern "C" fn aclrtGetCurrentContext(context: *mut aclrtContext) -> aclError {
    acl("aclrtGetCurrentContext", || {
        nonnull(context, "context")?;
        let h = with_emu(|e| Ok::<_, Fail>(e.current()?.0))?;
        *context = h as aclrtContext;
        Ok(())
    })
}

/// Creates a stream in the current context.
#[no_mangle]
pub unsafe extern "C" fn aclrtCreateStream(stream: *mut aclrtStream) -> aclError {
    acl("aclrtCreateStream", || {
        nonnull(stream, "stream")?;
        let id = with_emu(|e| {
            let (ctx, c) = e.current()?;
            let device = c.device;
            let id = state::next_id();
            e.streams.insert(id, Arc::new(Stream::new(id, device, ctx)));
            Ok::<_, Fail>(id)
        })?;
        *stream = id as aclrtStream;
        Ok(())
    })
}

/// Destroys a stream. Queued work is run first (the documented call waits for it); a failure
/// of that work is returned, and the stream is destroyed all the same.
#[no_mangle]
pub extern "C" fn aclrtDestroyStream(stream: aclrtStream) -> aclError {
    acl("aclrtDestroyStream", || {
        let s = with_emu(|e| {
            if stream.is_null() {
                e.require_init()?;
                return Err(invalid(
                    "stream is null (the default stream cannot be destroyed)",
                ));
            }
            let s = e.stream(stream)?;
            if e.contexts.values().any(|c| c.default_stream.id == s.id) {
                return Err(invalid("cannot destroy a context's default stream"));
            }
            e.streams.remove(&s.id);
            Ok(s)
        })?;
        state::sync_stream(&s, u64::MAX)
    })
}

/// Runs the stream's queued work in order; reports the first failures of that work.
#[no_mangle]
pub extern "C" fn aclrtSynchronizeStream(stream: aclrtStream) -> aclError {
    acl("aclrtSynchronizeStream", || {
        let s = with_emu(|e| {
            let s = e.stream(stream)?;
            crate::capture::check_unsafe(e, "aclrtSynchronizeStream", &[s.id])?;
            Ok::<_, Fail>(s)
        })?;
        state::sync_stream(&s, u64::MAX)
    })
}

/// Creates an event in the current context.
#[no_mangle]
pub unsafe extern "C" fn aclrtCreateEvent(event: *mut aclrtEvent) -> aclError {
    acl("aclrtCreateEvent", || {
        nonnull(event, "event")?;
        let id = with_emu(|e| {
            let device = e.current()?.1.device;
            let id = state::next_id();
            e.events.insert(
                id,
                Arc::new(Event {
                    id,
                    device,
                    last: Mutex::new(None),
                }),
            );
            Ok::<_, Fail>(id)
        })?;
        *event = id as aclrtEvent;
        Ok(())
    })
}

fn event(e: &state::Emu, event: aclrtEvent) -> Res<Arc<Event>> {
    e.require_init()?;
    if event.is_null() {
        return Err(invalid("event is null"));
    }
    e.events
        .get(&(event as usize))
        .cloned()
        .ok_or_else(|| invalid(format!("{event:p} is not a live event")))
}

/// Destroys an event.
#[no_mangle]
pub extern "C" fn aclrtDestroyEvent(ev: aclrtEvent) -> aclError {
    acl("aclrtDestroyEvent", || {
        with_emu(|e| {
            let ev = event(e, ev)?;
            e.events.remove(&ev.id);
            Ok(())
        })
    })
}

/// Queues a marker on `stream` that timestamps the event when the stream runs it; the event
/// then stands for the work queued on `stream` before it ([`crate::order`]).
#[no_mangle]
pub extern "C" fn aclrtRecordEvent(ev: aclrtEvent, stream: aclrtStream) -> aclError {
    acl("aclrtRecordEvent", || {
        with_emu(|e| {
            let (ev, s) = (event(e, ev)?, e.stream(stream)?);
            crate::capture::refuse_event_on_capture(e, "aclrtRecordEvent", s.id)?;
            let at = Arc::new(Mutex::new(None));
            let at2 = at.clone();
            let run = Arc::new(move || {
                stream::mark(&at2);
                Ok(())
            });
            let seq = e
                .enqueue(&s, "aclrtRecordEvent", Vec::new(), run)
                .map_err(invalid)?;
            let clock = e.order.snapshot(s.id, seq);
            ev.set_record(Record {
                stream: s,
                seq,
                at,
                clock,
            });
            Ok(())
        })
    })
}

/// Makes later work of `stream` wait for the event's most recent record (captured now): when
/// the stream reaches the wait, the recording stream runs up to the marker, and every task
/// queued on `stream` afterwards is ordered after the recorded work. An event never recorded
/// is already complete.
#[no_mangle]
pub extern "C" fn aclrtStreamWaitEvent(stream: aclrtStream, ev: aclrtEvent) -> aclError {
    acl("aclrtStreamWaitEvent", || {
        with_emu(|e| {
            let (ev, s) = (event(e, ev)?, e.stream(stream)?);
            crate::capture::refuse_event_on_capture(e, "aclrtStreamWaitEvent", s.id)?;
            let Some(rec) = ev.record() else {
                return Ok(());
            };
            let clock = rec.clock.clone();
            let run = Arc::new(move || {
                let errors = rec.stream.run_until(rec.seq);
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(format!("the awaited stream failed: {}", errors.join("; ")))
                }
            });
            e.enqueue(&s, "aclrtStreamWaitEvent", Vec::new(), run)
                .map_err(invalid)?;
            e.order.wait(s.id, &clock);
            Ok(())
        })
    })
}

/// Runs the recording stream up to the event's marker (no-op for an event never recorded);
/// the host then knows the recorded work finished.
#[no_mangle]
pub extern "C" fn aclrtSynchronizeEvent(ev: aclrtEvent) -> aclError {
    acl("aclrtSynchronizeEvent", || {
        let ev = with_emu(|e| {
            let ev = event(e, ev)?;
            let synced: Vec<usize> = ev.record().map(|r| r.stream.id).into_iter().collect();
            crate::capture::check_unsafe(e, "aclrtSynchronizeEvent", &synced)?;
            Ok::<_, Fail>(ev)
        })?;
        match ev.record() {
            Some(rec) => {
                let r = state::sync_stream(&rec.stream, rec.seq);
                state::host_waited(
                    &rec.stream,
                    rec.seq,
                    Some(&rec.clock),
                    "aclrtSynchronizeEvent",
                );
                r
            }
            None => Ok(()),
        }
    })
}

/// Milliseconds between two completed events (both must have been recorded and run).
#[no_mangle]
pub unsafe extern "C" fn aclrtEventElapsedTime(
    ms: *mut f32,
    startEvent: aclrtEvent,
    endEvent: aclrtEvent,
) -> aclError {
    acl("aclrtEventElapsedTime", || {
        nonnull(ms, "ms")?;
        let (a, b) = with_emu(|e| Ok::<_, Fail>((event(e, startEvent)?, event(e, endEvent)?)))?;
        let time = |ev: &Event, which: &str| -> Res<std::time::Instant> {
            let rec = ev.record().ok_or_else(|| {
                Fail::new(
                    ACL_ERROR_INVALID_PARAM,
                    format!("{which} event was never recorded"),
                )
            })?;
            stream::ran_at(&rec).ok_or_else(|| {
                Fail::new(
                    ACL_ERROR_INVALID_PARAM,
                    format!("{which} event has not completed (synchronise its stream first)"),
                )
            })
        };
        let (ta, tb) = (time(&a, "startEvent")?, time(&b, "endEvent")?);
        let d = if tb >= ta {
            tb.duration_since(ta).as_secs_f64()
        } else {
            -ta.duration_since(tb).as_secs_f64()
        };
        *ms = (d * 1e3) as f32;
        Ok(())
    })
}
