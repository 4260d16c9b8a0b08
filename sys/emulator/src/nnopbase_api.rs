//! The exported aclnn object API (`libnnopbase.so`'s part of `cann_subset.h`): creating and
//! destroying tensors, scalars, arrays, tensor lists and executors.
use std::ffi::c_void;
use std::os::raw::c_char;
use std::sync::Arc;

use half::{bf16, f16};
use senet_cann_sys::*;

use crate::api::{self, Fail, Res};
use crate::memory::Kind;
use crate::objects::{self, Obj, Scalar, TensorDesc};
use crate::state::with_emu;
use crate::view;

/// Most dims a tensor may have (as aclnn).
pub const MAX_DIMS: u64 = 8;

fn nn(name: &str, body: impl FnOnce() -> Res<()>) -> aclnnStatus {
    api::status(name, ACLNN_ERR_INNER, body)
}

fn bad(msg: impl Into<String>) -> Fail {
    Fail::new(ACLNN_ERR_PARAM_INVALID, msg)
}

unsafe fn dims_arg(p: *const i64, n: u64, what: &str) -> Res<Vec<i64>> {
    if n > MAX_DIMS {
        return Err(bad(format!(
            "{what}: {n} dims, at most {MAX_DIMS} are supported"
        )));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(Fail::new(
            ACLNN_ERR_PARAM_NULLPTR,
            format!("{what} is null but has {n} entries"),
        ));
    }
    Ok(std::slice::from_raw_parts(p, n as usize).to_vec())
}

/// Checks a tensor descriptor against the documented contract and the memory registry.
fn check_tensor(t: &TensorDesc) -> Res<()> {
    if let Some(d) = t.dims.iter().find(|&&d| d < 0) {
        return Err(bad(format!("view dim {d} in {:?} is negative", t.dims)));
    }
    if let Some(d) = t.storage.iter().find(|&&d| d < 0) {
        return Err(bad(format!(
            "storage dim {d} in {:?} is negative",
            t.storage
        )));
    }
    if let Some(s) = t.strides.iter().find(|&&s| s < 0) {
        return Err(bad(format!(
            "stride {s} in {:?} is negative (the emulator supports non-negative strides)",
            t.strides
        )));
    }
    let es =
        view::elem_size(t.dtype).ok_or_else(|| bad(format!("unknown data type {}", t.dtype.0)))?;
    if !matches!(
        t.format,
        aclFormat::ACL_FORMAT_ND
            | aclFormat::ACL_FORMAT_NCHW
            | aclFormat::ACL_FORMAT_NC
            | aclFormat::ACL_FORMAT_NCL
            | aclFormat::ACL_FORMAT_NHWC
    ) {
        return Err(bad(format!(
            "format {} is not one aclnn accepts from the caller (ND, NCHW, NHWC, NC, NCL)",
            t.format.0
        )));
    }
    if t.offset < 0 {
        return Err(bad(format!("offset {} is negative", t.offset)));
    }
    let n = t.numel();
    if n == 0 {
        return Ok(());
    }
    let storage_elems: i128 = t.storage.iter().map(|&d| i128::from(d)).product();
    let last: i128 = i128::from(t.offset)
        + t.dims
            .iter()
            .zip(&t.strides)
            .map(|(&d, &s)| i128::from(d - 1) * i128::from(s))
            .sum::<i128>();
    if last >= storage_elems {
        return Err(bad(format!(
            "the view (dims {:?}, strides {:?}, offset {}) reaches element {last}, but storage {:?} has {storage_elems}",
            t.dims, t.strides, t.offset, t.storage
        )));
    }
    if t.addr == 0 {
        return Err(Fail::new(ACLNN_ERR_PARAM_NULLPTR, "tensorData is null"));
    }
    if !t.addr.is_multiple_of(32) {
        return Err(bad(format!(
            "tensorData {:#x} is not 32-byte aligned",
            t.addr
        )));
    }
    let bytes = storage_elems as usize * es;
    with_emu(|e| {
        e.memory
            .check_range(t.addr, bytes, |k| matches!(k, Kind::Device(_)))
            .map(|_| ())
            .map_err(|m| {
                bad(format!(
                    "tensorData with storage {:?} {} ({bytes} bytes): {m}",
                    t.storage,
                    view::dtype_name(t.dtype)
                ))
            })
    })
}

