//! The exported aclnn operators (`libopapi.so`'s part of `cann_subset.h`) and what they share:
//! argument lookup and validation, executor creation (phase 1) and launch (phase 2).
//!
//! Phase 1 (`aclnnXxxGetWorkspaceSize`) validates everything on the host, against the contract of
//! the emulated product ([`crate::contract::check`]) and the operator's own shape rules, and
//! returns an executor holding copies of every descriptor and attribute, plus the caller's
//! aclTensor / aclTensorList handles: those must stay alive until phase 2 returns (for a
//! repeatable executor until `aclDestroyAclOpExecutor`), because the vendor's executor keeps
//! pointers to them (contract Part D); a launch that finds one destroyed reports the
//! use-after-free. aclScalar and array objects are copied by the emulator and may go after phase 1
//! (the contract states no lifetime rule for them). Phase 2 (`aclnnXxx`) checks the executor,
//! workspace and stream, and queues the computation: inputs are read into contiguous `f32` when
//! the stream runs, computed by [`crate::reference`], and written through the outputs' views
//! rounded to their dtype.
use std::ffi::c_void;
use std::sync::Arc;

use senet_cann_sys::*;

use crate::api::{self, Fail, Res};
use crate::memory::Kind;
use crate::objects::{self, Executor, Obj, TensorDesc};
use crate::state::with_emu;
use crate::view;

pub mod conv;
pub mod copy;
pub mod cube;
pub mod elementwise;
pub mod foreach;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod pool;

/// Tensor handle resolved to its descriptor.
pub type T = Arc<TensorDesc>;

/// The computation of a planned op.
pub type RunFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Runs an aclnn function body (status codes: `ACLNN_*`).
pub fn nn(name: &str, body: impl FnOnce() -> Res<()>) -> aclnnStatus {
    api::status(name, ACLNN_ERR_INNER, body)
}

/// The tensors of a required list argument: null is `ACLNN_ERR_PARAM_NULLPTR` (the 161001 row
/// of the list operators' docs, e.g. aclnnFusedSgd's and the foreach ones').
pub fn list(p: *const aclTensorList, what: &str) -> Res<Vec<T>> {
    if p.is_null() {
        return Err(Fail::new(
            ACLNN_ERR_PARAM_NULLPTR,
            format!("{what} is null"),
        ));
    }
    objects::tensor_list(p, what)
}

/// `ACLNN_ERR_PARAM_INVALID` with `msg`.
pub fn bad(msg: impl Into<String>) -> Fail {
    Fail::new(ACLNN_ERR_PARAM_INVALID, msg)
}

/// Common start of phase 1: `aclInit` done, output pointers non-null.
pub fn begin(ws: *mut u64, ex: *mut *mut aclOpExecutor) -> Res<()> {
    with_emu(|e| e.require_init()).map_err(|f| Fail::new(ACLNN_ERR_RUNTIME_ERROR, f.msg))?;
    api::ensure(!ws.is_null(), ACLNN_ERR_PARAM_NULLPTR, || {
        "workspaceSize is null".into()
    })?;
    api::ensure(!ex.is_null(), ACLNN_ERR_PARAM_NULLPTR, || {
        "executor is null".into()
    })?;
    objects::start_recording();
    Ok(())
}

/// Common end of phase 1: registers the executor for `op` and writes the outputs.
///
/// # Safety
/// `ws` and `ex` are non-null (checked by [`begin`]) and writable.
pub unsafe fn finish(
    ws: *mut u64,
    ex: *mut *mut aclOpExecutor,
    op: &'static str,
    workspace: u64,
    tensors: Vec<T>,
    run: RunFn,
) -> Res<()> {
    let id = objects::insert(Obj::Executor(Executor {
        op,
        workspace,
        repeatable: false,
        tensors,
        args: objects::take_recorded(),
        run,
    }));
    unsafe {
        *ws = workspace;
        *ex = id as *mut aclOpExecutor;
    }
    Ok(())
}

/// Workspace size for an op whose largest output is `bytes` bytes: rounded up to 512, at least
/// 512 (deterministic and non-zero, so callers must really allocate and pass it).
pub fn workspace_for(bytes: usize) -> u64 {
    (bytes.max(1) as u64).div_ceil(512) * 512
}

