//! The aclnn argument objects as RAII types (`shared/reference/cann.md` §2.1): [`AclTensor`],
//! [`AclIntArray`], [`AclBoolArray`], [`AclScalar`], each destroyed with its `aclDestroy*` on
//! drop. The op layer keeps them until the stream is synchronised (cann.md: the official
//! examples destroy them only after `aclrtSynchronizeStream`; destroying them earlier is not
//! documented as safe).
use std::ffi::c_void;

use senet_cann_sys::{
    aclBoolArray, aclDataType, aclFormat, aclIntArray, aclScalar, aclTensor, aclTensorList, Cann,
};

use super::error::{recent_message, sym};
use crate::{Error, Result};

const NNOPBASE: &str = "libnnopbase.so";

/// Element types senet puts in device tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `ACL_FLOAT` (f32).
    F32,
    /// `ACL_FLOAT16` (IEEE half).
    F16,
    /// `ACL_INT64`.
    I64,
    /// `ACL_INT32`.
    I32,
    /// `ACL_INT8`.
    I8,
    /// `ACL_DOUBLE`.
    F64,
}

impl DType {
    /// The `aclDataType` value (cann.md §1.4).
    pub fn acl(self) -> aclDataType {
        match self {
            DType::F32 => aclDataType::ACL_FLOAT,
            DType::F16 => aclDataType::ACL_FLOAT16,
            DType::I64 => aclDataType::ACL_INT64,
            DType::I32 => aclDataType::ACL_INT32,
            DType::I8 => aclDataType::ACL_INT8,
            DType::F64 => aclDataType::ACL_DOUBLE,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
            DType::I64 | DType::F64 => 8,
            DType::I8 => 1,
        }
    }
}

/// Memory layout tag passed to `aclCreateTensor`: aclnn takes only the public formats
/// (cann.md §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `ACL_FORMAT_ND`: plain row-major n-D.
    Nd,
    /// `ACL_FORMAT_NCHW`: 4-D activations and conv weights.
    Nchw,
}

impl Format {
    fn acl(self) -> aclFormat {
        match self {
            Format::Nd => aclFormat::ACL_FORMAT_ND,
            Format::Nchw => aclFormat::ACL_FORMAT_NCHW,
        }
    }

    /// NCHW for 4-D shapes, ND otherwise.
    pub fn for_rank(rank: usize) -> Format {
        if rank == 4 {
            Format::Nchw
        } else {
            Format::Nd
        }
    }
}

/// What an `aclCreateTensor` call describes: a view (`dims`, `strides` in elements, `offset`
/// in elements) of a storage (`storage` dims) at device address `addr`.
#[derive(Debug, Clone)]
pub struct TensorDesc {
    /// View shape.
    pub dims: Vec<i64>,
    /// View strides, in elements.
    pub strides: Vec<i64>,
    /// Offset of the view's first element from `addr`, in elements.
    pub offset: i64,
    /// Shape of the physical storage starting at `addr`.
    pub storage: Vec<i64>,
    /// Element type.
    pub dtype: DType,
    /// Format tag.
    pub format: Format,
    /// Device address of the storage (32-byte aligned).
    pub addr: *mut c_void,
}

/// Row-major strides of `dims`.
pub fn contiguous_strides(dims: &[i64]) -> Vec<i64> {
    let mut s = vec![1i64; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1].max(1);
    }
    s
}

impl TensorDesc {
    /// A contiguous tensor of shape `dims` at `addr` (view = storage; NCHW when 4-D).
    pub fn contiguous(addr: *mut c_void, dtype: DType, dims: &[usize]) -> TensorDesc {
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        TensorDesc {
            strides: contiguous_strides(&dims),
            storage: dims.clone(),
            offset: 0,
            format: Format::for_rank(dims.len()),
            dims,
            dtype,
            addr,
        }
    }

    /// A strided view of a flat storage of `storage_len` elements at `addr`.
    pub fn view(
        addr: *mut c_void,
        dtype: DType,
        dims: &[usize],
        strides: &[usize],
        offset: usize,
        storage_len: usize,
    ) -> TensorDesc {
        TensorDesc {
            dims: dims.iter().map(|&d| d as i64).collect(),
            strides: strides.iter().map(|&d| d as i64).collect(),
            offset: offset as i64,
            storage: vec![storage_len as i64],
            dtype,
            format: Format::for_rank(dims.len()),
            addr,
        }
    }
}

fn null_error(cann: &Cann, call: &str) -> Error {
    Error::Device {
        call: call.into(),
        code: -1,
        name: "NULL".into(),
        message: recent_message(cann),
    }
}

