//! Host tensors: an f32 row-major [`Tensor`] (NCHW for images) and a dtype-tagged
//! [`RawTensor`] holding bytes exactly as a checkpoint stores them.
use crate::{Error, Result};

/// Element types of MindSpore checkpoints (`TensorProto.tensor_type` names) and safetensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float (`Float32`).
    F32,
    /// IEEE half (`Float16`).
    F16,
    /// bfloat16 (`BFloat16`).
    BF16,
    /// 64-bit float (`Float64`).
    F64,
    /// `Int8`.
    I8,
    /// `UInt8`.
    U8,
    /// `Int16`.
    I16,
    /// `UInt16`.
    U16,
    /// `Int32`.
    I32,
    /// `UInt32`.
    U32,
    /// `Int64`.
    I64,
    /// `UInt64`.
    U64,
    /// `Bool`, one byte per element.
    Bool,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// MindSpore's name (`str(mindspore.float32)` = "Float32", ...), as in `.ckpt` files.
    pub fn mindspore_name(self) -> &'static str {
        match self {
            DType::F32 => "Float32",
            DType::F16 => "Float16",
            DType::BF16 => "BFloat16",
            DType::F64 => "Float64",
            DType::I8 => "Int8",
            DType::U8 => "UInt8",
            DType::I16 => "Int16",
            DType::U16 => "UInt16",
            DType::I32 => "Int32",
            DType::U32 => "UInt32",
            DType::I64 => "Int64",
            DType::U64 => "UInt64",
            DType::Bool => "Bool",
        }
    }

    /// Parses MindSpore's name; also accepts numpy names ("float32", ...) used by map tensors.
    pub fn from_mindspore_name(s: &str) -> Option<DType> {
        let all = [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::F64,
            DType::I8,
            DType::U8,
            DType::I16,
            DType::U16,
            DType::I32,
            DType::U32,
            DType::I64,
            DType::U64,
            DType::Bool,
        ];
        all.into_iter().find(|d| {
            d.mindspore_name() == s
                || d.mindspore_name().eq_ignore_ascii_case(s)
                || (s == "bool_" && *d == DType::Bool)
        })
    }
}

/// A host tensor of any dtype: shape plus little-endian row-major bytes, as stored in a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Element type.
    pub dtype: DType,
    /// Full shape; empty for a scalar.
    pub shape: Vec<usize>,
    /// `numel * dtype.size()` bytes, little-endian, C order.
    pub bytes: Vec<u8>,
}

impl RawTensor {
    /// Number of elements (1 for a scalar), saturating at `usize::MAX` for a shape whose
    /// product overflows (no such tensor can hold its bytes).
    pub fn numel(&self) -> usize {
        crate::mem::checked_product(&self.shape).unwrap_or(usize::MAX)
    }

    /// The byte size the shape and dtype call for, `None` when it overflows `usize`.
    pub fn expected_bytes(&self) -> Option<usize> {
        crate::mem::checked_product(&self.shape)?.checked_mul(self.dtype.size())
    }

    /// An f32 raw tensor from a host [`Tensor`].
    pub fn from_f32(t: &Tensor) -> RawTensor {
        let mut bytes = Vec::with_capacity(t.data.len() * 4);
        for v in &t.data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        RawTensor {
            dtype: DType::F32,
            shape: t.shape.clone(),
            bytes,
        }
    }

    /// Converts any float dtype (F32, F16, BF16, F64) to an f32 [`Tensor`]; integer and bool
    /// dtypes are converted by value. Errors: [`Error::Shape`] if the byte count does not match
    /// the shape; [`Error::OutOfMemory`] when the f32 copy cannot be allocated.
    pub fn to_f32(&self) -> Result<Tensor> {
        let n = self.numel();
        if self.expected_bytes() != Some(self.bytes.len()) {
            return Err(Error::Shape(format!(
                "{} bytes for shape {:?} of {:?}",
                self.bytes.len(),
                self.shape,
                self.dtype
            )));
        }
        let b = &self.bytes;
        let sz = self.dtype.size();
        let mut data = crate::mem::with_capacity(n, || {
            format!("a float32 copy of a {:?} tensor", self.shape)
        })?;
        data.extend((0..n).map(|i| {
            let c = &b[i * sz..(i + 1) * sz];
            match self.dtype {
                DType::F32 => f32::from_le_bytes(c.try_into().unwrap()),
                DType::F16 => half::f16::from_le_bytes(c.try_into().unwrap()).to_f32(),
                DType::BF16 => half::bf16::from_le_bytes(c.try_into().unwrap()).to_f32(),
                DType::F64 => f64::from_le_bytes(c.try_into().unwrap()) as f32,
                DType::I8 => c[0] as i8 as f32,
                DType::U8 => c[0] as f32,
                DType::Bool => (c[0] != 0) as u8 as f32,
                DType::I16 => i16::from_le_bytes(c.try_into().unwrap()) as f32,
                DType::U16 => u16::from_le_bytes(c.try_into().unwrap()) as f32,
                DType::I32 => i32::from_le_bytes(c.try_into().unwrap()) as f32,
                DType::U32 => u32::from_le_bytes(c.try_into().unwrap()) as f32,
                DType::I64 => i64::from_le_bytes(c.try_into().unwrap()) as f32,
                DType::U64 => u64::from_le_bytes(c.try_into().unwrap()) as f32,
            }
        }));
        Ok(Tensor {
            shape: self.shape.clone(),
            data,
        })
    }
}

/// A host f32 tensor, row-major (C order). Images and activations are NCHW.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tensor {
    /// Shape, outermost first; empty for a scalar.
    pub shape: Vec<usize>,
    /// Values in row-major (C) order.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
        }
    }

    /// A tensor from data; errors if `data.len()` is not the product of `shape`.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Shape(format!(
                "{} values for shape {:?} ({} elements)",
                data.len(),
                shape,
                n
            )));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}
