//! Stream capture: the work queued on the backend's stream recorded once into a model run
//! instance and replayed as one task (`aclmdlRICapture*`, the API torch_npu's `NPUGraph` uses;
//! `docs/npu-performance.md` §6 gives the sources).
//!
//! CANN facts this relies on (runtime API reference, "模型运行实例管理", aclcppdevg_03_1782-1788
//! and 1821-1822, CANN 8.1.RC1 to 9.0.0; programming guide "单流捕获", runtime_doc_dev_0030):
//! - Atlas A2/A3 training products (and the 950) with CANN 8.1.RC1 or later; ☓ on the
//!   first-generation 910 in every version's table. Elsewhere `aclmdlRICaptureBegin` fails
//!   (`ACL_ERROR_RT_FEATURE_NOT_SUPPORT` 207000 on the emulator; undocumented on a device) or the
//!   symbol is missing: [`capture_begin`] returns that error and the caller runs op by op.
//! - Between `aclmdlRICaptureBegin(stream, GLOBAL)` and `aclmdlRICaptureEnd` the tasks queued on
//!   the stream are recorded, not run. Synchronising (any mode) and `aclrtMemcpy`/`aclrtMemset`/
//!   unpinned async copies (GLOBAL mode) fail with `ACL_ERROR_RT_CAPTURE_MODE_NOT_SUPPORT`
//!   (107030) and invalidate the capture; `aclmdlRICaptureEnd` then fails with
//!   `ACL_ERROR_RT_STREAM_CAPTURE_INVALIDATED` (507903).
//! - A replay (`aclmdlRIExecuteAsync`) runs the recorded tasks with their recorded arguments:
//!   the same addresses, the same host scalars (a learning rate passed by value is frozen).
//! - The resources the tasks use stay valid until `aclmdlRIDestroy` (restriction 7).
//!
//! What senet does for that: the capture takes the device's queue lock for its whole length
//! only per entry point, as every call does; `Ctx::set_capturing` makes the queue keep the
//! aclnn argument objects created during the capture (aclnn-contract.md Part D: the executor
//! keeps raw pointers to them; whether CANN needs them after the launch is not documented, so
//! they are kept, the safe side) and hands them to the [`Graph`], which destroys them after
//! `aclmdlRIDestroy`; the caching allocator gives the graph a private pool (`memory.rs`). One
//! graph per device.
use senet_cann_sys::{aclmdlRI, aclmdlRICaptureMode};

use super::device::Count;
use super::error::{check_acl, sym};
use super::tensor::AclObject;
use super::AscendBackend;
use crate::{Error, Result};

const ACL: &str = "libascendcl.so";

/// A captured model run instance and the argument objects its tasks were planned with.
pub struct Graph {
    ri: aclmdlRI,
    /// Destroyed after the instance (their executors point at them).
    objects: Vec<AclObject>,
    /// Replayed at least once: else its recorded casts never ran, and the fp16 weight copies
    /// they marked valid are stale when it is destroyed.
    replayed: bool,
}

// SAFETY: the handle is an opaque runtime id; it is only used under the device's lock.
unsafe impl Send for Graph {}

/// Begins capturing the backend's stream (`aclmdlRICaptureBegin`, mode GLOBAL): synchronises
/// first (the capture's argument objects must not mix with earlier ones), opens the graph's
/// memory pool and marks the queue capturing. Errors: a graph already lives on the device;
/// the runtime's refusal ([`Error::Device`] naming `aclmdlRICaptureBegin` and its code, e.g.
/// `ACL_ERROR_RT_FEATURE_NOT_SUPPORT` on a first-generation 910 or CANN 8.0; or
/// [`Error::DeviceUnavailable`] when the installed CANN lacks the symbol).
pub(super) fn capture_begin(be: &AscendBackend) -> Result<()> {
    if lock(be).is_some() {
        return Err(Error::Invalid(
            "a captured graph already lives on this backend: destroy it first".into(),
        ));
    }
    let mut ctx = be.dev.enter()?;
    let cann = ctx.cann();
    let f = sym(&cann.acl.aclmdlRICaptureBegin, "aclmdlRICaptureBegin", ACL)?;
    ctx.sync()?;
    be.dev.cache().begin_graph()?;
    // SAFETY: the backend's live stream; the mode is one of the documented three.
    let code = unsafe {
        f(
            ctx.stream(),
            aclmdlRICaptureMode::ACL_MODEL_RI_CAPTURE_MODE_GLOBAL,
        )
    };
    if let Err(e) = check_acl(cann, "aclmdlRICaptureBegin", code) {
        be.dev.cache().end_graph();
        return Err(e);
    }
    ctx.set_capturing(true);
    Ok(())
}

