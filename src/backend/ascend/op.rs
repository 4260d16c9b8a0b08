//! The two-phase aclnn call, wrapped once (`shared/reference/cann.md` §2.2).
//!
//! `<Op>GetWorkspaceSize(args..., &ws, &executor)` plans the op on the host and returns a
//! single-use executor; [`Ctx::run`] then takes a workspace of `ws` bytes from the caching
//! allocator (none when 0), launches `<Op>(workspace, ws, executor, stream)` and hands the
//! workspace back to the cache in stream order (see `memory.rs` for why that is safe on one
//! stream). The argument objects were registered with the [`Ctx`] when created and live until
//! the first synchronise after the entry point that made them.
//!
//! An executor that never reached phase 2 (the workspace could not be allocated) is destroyed
//! with `aclDestroyAclOpExecutor`. Phase 2 consumes the executor whether or not it accepts the
//! launch, so a refused launch leaves nothing to free: the docs do not say what a failed
//! phase 2 does, but the vendor implementation deletes a non-repeatable executor after running
//! it whatever the result (`aclnn-contract.md` Part D, CommonOpExecutorRun; the emulator does
//! the same).
//!
//! Every operator symbol is resolved from `Cann.opapi` with [`sym`], so an operator missing
//! from the installed CANN is an [`crate::Error::DeviceUnavailable`] naming it, not a panic.
use std::ffi::c_void;

use senet_cann_sys::{aclOpExecutor, aclnnStatus, aclrtStream};

use super::device::{Count, Ctx};
use super::error::{check_nn, sym};
use crate::Result;

/// The library aclnn operators are resolved from (for error messages).
pub const OPAPI: &str = "libopapi.so";

/// The phase-2 signature shared by every aclnn operator.
pub type LaunchFn =
    unsafe extern "C" fn(*mut c_void, u64, *mut aclOpExecutor, aclrtStream) -> aclnnStatus;

impl Ctx<'_> {
    /// Runs one aclnn operator: `plan` calls `<name>GetWorkspaceSize` with the op's arguments
    /// and the two out-pointers; `launch` is the resolved `<name>` symbol field.
    /// Errors: [`crate::Error::Device`] naming `<name>GetWorkspaceSize` or `<name>` with the
    /// status and CANN's message; the workspace allocation's error.
    pub fn run<E: std::fmt::Display>(
        &mut self,
        name: &str,
        launch: &std::result::Result<LaunchFn, E>,
        plan: impl FnOnce(*mut u64, *mut *mut aclOpExecutor) -> aclnnStatus,
    ) -> Result<()> {
        let cann = self.cann();
        let launch = *sym(launch, name, OPAPI)?;
        let mut ws_size = 0u64;
        let mut executor: *mut aclOpExecutor = std::ptr::null_mut();
        let status = plan(&mut ws_size, &mut executor);
        check_nn(cann, &format!("{name}GetWorkspaceSize"), status)?;
        let workspace = if ws_size > 0 {
            match self.alloc(ws_size as usize) {
                Ok(b) => Some(b),
                Err(e) => {
                    if let Ok(destroy) = cann.nnopbase.aclDestroyAclOpExecutor.as_ref() {
                        // SAFETY: the executor from phase 1 was never launched.
                        unsafe { destroy(executor) };
                    }
                    return Err(e);
                }
            }
        } else {
            None
        };
        let ws_ptr = workspace.as_ref().map_or(std::ptr::null_mut(), |b| b.ptr());
        // SAFETY: the executor comes from phase 1 of the same op; the workspace holds ws_size
        // bytes; the stream belongs to the current context.
        let status = unsafe { launch(ws_ptr, ws_size, executor, self.stream()) };
        self.dev.count(Count::Launch);
        if status != 0 {
            // Phase 2 consumes the executor whether or not it accepts the launch (contract
            // Part D): never destroy it here.
            return check_nn(cann, name, status);
        }
        drop(workspace);
        Ok(())
    }
}

/// Runs `aclnn<Op>` through [`Ctx::run`]: `aclnn!(ctx, aclnnAdd, aclnnAddGetWorkspaceSize,
/// arg, ...)`, the args being those of `GetWorkspaceSize` before its two out-pointers.
macro_rules! aclnn {
    ($ctx:expr, $op:ident, $plan:ident $(, $arg:expr)* $(,)?) => {{
        let api = &$ctx.cann().opapi;
        let plan = *$crate::backend::ascend::error::sym(
            &api.$plan,
            stringify!($plan),
            $crate::backend::ascend::op::OPAPI,
        )?;
        $ctx.run(stringify!($op), &api.$op, |ws, ex| {
            // SAFETY: the arguments are live aclnn objects registered with the context (kept
            // until the next synchronise) and plain values; ws and ex are valid out-pointers.
            unsafe { plan($($arg,)* ws, ex) }
        })
    }};
}
pub(crate) use aclnn;
