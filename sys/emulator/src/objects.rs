//! Registries of live aclnn objects (tensors, scalars, arrays, tensor lists, executors), so
//! that null, foreign, destroyed and wrongly-typed handles are all detected.
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use senet_cann_sys::*;

use crate::api::{Fail, Res};
use crate::view;

/// An `aclTensor`: a strided view of device memory (sizes, strides and offset in elements).
#[derive(Debug, Clone)]
pub struct TensorDesc {
    /// View shape.
    pub dims: Vec<i64>,
    /// Element type.
    pub dtype: aclDataType,
    /// View strides, one per view dim.
    pub strides: Vec<i64>,
    /// Offset of the view's first element from `addr`, in elements.
    pub offset: i64,
    /// Declared format (ND, NCHW, ...).
    pub format: aclFormat,
    /// Shape of the underlying storage.
    pub storage: Vec<i64>,
    /// Device address of the storage.
    pub addr: usize,
}

impl TensorDesc {
    /// Number of elements of the view.
    pub fn numel(&self) -> usize {
        self.dims.iter().map(|&d| d as usize).product()
    }

    /// View shape as `usize`.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().map(|&d| d as usize).collect()
    }

    /// Bytes of the storage (`numel(storage) * element size`).
    pub fn storage_bytes(&self) -> usize {
        self.storage.iter().map(|&d| d as usize).product::<usize>()
            * view::elem_size(self.dtype).unwrap_or(1)
    }

    /// Byte size of a contiguous copy of the view.
    pub fn view_bytes(&self) -> usize {
        self.numel() * view::elem_size(self.dtype).unwrap_or(1)
    }

    /// `[2, 3, 4] FLOAT16`, for messages.
    pub fn describe(&self) -> String {
        format!("{:?} {}", self.dims, view::dtype_name(self.dtype))
    }

    /// Whether the view is row-major contiguous.
    pub fn is_contiguous(&self) -> bool {
        let mut expect = 1i64;
        for (d, s) in self.dims.iter().zip(&self.strides).rev() {
            if *d != 1 && *s != expect {
                return false;
            }
            expect *= *d;
        }
        true
    }
}

/// An `aclScalar`: the value read at creation.
#[derive(Debug, Clone, Copy)]
pub struct Scalar {
    /// Declared type.
    pub dtype: aclDataType,
    /// Value as a float.
    pub value: f64,
}

/// An `aclOpExecutor`: what phase 1 planned, run by phase 2.
pub struct Executor {
    /// The phase-2 function that may launch it (`aclnnConvolution`, ...).
    pub op: &'static str,
    /// Workspace size phase 1 returned.
    pub workspace: u64,
    /// Set by `aclSetAclOpExecutorRepeatable`: not consumed by launches.
    pub repeatable: bool,
    /// Every tensor the op reads or writes (copies of the caller's descriptors).
    pub tensors: Vec<Arc<TensorDesc>>,
    /// The caller's aclTensor / aclTensorList handles phase 1 was given, with the argument
    /// name: they must stay alive until phase 2 returns (contract Part D).
    pub args: Vec<(usize, String)>,
    /// The computation, run when the stream reaches the launch.
    pub run: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
}

/// A live object.
pub enum Obj {
    /// `aclTensor`.
    Tensor(Arc<TensorDesc>),
    /// `aclScalar`.
    Scalar(Scalar),
    /// `aclIntArray`.
    IntArray(Vec<i64>),
    /// `aclFloatArray`.
    FloatArray(Vec<f32>),
    /// `aclBoolArray`.
    BoolArray(Vec<bool>),
    /// `aclTensorList`: copies of the member tensors, and the member handles, which the list
    /// owns from then on: destroying it destroys them ("对于aclTensorList内的aclTensor不需要重复
    /// 释放", opbase `docs/zh/nnopbase/aclnn/aclDestroyTensorList.md`), so a caller that
    /// destroys them again frees them twice.
    TensorList(Vec<Arc<TensorDesc>>, Vec<usize>),
    /// `aclOpExecutor`.
    Executor(Executor),
}

impl Obj {
    /// The C type name.
    pub fn kind(&self) -> &'static str {
        match self {
            Obj::Tensor(_) => "aclTensor",
            Obj::Scalar(_) => "aclScalar",
            Obj::IntArray(_) => "aclIntArray",
            Obj::FloatArray(_) => "aclFloatArray",
            Obj::BoolArray(_) => "aclBoolArray",
            Obj::TensorList(..) => "aclTensorList",
            Obj::Executor(_) => "aclOpExecutor",
        }
    }
}

static OBJECTS: Mutex<Option<HashMap<usize, Obj>>> = Mutex::new(None);