/// Ends the capture (`aclmdlRICaptureEnd`) and keeps the instance as the backend's graph.
/// The capture is over whatever the result. On failure (an invalidated capture: a
/// synchronise or blocking copy was attempted during it, `ACL_ERROR_RT_STREAM_CAPTURE_
/// INVALIDATED`) nothing recorded ran: the graph's blocks return to the shared cache, its
/// objects are destroyed and every fp16 weight copy is forgotten (the recorded casts never
/// ran), so the same work can be issued again op by op. Errors: the runtime's.
pub(super) fn capture_end(be: &AscendBackend) -> Result<()> {
    let mut ctx = be.dev.enter()?;
    let cann = ctx.cann();
    let f = sym(&cann.acl.aclmdlRICaptureEnd, "aclmdlRICaptureEnd", ACL)?;
    let mut ri: aclmdlRI = std::ptr::null_mut();
    // SAFETY: the backend's stream; ri is a valid out-pointer.
    let code = unsafe { f(ctx.stream(), &mut ri) };
    ctx.set_capturing(false);
    let objects = ctx.take_pending();
    drop(ctx);
    match check_acl(cann, "aclmdlRICaptureEnd", code) {
        Ok(()) => {
            be.dev.cache().seal_graph();
            *lock(be) = Some(Graph {
                ri,
                objects,
                replayed: false,
            });
            Ok(())
        }
        Err(e) => {
            drop(objects);
            be.dev.cache().end_graph();
            be.dev.forget_half_copies();
            Err(e)
        }
    }
}

/// Queues the captured graph on the backend's stream (`aclmdlRIExecuteAsync`); the host does
/// not wait. Errors: no graph; the runtime's.
pub(super) fn replay(be: &AscendBackend) -> Result<()> {
    let mut g = lock(be);
    let Some(graph) = g.as_mut() else {
        return Err(Error::Invalid("no captured graph to replay".into()));
    };
    let ctx = be.dev.enter()?;
    let cann = ctx.cann();
    let f = sym(&cann.acl.aclmdlRIExecuteAsync, "aclmdlRIExecuteAsync", ACL)?;
    // SAFETY: a live instance captured on this device; the backend's stream.
    let code = unsafe { f(graph.ri, ctx.stream()) };
    ctx.count(Count::Replay);
    check_acl(cann, "aclmdlRIExecuteAsync", code)?;
    graph.replayed = true;
    Ok(())
}

/// Destroys the graph, if any: synchronises (replays queued before use its memory), then
/// `aclmdlRIDestroy`, its argument objects, and its memory pool back to the shared cache.
/// Errors: the synchronise's or the runtime's (the graph is gone either way).
pub(super) fn destroy(be: &AscendBackend) -> Result<()> {
    let Some(graph) = lock(be).take() else {
        return Ok(());
    };
    let mut ctx = be.dev.enter()?;
    let synced = ctx.sync();
    let cann = ctx.cann();
    let destroyed = sym(&cann.acl.aclmdlRIDestroy, "aclmdlRIDestroy", ACL).and_then(|f| {
        // SAFETY: a live instance; no queued work uses it any more.
        check_acl(cann, "aclmdlRIDestroy", unsafe { f(graph.ri) })
    });
    drop(graph.objects);
    be.dev.cache().end_graph();
    if !graph.replayed {
        be.dev.forget_half_copies();
    }
    synced.and(destroyed)
}

/// Whether a graph lives on the backend.
pub(super) fn live(be: &AscendBackend) -> bool {
    lock(be).is_some()
}

fn lock(be: &AscendBackend) -> std::sync::MutexGuard<'_, Option<Graph>> {
    be.graph.lock().unwrap_or_else(|e| e.into_inner())
}
