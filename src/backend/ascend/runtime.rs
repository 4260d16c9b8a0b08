//! The ACL runtime as RAII types: process initialisation, a device context, streams, events
//! (`shared/reference/cann.md` §1.3).
//!
//! * [`init`] runs `aclInit(NULL)` once per process (`ACL_ERROR_REPEAT_INITIALIZE` counts as
//!   success: another component of the process may have initialised ACL first). `aclFinalize` is
//!   never called: ACL allows one init/finalize pair per process, and a later backend in the same
//!   process would then be unable to start.
//! * [`Context`] is `aclrtSetDevice` + `aclrtCreateContext` on a device; contexts are per thread
//!   in CANN, so every thread that issues calls must make it current first
//!   ([`Context::make_current`]).
//! * [`Stream`] and [`Event`] own an `aclrtStream` / `aclrtEvent`; they make their context
//!   current before destroying the handle, so they may be dropped on any thread.
//! * [`devices`] loads CANN and reports what it sees (`senet devices`), without opening a
//!   device; [`is_first_gen_910`] tells the first-generation 910 SoCs apart.
use std::ffi::CStr;
use std::path::PathBuf;
use std::sync::OnceLock;

use senet_cann_sys::{aclrtContext, aclrtEvent, aclrtStream, Cann};

use super::error::{cann, check_acl, code_name, recent_message, sym};
use crate::{Error, Result};

const ACL: &str = "libascendcl.so";

/// Calls `aclInit(NULL)` the first time (per process) and returns the first call's outcome ever
/// after. Errors: CANN not loadable ([`Error::DeviceUnavailable`]), `aclInit` failing
/// ([`Error::Device`]).
pub fn init() -> Result<&'static Cann> {
    // (code, name, message) of a failed aclInit; the Error itself is not Clone.
    static INIT: OnceLock<std::result::Result<(), (i64, String)>> = OnceLock::new();
    let cann = cann()?;
    let outcome = INIT.get_or_init(|| {
        let f =
            match cann.acl.aclInit.as_ref() {
                Ok(f) => f,
                Err(e) => {
                    return Err((
                        -1,
                        format!(
                        "{} has no aclInit: not a CANN runtime library, or a CANN too old ({e})",
                        cann.paths.first().map_or("?".into(), |p| p.display().to_string())
                    ),
                    ))
                }
            };
        // SAFETY: aclInit accepts NULL (no configuration file).
        let code = unsafe { f(std::ptr::null()) };
        if code == 0 || code == senet_cann_sys::ACL_ERROR_REPEAT_INITIALIZE {
            Ok(())
        } else {
            Err((code as i64, recent_message(cann)))
        }
    });
    match outcome {
        Ok(()) => Ok(cann),
        Err((-1, msg)) => Err(Error::DeviceUnavailable(msg.clone())),
        Err((code, msg)) => Err(Error::Device {
            call: "aclInit".into(),
            code: *code,
            name: code_name(*code).into(),
            message: msg.clone(),
        }),
    }
}