/// Phase 2 of every op: checks the executor (live, planned for `name`, unused unless
/// repeatable), `workspaceSize` (equal to phase 1's), the workspace (inside a live device
/// allocation of at least that size), the stream and that every tensor's memory is still
/// allocated; then queues the computation on the stream. A non-repeatable executor is consumed
/// (freed) by this call even when it fails: the caller never destroys it after phase 2.
pub fn launch(
    name: &'static str,
    workspace: *mut c_void,
    workspace_size: u64,
    executor: *mut aclOpExecutor,
    stream: aclrtStream,
) -> aclnnStatus {
    let status = nn(name, || {
        let (op, expect_ws, args, tensors, run) = objects::lookup(
            executor as usize,
            "aclOpExecutor",
            "executor",
            |o| match o {
                Obj::Executor(x) => Some((
                    x.op,
                    x.workspace,
                    x.args.clone(),
                    x.tensors.clone(),
                    x.run.clone(),
                )),
                _ => None,
            },
        )?;
        args_alive(op, &args)?;
        if op != name {
            return Err(bad(format!(
                "the executor was planned by {op}GetWorkspaceSize; launch it with {op}, not {name}"
            )));
        }
        if workspace_size != expect_ws {
            return Err(bad(format!(
                "workspaceSize {workspace_size} differs from the {expect_ws} that {name}GetWorkspaceSize returned"
            )));
        }
        with_emu(|e| {
            let s = e
                .stream(stream)
                .map_err(|f| Fail::new(ACLNN_ERR_RUNTIME_ERROR, f.msg))?;
            let mut uses = Vec::new();
            if workspace_size > 0 {
                if workspace.is_null() {
                    let r = &crate::contract::rules::WORKSPACE_NULL;
                    return Err(Fail::new(
                        ACLNN_ERR_PARAM_NULLPTR,
                        format!(
                            "workspace is null but workspaceSize is {workspace_size} [contract rule: {}; source: {}]",
                            r.text, r.src
                        ),
                    ));
                }
                let start = e
                    .memory
                    .check_range(workspace as usize, workspace_size as usize, |k| {
                        matches!(k, Kind::Device(_))
                    })
                    .map_err(|m| bad(format!("workspace: {m}")))?;
                uses.push(start);
            }
            for t in &tensors {
                match crate::nnopbase_api::tensor_alloc(e, t) {
                    Ok(Some(start)) => uses.push(start),
                    Ok(None) => {}
                    Err(m) => {
                        return Err(bad(format!(
                            "tensor {} at {:#x}: {m} (freed after phase 1?)",
                            t.describe(),
                            t.addr
                        )))
                    }
                }
            }
            uses.sort_unstable();
            uses.dedup();
            e.enqueue(&s, name, uses, Arc::new(move || run()))
                .map_err(|m| Fail::new(ACLNN_ERR_RUNTIME_ERROR, m))?;
            Ok(())
        })?;
        Ok(())
    });
    // Phase 2 consumes a live, non-repeatable executor whether or not it accepts the launch
    // (an injected failure included): cann.md §2.1 "phase 2 consumes and frees it".
    objects::with_objects(|m| {
        if matches!(m.get(&(executor as usize)), Some(Obj::Executor(x)) if !x.repeatable) {
            m.remove(&(executor as usize));
        }
    });
    status
}

/// Fails if one of the caller's argument objects of `op`'s phase 1 was destroyed: a
/// use-after-free on a real device (contract Part D, [`crate::contract::rules::EXECUTOR_ARGS_ALIVE`]).
pub fn args_alive(op: &str, args: &[(usize, String)]) -> Res<()> {
    match objects::first_destroyed(args) {
        None => Ok(()),
        Some((p, what)) => {
            let r = &crate::contract::rules::EXECUTOR_ARGS_ALIVE;
            Err(bad(format!(
                "use after free: {what} ({p:#x}), given to {op}GetWorkspaceSize, was destroyed before this launch returned [contract rule: {}; source: {}]",
                r.text, r.src
            )))
        }
    }
}