fn lock() -> MutexGuard<'static, Option<HashMap<usize, Obj>>> {
    OBJECTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` with the registry locked.
pub fn with_objects<R>(f: impl FnOnce(&mut HashMap<usize, Obj>) -> R) -> R {
    let mut g = lock();
    f(g.get_or_insert_with(HashMap::new))
}

/// Registers `obj` and returns its handle.
pub fn insert(obj: Obj) -> usize {
    let id = crate::state::next_id();
    with_objects(|m| m.insert(id, obj));
    id
}

/// Number of live objects.
pub fn live_count() -> usize {
    with_objects(|m| m.len())
}

thread_local! {
    /// The tensor and tensor-list handles looked up by the phase 1 running on this thread.
    static RECORDED: RefCell<Option<Vec<(usize, String)>>> = const { RefCell::new(None) };
}

/// Starts recording the aclTensor / aclTensorList handles this thread looks up (phase 1).
pub fn start_recording() {
    RECORDED.with(|r| *r.borrow_mut() = Some(Vec::new()));
}

/// Stops recording and returns the handles looked up since [`start_recording`].
pub fn take_recorded() -> Vec<(usize, String)> {
    RECORDED.with(|r| r.borrow_mut().take().unwrap_or_default())
}

fn record(p: usize, what: &str) {
    RECORDED.with(|r| {
        if let Some(v) = r.borrow_mut().as_mut() {
            v.push((p, what.to_string()));
        }
    });
}

/// The first of `args` that is no longer a live object, with its argument name.
pub fn first_destroyed(args: &[(usize, String)]) -> Option<(usize, String)> {
    with_objects(|m| {
        args.iter()
            .find(|(p, _)| !matches!(m.get(p), Some(Obj::Tensor(_) | Obj::TensorList(..))))
            .cloned()
    })
}

/// Looks `p` up as a `kind`, applying `f` to the object. Null gives `ACLNN_ERR_PARAM_NULLPTR`,
/// a handle that is not a live object of that kind `ACLNN_ERR_PARAM_INVALID`.
pub fn lookup<T>(
    p: usize,
    kind: &str,
    what: &str,
    f: impl FnOnce(&mut Obj) -> Option<T>,
) -> Res<T> {
    if p == 0 {
        return Err(Fail::new(
            ACLNN_ERR_PARAM_NULLPTR,
            format!("{what} ({kind}) is null"),
        ));
    }
    with_objects(|m| match m.get_mut(&p) {
        None => Err(Fail::new(
            ACLNN_ERR_PARAM_INVALID,
            format!(
                "{what} {p:#x} is not a live {kind} (destroyed, already consumed, or never created)"
            ),
        )),
        Some(o) => {
            let actual = o.kind();
            f(o).ok_or_else(|| {
                Fail::new(
                    ACLNN_ERR_PARAM_INVALID,
                    format!("{what} {p:#x} is an {actual}, not an {kind}"),
                )
            })
        }
    })
}

/// The tensor behind handle `p` (recorded as an argument of the phase 1 running, if any).
pub fn tensor(p: *const aclTensor, what: &str) -> Res<Arc<TensorDesc>> {
    let t = lookup(p as usize, "aclTensor", what, |o| match o {
        Obj::Tensor(t) => Some(t.clone()),
        _ => None,
    })?;
    record(p as usize, what);
    Ok(t)
}

/// The member tensors of the tensor list behind `p` (recorded like [`tensor`]).
pub fn tensor_list(p: *const aclTensorList, what: &str) -> Res<Vec<Arc<TensorDesc>>> {
    let v = lookup(p as usize, "aclTensorList", what, |o| match o {
        Obj::TensorList(v, _) => Some(v.clone()),
        _ => None,
    })?;
    record(p as usize, what);
    Ok(v)
}

/// The tensor behind `p`, or `None` for null.
pub fn opt_tensor(p: *const aclTensor, what: &str) -> Res<Option<Arc<TensorDesc>>> {
    if p.is_null() {
        Ok(None)
    } else {
        tensor(p, what).map(Some)
    }
}

/// The scalar behind `p`.
pub fn scalar(p: *const aclScalar, what: &str) -> Res<Scalar> {
    lookup(p as usize, "aclScalar", what, |o| match o {
        Obj::Scalar(s) => Some(*s),
        _ => None,
    })
}

/// The values of the int array behind `p`.
pub fn int_array(p: *const aclIntArray, what: &str) -> Res<Vec<i64>> {
    lookup(p as usize, "aclIntArray", what, |o| match o {
        Obj::IntArray(v) => Some(v.clone()),
        _ => None,
    })
}

/// The values of the bool array behind `p`.
pub fn bool_array(p: *const aclBoolArray, what: &str) -> Res<Vec<bool>> {
    lookup(p as usize, "aclBoolArray", what, |o| match o {
        Obj::BoolArray(v) => Some(v.clone()),
        _ => None,
    })
}

/// Removes the object `p` of type `kind`.
pub fn destroy(p: usize, kind: &str, what: &str) -> Res<()> {
    lookup(p, kind, what, |o| (o.kind() == kind).then_some(()))?;
    with_objects(|m| {
        if let Some(Obj::TensorList(_, members)) = m.remove(&p) {
            for t in members {
                if matches!(m.get(&t), Some(Obj::Tensor(_))) {
                    m.remove(&t);
                }
            }
        }
    });
    Ok(())
}