/// Checks that a tensor's storage still lies inside a live device allocation (phase 2);
/// returns the allocation's start (`None` for an empty tensor).
pub(crate) fn tensor_alloc(e: &crate::state::Emu, t: &TensorDesc) -> Result<Option<usize>, String> {
    if t.numel() == 0 {
        return Ok(None);
    }
    e.memory
        .check_range(t.addr, t.storage_bytes(), |k| matches!(k, Kind::Device(_)))
        .map(Some)
}

/// Creates a tensor descriptor. Validates: dims and strides given for every view dim, no
/// negative dim or stride, a known dtype, format ND/NCHW/NHWC/NC/NCL, offset >= 0, and (for a
/// non-empty view) `tensorData` 32-byte aligned inside a live device allocation that holds the
/// whole storage, with every element of the view inside the storage. Null on failure.
#[no_mangle]
pub unsafe extern "C" fn aclCreateTensor(
    viewDims: *const i64,
    viewDimsNum: u64,
    dataType: aclDataType,
    stride: *const i64,
    offset: i64,
    format: aclFormat,
    storageDims: *const i64,
    storageDimsNum: u64,
    tensorData: *mut c_void,
) -> *mut aclTensor {
    api::object("aclCreateTensor", || {
        let dims = dims_arg(viewDims, viewDimsNum, "viewDims")?;
        let strides = dims_arg(stride, viewDimsNum, "stride")?;
        let storage = dims_arg(storageDims, storageDimsNum, "storageDims")?;
        let t = TensorDesc {
            dims,
            dtype: dataType,
            strides,
            offset,
            format,
            storage,
            addr: tensorData as usize,
        };
        check_tensor(&t)?;
        Ok(objects::insert(Obj::Tensor(Arc::new(t))) as *mut aclTensor)
    })
}

/// Creates a scalar, reading `*value` now as the C type `dataType` names.
#[no_mangle]
pub unsafe extern "C" fn aclCreateScalar(
    value: *mut c_void,
    dataType: aclDataType,
) -> *mut aclScalar {
    api::object("aclCreateScalar", || {
        if value.is_null() {
            return Err(Fail::new(ACLNN_ERR_PARAM_NULLPTR, "value is null"));
        }
        let p = value as *const u8;
        let v = match dataType {
            aclDataType::ACL_FLOAT16 => f16::from_bits((p as *const u16).read_unaligned()).to_f64(),
            aclDataType::ACL_BF16 => bf16::from_bits((p as *const u16).read_unaligned()).to_f64(),
            dt if view::elem_size(dt).is_some() => view::load(p as usize, dt),
            dt => return Err(bad(format!("unknown data type {}", dt.0))),
        };
        Ok(objects::insert(Obj::Scalar(Scalar {
            dtype: dataType,
            value: v,
        })) as *mut aclScalar)
    })
}

unsafe fn values<T: Copy>(p: *const T, n: u64) -> Res<Vec<T>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(Fail::new(
            ACLNN_ERR_PARAM_NULLPTR,
            format!("value is null but size is {n}"),
        ));
    }
    Ok(std::slice::from_raw_parts(p, n as usize).to_vec())
}

/// Creates an int array holding a copy of `value[..size]`.
#[no_mangle]
pub unsafe extern "C" fn aclCreateIntArray(value: *const i64, size: u64) -> *mut aclIntArray {
    api::object("aclCreateIntArray", || {
        Ok(objects::insert(Obj::IntArray(values(value, size)?)) as *mut aclIntArray)
    })
}

/// Creates a float array holding a copy of `value[..size]`.
#[no_mangle]
pub unsafe extern "C" fn aclCreateFloatArray(value: *const f32, size: u64) -> *mut aclFloatArray {
    api::object("aclCreateFloatArray", || {
        Ok(objects::insert(Obj::FloatArray(values(value, size)?)) as *mut aclFloatArray)
    })
}