/// Defines the exported phase-2 function of an op.
macro_rules! launch_fn {
    ($name:ident) => {
        #[doc = concat!(
            "Phase 2 of `", stringify!($name), "`: checks the executor, workspace and stream, ",
            "then queues the computation planned by `", stringify!($name), "GetWorkspaceSize`."
        )]
        #[no_mangle]
        pub extern "C" fn $name(
            workspace: *mut std::ffi::c_void,
            workspaceSize: u64,
            executor: *mut senet_cann_sys::aclOpExecutor,
            stream: senet_cann_sys::aclrtStream,
        ) -> senet_cann_sys::aclnnStatus {
            $crate::ops::launch(stringify!($name), workspace, workspaceSize, executor, stream)
        }
    };
}
pub(crate) use launch_fn;

/// Requires every tensor of `ts` to share one float dtype among FLOAT, FLOAT16 and BFLOAT16 (the
/// dtypes the emulator computes; the contract decides which the product accepts); returns it.
pub fn float_dtype(op: &str, ts: &[(&str, &TensorDesc)]) -> Res<aclDataType> {
    let (n0, t0) = ts[0];
    let dt = t0.dtype;
    if !matches!(
        dt,
        aclDataType::ACL_FLOAT | aclDataType::ACL_FLOAT16 | aclDataType::ACL_BF16
    ) {
        return Err(bad(format!(
            "{n0} is {}; the emulator computes {op} in FLOAT, FLOAT16 or BFLOAT16",
            view::dtype_name(dt)
        )));
    }
    for (n, t) in &ts[1..] {
        if t.dtype != dt {
            return Err(bad(format!(
                "{n0} is {} but {n} is {}; the float tensors of {op} must share one dtype",
                view::dtype_name(dt),
                view::dtype_name(t.dtype)
            )));
        }
    }
    Ok(dt)
}

/// Requires `t` (named `what`) to have exactly the shape `dims`.
pub fn expect_shape(what: &str, t: &TensorDesc, dims: &[i64], why: &str) -> Res<()> {
    if t.dims == dims {
        Ok(())
    } else {
        Err(bad(format!(
            "{what} is {:?} but must be {dims:?} ({why})",
            t.dims
        )))
    }
}

/// Requires `t` to have rank `r`.
pub fn expect_rank(what: &str, t: &TensorDesc, r: usize) -> Res<()> {
    if t.dims.len() == r {
        Ok(())
    } else {
        Err(bad(format!(
            "{what} {:?} has {} dims; {r} are required",
            t.dims,
            t.dims.len()
        )))
    }
}

/// A 2-D attribute (kernel, stride, padding, dilation) from an int array of 1 or 2 entries
/// (one entry applies to both dims); `empty` is used for an empty array when given.
pub fn pair(v: &[i64], what: &str, min: i64, empty: Option<[usize; 2]>) -> Res<[usize; 2]> {
    let p = match (v, empty) {
        ([], Some(e)) => return Ok(e),
        ([a], _) => [*a, *a],
        ([a, b], _) => [*a, *b],
        _ => return Err(bad(format!("{what} {v:?} must have 1 or 2 entries"))),
    };
    if p.iter().any(|&x| x < min) {
        return Err(bad(format!("{what} {v:?} must be >= {min}")));
    }
    Ok([p[0] as usize, p[1] as usize])
}

/// Broadcast shape of `a` and `b` (numpy rules), or an error naming them.
pub fn broadcast(an: &str, a: &[i64], bn: &str, b: &[i64]) -> Res<Vec<i64>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        let da = (i + a.len()).checked_sub(r).map_or(1, |j| a[j]);
        let db = (i + b.len()).checked_sub(r).map_or(1, |j| b[j]);
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(bad(format!(
                "{an} {a:?} and {bn} {b:?} cannot be broadcast together"
            )));
        };
    }
    Ok(out)
}

/// Converts a reference-math error into a task failure message.
pub fn refr<U>(r: Result<U, String>) -> Result<U, String> {
    r.map_err(|m| format!("reference computation: {m}"))
}