/// An `aclTensor`, destroyed on drop.
pub struct AclTensor {
    cann: &'static Cann,
    raw: *mut aclTensor,
}

// SAFETY: the handle is host-side metadata owned by this value; CANN does not tie it to a
// thread.
unsafe impl Send for AclTensor {}

impl AclTensor {
    /// `aclCreateTensor` from `d`. Errors: the symbol missing, CANN returning NULL.
    pub fn new(cann: &'static Cann, d: &TensorDesc) -> Result<AclTensor> {
        let f = sym(&cann.nnopbase.aclCreateTensor, "aclCreateTensor", NNOPBASE)?;
        // SAFETY: the arrays are read during the call (CANN copies them); addr is a device
        // address the caller keeps alive until the tensor's last use on the stream.
        let raw = unsafe {
            f(
                d.dims.as_ptr(),
                d.dims.len() as u64,
                d.dtype.acl(),
                d.strides.as_ptr(),
                d.offset,
                d.format.acl(),
                d.storage.as_ptr(),
                d.storage.len() as u64,
                d.addr,
            )
        };
        if raw.is_null() {
            return Err(null_error(cann, "aclCreateTensor"));
        }
        Ok(AclTensor { cann, raw })
    }

    /// The raw handle.
    pub fn raw(&self) -> *mut aclTensor {
        self.raw
    }
}

impl Drop for AclTensor {
    fn drop(&mut self) {
        if let Ok(f) = self.cann.nnopbase.aclDestroyTensor.as_ref() {
            // SAFETY: live handle created by aclCreateTensor, destroyed once.
            unsafe { f(self.raw) };
        }
    }
}

/// An `aclTensorList`, destroyed on drop together with its member tensors: the list owns them
/// ("对于aclTensorList内的aclTensor不需要重复释放", opbase
/// `docs/zh/nnopbase/aclnn/aclDestroyTensorList.md`).
pub struct AclTensorList {
    cann: &'static Cann,
    raw: *mut aclTensorList,
}

// SAFETY: as for AclTensor.
unsafe impl Send for AclTensorList {}

impl AclTensorList {
    /// `aclCreateTensorList` of new tensors for `descs`, which the list then owns. Errors: a
    /// symbol missing, CANN returning NULL (the tensors made so far are destroyed).
    pub fn new(cann: &'static Cann, descs: &[TensorDesc]) -> Result<AclTensorList> {
        let f = sym(
            &cann.nnopbase.aclCreateTensorList,
            "aclCreateTensorList",
            NNOPBASE,
        )?;
        let tensors = descs
            .iter()
            .map(|d| AclTensor::new(cann, d))
            .collect::<Result<Vec<_>>>()?;
        let raws: Vec<*const aclTensor> = tensors.iter().map(|t| t.raw() as *const _).collect();
        // SAFETY: `raws` holds live tensor handles; CANN reads `raws.len()` of them.
        let raw = unsafe { f(raws.as_ptr(), raws.len() as u64) };
        if raw.is_null() {
            return Err(null_error(cann, "aclCreateTensorList"));
        }
        // The list owns the tensors now: they are destroyed with it, never on their own.
        tensors.into_iter().for_each(std::mem::forget);
        Ok(AclTensorList { cann, raw })
    }

    /// The raw handle.
    pub fn raw(&self) -> *mut aclTensorList {
        self.raw
    }
}

impl Drop for AclTensorList {
    fn drop(&mut self) {
        if let Ok(f) = self.cann.nnopbase.aclDestroyTensorList.as_ref() {
            // SAFETY: live handle created by aclCreateTensorList, destroyed once.
            unsafe { f(self.raw) };
        }
    }
}

/// An `aclIntArray` (values copied at creation), destroyed on drop.
pub struct AclIntArray {
    cann: &'static Cann,
    raw: *mut aclIntArray,
}

// SAFETY: as for AclTensor.
unsafe impl Send for AclIntArray {}

impl AclIntArray {
    /// `aclCreateIntArray(values)`. Errors: the symbol missing, CANN returning NULL.
    pub fn new(cann: &'static Cann, values: &[i64]) -> Result<AclIntArray> {
        let f = sym(
            &cann.nnopbase.aclCreateIntArray,
            "aclCreateIntArray",
            NNOPBASE,
        )?;
        // SAFETY: CANN copies `values.len()` values.
        let raw = unsafe { f(values.as_ptr(), values.len() as u64) };
        if raw.is_null() {
            return Err(null_error(cann, "aclCreateIntArray"));
        }
        Ok(AclIntArray { cann, raw })
    }