/// Creates a bool array holding a copy of `value[..size]`.
#[no_mangle]
pub unsafe extern "C" fn aclCreateBoolArray(value: *const bool, size: u64) -> *mut aclBoolArray {
    api::object("aclCreateBoolArray", || {
        let raw: Vec<u8> = values(value as *const u8, size)?;
        Ok(
            objects::insert(Obj::BoolArray(raw.into_iter().map(|b| b != 0).collect()))
                as *mut aclBoolArray,
        )
    })
}

/// Creates a tensor list holding copies of the (live) tensors `value[..size]`; the list owns
/// those handles from then on ([`Obj::TensorList`]).
#[no_mangle]
pub unsafe extern "C" fn aclCreateTensorList(
    value: *const *const aclTensor,
    size: u64,
) -> *mut aclTensorList {
    api::object("aclCreateTensorList", || {
        let ptrs = values(value, size)?;
        let tensors = ptrs
            .iter()
            .enumerate()
            .map(|(i, &t)| objects::tensor(t, &format!("value[{i}]")))
            .collect::<Res<Vec<_>>>()?;
        let handles = ptrs.iter().map(|&t| t as usize).collect();
        Ok(objects::insert(Obj::TensorList(tensors, handles)) as *mut aclTensorList)
    })
}

macro_rules! destroy_fn {
    ($(#[$doc:meta])* $name:ident, $ty:ty, $kind:literal) => {
        $(#[$doc])*
        #[no_mangle]
        pub extern "C" fn $name(object: *const $ty) -> aclnnStatus {
            nn(stringify!($name), || objects::destroy(object as usize, $kind, "argument"))
        }
    };
}

destroy_fn!(
    /// Destroys a tensor descriptor (the device memory is the caller's).
    aclDestroyTensor, aclTensor, "aclTensor");
destroy_fn!(
    /// Destroys a scalar.
    aclDestroyScalar, aclScalar, "aclScalar");
destroy_fn!(
    /// Destroys an int array.
    aclDestroyIntArray, aclIntArray, "aclIntArray");
destroy_fn!(
    /// Destroys a float array.
    aclDestroyFloatArray, aclFloatArray, "aclFloatArray");
destroy_fn!(
    /// Destroys a bool array.
    aclDestroyBoolArray, aclBoolArray, "aclBoolArray");
destroy_fn!(
    /// Destroys a tensor list and the tensors it was made from (see [`Obj::TensorList`]).
    aclDestroyTensorList, aclTensorList, "aclTensorList");

/// Makes an executor reusable: launches no longer consume it, and the caller must destroy it
/// with `aclDestroyAclOpExecutor`.
#[no_mangle]
pub extern "C" fn aclSetAclOpExecutorRepeatable(executor: *mut aclOpExecutor) -> aclnnStatus {
    nn("aclSetAclOpExecutorRepeatable", || {
        objects::lookup(
            executor as usize,
            "aclOpExecutor",
            "executor",
            |o| match o {
                Obj::Executor(x) => {
                    x.repeatable = true;
                    Some(())
                }
                _ => None,
            },
        )
    })
}

/// Destroys an executor (a repeatable one, or a single-use one that will not be launched). A
/// repeatable executor whose phase-1 aclTensor arguments were destroyed before it is reported
/// (use after free, contract Part D) after it is destroyed.
#[no_mangle]
pub extern "C" fn aclDestroyAclOpExecutor(executor: *mut aclOpExecutor) -> aclnnStatus {
    nn("aclDestroyAclOpExecutor", || {
        let found = objects::lookup(
            executor as usize,
            "aclOpExecutor",
            "executor",
            |o| match o {
                Obj::Executor(x) => Some((x.op, x.repeatable, x.args.clone())),
                _ => None,
            },
        )?;
        objects::destroy(executor as usize, "aclOpExecutor", "executor")?;
        match found {
            (op, true, args) => crate::ops::args_alive(op, &args),
            _ => Ok(()),
        }
    })
}

/// Initialises aclnn (nothing to do: `aclInit` covers it). `configPath` may be null.
#[no_mangle]
pub extern "C" fn aclnnInit(configPath: *const c_char) -> aclnnStatus {
    let _ = configPath;
    nn("aclnnInit", || Ok(()))
}

/// Finalises aclnn (nothing to do).
#[no_mangle]
pub extern "C" fn aclnnFinalize() -> aclnnStatus {
    nn("aclnnFinalize", || Ok(()))
}