/// The SoC of the current process's devices as CANN names it (`aclrtGetSocName`), e.g.
/// `Ascend910B1` (A2), `Ascend910A` / `Ascend910ProB` / `Ascend910B` (first-generation 910;
/// cann.md §2.5). Errors: CANN not loadable, the symbol missing, or CANN returning NULL.
pub fn soc_name() -> Result<String> {
    let cann = init()?;
    let f = sym(&cann.acl.aclrtGetSocName, "aclrtGetSocName", ACL)?;
    // SAFETY: no arguments; returns NULL or a static NUL-terminated string.
    let p = unsafe { f() };
    if p.is_null() {
        return Err(Error::Device {
            call: "aclrtGetSocName".into(),
            code: -1,
            name: String::new(),
            message: recent_message(cann),
        });
    }
    // SAFETY: non-null, NUL-terminated, static.
    Ok(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Number of NPUs visible to the process (`aclrtGetDeviceCount`).
/// Errors: CANN not loadable or the call failing.
pub fn device_count() -> Result<u32> {
    let cann = init()?;
    let f = sym(&cann.acl.aclrtGetDeviceCount, "aclrtGetDeviceCount", ACL)?;
    let mut n = 0u32;
    // SAFETY: writes one u32.
    check_acl(cann, "aclrtGetDeviceCount", unsafe { f(&mut n) })?;
    Ok(n)
}

/// The ACL version (`aclrtGetVersion`: major, minor, patch; deprecated in the newest CANN but
/// present in every version cann.md covers). Errors: CANN not loadable or the call failing.
pub fn version() -> Result<(i32, i32, i32)> {
    let cann = init()?;
    let f = sym(&cann.acl.aclrtGetVersion, "aclrtGetVersion", ACL)?;
    let (mut a, mut b, mut c) = (0, 0, 0);
    // SAFETY: writes three i32.
    check_acl(cann, "aclrtGetVersion", unsafe {
        f(&mut a, &mut b, &mut c)
    })?;
    Ok((a, b, c))
}

/// Makes `ctx` the calling thread's current context (`aclrtSetCurrentContext`).
pub fn set_current(cann: &Cann, ctx: aclrtContext) -> Result<()> {
    let f = sym(
        &cann.acl.aclrtSetCurrentContext,
        "aclrtSetCurrentContext",
        ACL,
    )?;
    // SAFETY: ctx is a live context created by aclrtCreateContext.
    check_acl(cann, "aclrtSetCurrentContext", unsafe { f(ctx) })
}

/// A device bound to this process with an explicit context (`aclrtSetDevice` +
/// `aclrtCreateContext`); dropping it destroys the context and releases the device
/// (`aclrtResetDevice`). Everything created in the context must be destroyed first.
pub struct Context {
    cann: &'static Cann,
    device: i32,
    handle: aclrtContext,
}

// SAFETY: an ACL context handle may be made current on, and used from, any thread
// (cann.md §1.3: "context is per-thread; other threads must set it").
unsafe impl Send for Context {}
// SAFETY: as above; the handle itself is never mutated.
unsafe impl Sync for Context {}

impl Context {
    /// Opens device `device` (0-based, `< device_count()`) and creates a context on it, current
    /// on the calling thread. Errors: CANN not loadable, an invalid device id
    /// (`ACL_ERROR_RT_INVALID_DEVICEID` / `ACL_ERROR_INVALID_DEVICE` from CANN).
    pub fn new(device: i32) -> Result<Context> {
        let cann = init()?;
        let set = sym(&cann.acl.aclrtSetDevice, "aclrtSetDevice", ACL)?;
        let create = sym(&cann.acl.aclrtCreateContext, "aclrtCreateContext", ACL)?;
        // SAFETY: plain integer argument.
        check_acl(cann, "aclrtSetDevice", unsafe { set(device) })?;
        let mut handle: aclrtContext = std::ptr::null_mut();
        // SAFETY: writes one handle.
        let code = unsafe { create(&mut handle, device) };
        if let Err(e) = check_acl(cann, "aclrtCreateContext", code) {
            if let Ok(reset) = cann.acl.aclrtResetDevice.as_ref() {
                // SAFETY: undoes the aclrtSetDevice above.
                unsafe { reset(device) };
            }
            return Err(e);
        }
        Ok(Context {
            cann,
            device,
            handle,
        })
    }

    /// The device id.
    pub fn device(&self) -> i32 {
        self.device
    }

    /// The raw handle.
    pub fn raw(&self) -> aclrtContext {
        self.handle
    }

    /// Makes this context current on the calling thread.
    pub fn make_current(&self) -> Result<()> {
        set_current(self.cann, self.handle)
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; CANN logs them itself.
        // SAFETY: the context is live and nothing created in it survives (the owner's duty).
        unsafe {
            if let Ok(f) = self.cann.acl.aclrtDestroyContext.as_ref() {
                f(self.handle);
            }
            if let Ok(f) = self.cann.acl.aclrtResetDevice.as_ref() {
                f(self.device);
            }
        }
    }
}

/// An `aclrtStream`: an in-order queue of device work. Work is asynchronous; results are
/// visible to the host only after [`Stream::synchronize`].
pub struct Stream {
    cann: &'static Cann,
    ctx: aclrtContext,
    handle: aclrtStream,
}

// SAFETY: stream handles are usable from any thread whose current context owns them; every use
// here makes the context current first.
unsafe impl Send for Stream {}
// SAFETY: as above.
unsafe impl Sync for Stream {}

impl Stream {
    /// A new stream in `ctx` (made current on the calling thread). Errors: the call failing.
    pub fn new(ctx: &Context) -> Result<Stream> {
        ctx.make_current()?;
        let cann = ctx.cann;
        let f = sym(&cann.acl.aclrtCreateStream, "aclrtCreateStream", ACL)?;
        let mut handle: aclrtStream = std::ptr::null_mut();
        // SAFETY: writes one handle.
        check_acl(cann, "aclrtCreateStream", unsafe { f(&mut handle) })?;
        Ok(Stream {
            cann,
            ctx: ctx.raw(),
            handle,
        })
    }

    /// The raw handle (for aclnn phase 2 and async copies).
    pub fn raw(&self) -> aclrtStream {
        self.handle
    }

    /// Blocks until all work queued on the stream has finished (`aclrtSynchronizeStream`).
    /// Errors: a failure of queued work (reported here, at the synchronise, as on hardware).
    pub fn synchronize(&self) -> Result<()> {
        let f = sym(
            &self.cann.acl.aclrtSynchronizeStream,
            "aclrtSynchronizeStream",
            ACL,
        )?;
        // SAFETY: live stream handle.
        check_acl(self.cann, "aclrtSynchronizeStream", unsafe {
            f(self.handle)
        })
    }
}

impl Stream {
    /// Makes every task queued on this stream from now on wait for the work before `event`'s
    /// most recent record (`aclrtStreamWaitEvent`; the host does not wait).
    pub fn wait_event(&self, event: &Event) -> Result<()> {
        let f = sym(
            &self.cann.acl.aclrtStreamWaitEvent,
            "aclrtStreamWaitEvent",
            ACL,
        )?;
        // SAFETY: live handles of one context.
        check_acl(self.cann, "aclrtStreamWaitEvent", unsafe {
            f(self.handle, event.handle)
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: live handles; the context is made current for the destroy.
        unsafe {
            if let Ok(f) = self.cann.acl.aclrtSetCurrentContext.as_ref() {
                f(self.ctx);
            }
            if let Ok(f) = self.cann.acl.aclrtDestroyStream.as_ref() {
                f(self.handle);
            }
        }
    }
}

/// An `aclrtEvent`, for ordering and timing work on streams.
pub struct Event {
    cann: &'static Cann,
    ctx: aclrtContext,
    handle: aclrtEvent,
}

// SAFETY: as for Stream.
unsafe impl Send for Event {}
// SAFETY: as for Stream.
unsafe impl Sync for Event {}

impl Event {
    /// A new event in `ctx`. Errors: the call failing.
    pub fn new(ctx: &Context) -> Result<Event> {
        ctx.make_current()?;
        let cann = ctx.cann;
        let f = sym(&cann.acl.aclrtCreateEvent, "aclrtCreateEvent", ACL)?;
        let mut handle: aclrtEvent = std::ptr::null_mut();
        // SAFETY: writes one handle.
        check_acl(cann, "aclrtCreateEvent", unsafe { f(&mut handle) })?;
        Ok(Event {
            cann,
            ctx: ctx.raw(),
            handle,
        })
    }

    /// Records the event at the current end of `stream` (`aclrtRecordEvent`).
    pub fn record(&self, stream: &Stream) -> Result<()> {
        let f = sym(&self.cann.acl.aclrtRecordEvent, "aclrtRecordEvent", ACL)?;
        // SAFETY: live handles.
        check_acl(self.cann, "aclrtRecordEvent", unsafe {
            f(self.handle, stream.raw())
        })
    }

    /// Blocks until the work before the recorded point has finished.
    pub fn synchronize(&self) -> Result<()> {
        let f = sym(
            &self.cann.acl.aclrtSynchronizeEvent,
            "aclrtSynchronizeEvent",
            ACL,
        )?;
        // SAFETY: live handle.
        check_acl(self.cann, "aclrtSynchronizeEvent", unsafe {
            f(self.handle)
        })
    }

    /// Milliseconds between two recorded (and completed) events (`aclrtEventElapsedTime`).
    pub fn elapsed_ms(start: &Event, end: &Event) -> Result<f32> {
        let f = sym(
            &start.cann.acl.aclrtEventElapsedTime,
            "aclrtEventElapsedTime",
            ACL,
        )?;
        let mut ms = 0f32;
        // SAFETY: writes one f32; live handles.
        check_acl(start.cann, "aclrtEventElapsedTime", unsafe {
            f(&mut ms, start.handle, end.handle)
        })?;
        Ok(ms)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: live handles; the context is made current for the destroy.
        unsafe {
            if let Ok(f) = self.cann.acl.aclrtSetCurrentContext.as_ref() {
                f(self.ctx);
            }
            if let Ok(f) = self.cann.acl.aclrtDestroyEvent.as_ref() {
                f(self.handle);
            }
        }
    }
}

/// `aclrtGetSocName` names of the first-generation Ascend 910 (cann.md §2.5; note that the
/// bare `Ascend910B` is first-generation, the A2 parts being `Ascend910B1`..`B4`).
const FIRST_GEN_910: [&str; 5] = [
    "Ascend910A",
    "Ascend910ProA",
    "Ascend910B",
    "Ascend910ProB",
    "Ascend910PremiumA",
];

/// Whether `soc` is a first-generation Ascend 910.
pub(super) fn is_first_gen_910(soc: &str) -> bool {
    FIRST_GEN_910.contains(&soc)
}

/// The product line of a SoC as the vendor's operator documents tell them apart
/// (`shared/reference/aclnn-contract.md`, "Product names"): what an operator supports, and
/// how a FLOAT cube operation is computed, is documented per product line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Product {
    /// First-generation Ascend 910 ("Atlas 训练系列产品", [`FIRST_GEN_910`]).
    Ascend910,
    /// Atlas A2 (`Ascend910B1`..`Ascend910B4` and their suffixed variants).
    A2,
    /// Atlas A3 (`Ascend910_93xx`).
    A3,
    /// Ascend 950 (`Ascend950*`).
    Ascend950,
    /// Anything else (inference parts such as 310P/310B; senet is not documented to run
    /// there).
    Other,
}

/// The product line of `soc` (an `aclrtGetSocName` name).
pub(super) fn product(soc: &str) -> Product {
    if is_first_gen_910(soc) {
        Product::Ascend910
    } else if soc.starts_with("Ascend910_93") {
        Product::A3
    } else if soc
        .strip_prefix("Ascend910B")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    {
        Product::A2
    } else if soc.starts_with("Ascend950") {
        Product::Ascend950
    } else {
        Product::Other
    }
}

/// What [`devices`] reports: where CANN was loaded from and what it sees.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicesReport {
    /// The library files loaded (runtime, nnopbase, opapi, then libhccl when it loads), each
    /// once.
    pub libraries: Vec<PathBuf>,
    /// ACL version (major, minor, patch) from `aclrtGetVersion`, when the call exists.
    pub version: Option<(i32, i32, i32)>,
    /// NPUs visible to the process (`aclrtGetDeviceCount`).
    pub device_count: u32,
    /// `aclrtGetSocName`, e.g. `Ascend910B1`.
    pub soc_name: String,
    /// Whether that SoC is a first-generation Ascend 910 (fp32 cube work computed in fp16 with
    /// ALLOW_FP32_DOWN_PRECISION; aclnnConvolution documented only up to CANN 8.0).
    pub first_gen_910: bool,
}

/// Loads CANN and reports its libraries, version, device count and SoC (for `senet devices`).
/// Does not open a device. Errors: [`Error::DeviceUnavailable`] when CANN cannot be loaded (the
/// loader's message), [`Error::Device`] when `aclInit` or a query fails.
pub fn devices() -> Result<DevicesReport> {
    let cann = init()?;
    let soc_name = soc_name()?;
    // The emulator (one file for every library) would be listed once per library.
    let mut libraries: Vec<PathBuf> = Vec::new();
    let hccl = senet_cann_sys::hccl().ok().map(|(_, p)| p.clone());
    for p in cann.paths.iter().cloned().chain(hccl) {
        if !libraries.contains(&p) {
            libraries.push(p);
        }
    }
    Ok(DevicesReport {
        libraries,
        version: version().ok(),
        device_count: device_count()?,
        first_gen_910: is_first_gen_910(&soc_name),
        soc_name,
    })
}

#[cfg(test)]
mod tests {
    use super::{product, Product};

    #[test]
    fn soc_names_map_to_the_contract_product_lines() {
        for (soc, want) in [
            ("Ascend910A", Product::Ascend910),
            ("Ascend910B", Product::Ascend910),
            ("Ascend910ProB", Product::Ascend910),
            ("Ascend910B1", Product::A2),
            ("Ascend910B4", Product::A2),
            ("Ascend910B2C", Product::A2),
            ("Ascend910_9391", Product::A3),
            ("Ascend950PR", Product::Ascend950),
            ("Ascend310P3", Product::Other),
            ("Ascend910", Product::Other),
        ] {
            assert_eq!(product(soc), want, "{soc}");
        }
    }
}