    /// The raw handle.
    pub fn raw(&self) -> *mut aclIntArray {
        self.raw
    }
}

impl Drop for AclIntArray {
    fn drop(&mut self) {
        if let Ok(f) = self.cann.nnopbase.aclDestroyIntArray.as_ref() {
            // SAFETY: live handle, destroyed once.
            unsafe { f(self.raw) };
        }
    }
}

/// An `aclBoolArray` (values copied at creation), destroyed on drop.
pub struct AclBoolArray {
    cann: &'static Cann,
    raw: *mut aclBoolArray,
}

// SAFETY: as for AclTensor.
unsafe impl Send for AclBoolArray {}

impl AclBoolArray {
    /// `aclCreateBoolArray(values)`. Errors: the symbol missing, CANN returning NULL.
    pub fn new(cann: &'static Cann, values: &[bool]) -> Result<AclBoolArray> {
        let f = sym(
            &cann.nnopbase.aclCreateBoolArray,
            "aclCreateBoolArray",
            NNOPBASE,
        )?;
        // SAFETY: CANN copies `values.len()` one-byte bools.
        let raw = unsafe { f(values.as_ptr(), values.len() as u64) };
        if raw.is_null() {
            return Err(null_error(cann, "aclCreateBoolArray"));
        }
        Ok(AclBoolArray { cann, raw })
    }

    /// The raw handle.
    pub fn raw(&self) -> *mut aclBoolArray {
        self.raw
    }
}

impl Drop for AclBoolArray {
    fn drop(&mut self) {
        if let Ok(f) = self.cann.nnopbase.aclDestroyBoolArray.as_ref() {
            // SAFETY: live handle, destroyed once.
            unsafe { f(self.raw) };
        }
    }
}

/// A host scalar for aclnn (`aclCreateScalar`, value read at creation), destroyed on drop.
pub struct AclScalar {
    cann: &'static Cann,
    raw: *mut aclScalar,
}

// SAFETY: as for AclTensor.
unsafe impl Send for AclScalar {}

/// A scalar value and its type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScalarValue {
    /// An `ACL_FLOAT` scalar.
    F32(f32),
}

impl AclScalar {
    /// `aclCreateScalar(&value, dtype)` with the C type matching the dtype (cann.md §2.6).
    /// Errors: the symbol missing, CANN returning NULL.
    pub fn new(cann: &'static Cann, value: ScalarValue) -> Result<AclScalar> {
        let f = sym(&cann.nnopbase.aclCreateScalar, "aclCreateScalar", NNOPBASE)?;
        let raw = match value {
            ScalarValue::F32(mut v) => {
                // SAFETY: reads one f32 at creation.
                unsafe { f(&mut v as *mut f32 as *mut c_void, DType::F32.acl()) }
            }
        };
        if raw.is_null() {
            return Err(null_error(cann, "aclCreateScalar"));
        }
        Ok(AclScalar { cann, raw })
    }

    /// The raw handle.
    pub fn raw(&self) -> *mut aclScalar {
        self.raw
    }
}

impl Drop for AclScalar {
    fn drop(&mut self) {
        if let Ok(f) = self.cann.nnopbase.aclDestroyScalar.as_ref() {
            // SAFETY: live handle, destroyed once.
            unsafe { f(self.raw) };
        }
    }
}

/// Any of the objects above, kept until the stream is synchronised.
#[allow(dead_code, reason = "held for its Drop, which destroys the object")]
pub enum AclObject {
    /// A tensor.
    Tensor(AclTensor),
    /// An int array.
    IntArray(AclIntArray),
    /// A bool array.
    BoolArray(AclBoolArray),
    /// A scalar.
    Scalar(AclScalar),
    /// A tensor list (with its tensors).
    TensorList(AclTensorList),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_row_major_in_elements() {
        assert_eq!(contiguous_strides(&[2, 3, 4, 5]), vec![60, 20, 5, 1]);
        assert_eq!(contiguous_strides(&[7]), vec![1]);
        assert_eq!(contiguous_strides(&[2, 3, 1, 1]), vec![3, 1, 1, 1]);
        let d = TensorDesc::contiguous(std::ptr::null_mut(), DType::F32, &[2, 3, 4, 5]);
        assert_eq!(d.format, Format::Nchw);
        assert_eq!(d.storage, d.dims);
        let d = TensorDesc::contiguous(std::ptr::null_mut(), DType::F16, &[2, 3]);
        assert_eq!(d.format, Format::Nd);
    }
}
