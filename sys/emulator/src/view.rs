//! Reading and writing strided tensor views of device memory, with dtype conversion.
//!
//! Reads gather a view into a contiguous row-major `Vec<f32>` (or `Vec<i64>`); writes scatter a
//! contiguous buffer through a view, rounding to the view's dtype (FLOAT16 and BF16: round to
//! nearest even; integers: truncation toward zero, then wrap to the width; BOOL: non-zero).
use half::{bf16, f16};
use senet_cann_sys::aclDataType;

use crate::objects::TensorDesc;

/// Size in bytes of one element of `dt`, or `None` for a type the emulator does not know.
pub fn elem_size(dt: aclDataType) -> Option<usize> {
    Some(match dt {
        aclDataType::ACL_FLOAT | aclDataType::ACL_INT32 | aclDataType::ACL_UINT32 => 4,
        aclDataType::ACL_FLOAT16
        | aclDataType::ACL_BF16
        | aclDataType::ACL_INT16
        | aclDataType::ACL_UINT16 => 2,
        aclDataType::ACL_INT8 | aclDataType::ACL_UINT8 | aclDataType::ACL_BOOL => 1,
        aclDataType::ACL_INT64 | aclDataType::ACL_UINT64 | aclDataType::ACL_DOUBLE => 8,
        _ => return None,
    })
}

/// The `aclDataType` name without the `ACL_` prefix (`FLOAT16`, ...).
pub fn dtype_name(dt: aclDataType) -> &'static str {
    match dt {
        aclDataType::ACL_FLOAT => "FLOAT",
        aclDataType::ACL_FLOAT16 => "FLOAT16",
        aclDataType::ACL_BF16 => "BF16",
        aclDataType::ACL_INT8 => "INT8",
        aclDataType::ACL_INT16 => "INT16",
        aclDataType::ACL_INT32 => "INT32",
        aclDataType::ACL_INT64 => "INT64",
        aclDataType::ACL_UINT8 => "UINT8",
        aclDataType::ACL_UINT16 => "UINT16",
        aclDataType::ACL_UINT32 => "UINT32",
        aclDataType::ACL_UINT64 => "UINT64",
        aclDataType::ACL_DOUBLE => "DOUBLE",
        aclDataType::ACL_BOOL => "BOOL",
        _ => "UNKNOWN",
    }
}

/// Whether `dt` is a floating-point type.
pub fn is_float(dt: aclDataType) -> bool {
    matches!(
        dt,
        aclDataType::ACL_FLOAT
            | aclDataType::ACL_FLOAT16
            | aclDataType::ACL_BF16
            | aclDataType::ACL_DOUBLE
    )
}

/// Reads one element of type `dt` at `addr` as `f64`.
///
/// # Safety
/// `addr` must be readable for `elem_size(dt)` bytes.
pub unsafe fn load(addr: usize, dt: aclDataType) -> f64 {
    let p = addr as *const u8;
    unsafe {
        match dt {
            aclDataType::ACL_FLOAT => f64::from((p as *const f32).read_unaligned()),
            aclDataType::ACL_FLOAT16 => f16::from_bits((p as *const u16).read_unaligned()).to_f64(),
            aclDataType::ACL_BF16 => bf16::from_bits((p as *const u16).read_unaligned()).to_f64(),
            aclDataType::ACL_DOUBLE => (p as *const f64).read_unaligned(),
            aclDataType::ACL_INT8 => f64::from((p as *const i8).read_unaligned()),
            aclDataType::ACL_UINT8 => f64::from(p.read_unaligned()),
            aclDataType::ACL_BOOL => f64::from(u8::from(p.read_unaligned() != 0)),
            aclDataType::ACL_INT16 => f64::from((p as *const i16).read_unaligned()),
            aclDataType::ACL_UINT16 => f64::from((p as *const u16).read_unaligned()),
            aclDataType::ACL_INT32 => f64::from((p as *const i32).read_unaligned()),
            aclDataType::ACL_UINT32 => f64::from((p as *const u32).read_unaligned()),
            aclDataType::ACL_INT64 => (p as *const i64).read_unaligned() as f64,
            aclDataType::ACL_UINT64 => (p as *const u64).read_unaligned() as f64,
            _ => f64::NAN,
        }
    }
}

/// Reads one integer element (exact for INT64).
///
/// # Safety
/// As [`load`].
pub unsafe fn load_i64(addr: usize, dt: aclDataType) -> i64 {
    unsafe {
        match dt {
            aclDataType::ACL_INT64 => (addr as *const i64).read_unaligned(),
            aclDataType::ACL_UINT64 => (addr as *const u64).read_unaligned() as i64,
            _ => load(addr, dt) as i64,
        }
    }
}

/// Writes `v` as one element of type `dt` at `addr`, rounding as the module docs say.
///
/// # Safety
/// `addr` must be writable for `elem_size(dt)` bytes.
pub unsafe fn store(addr: usize, dt: aclDataType, v: f64) {
    let p = addr as *mut u8;
    let int = || if v.is_nan() { 0 } else { v as i64 };
    unsafe {
        match dt {
            aclDataType::ACL_FLOAT => (p as *mut f32).write_unaligned(v as f32),
            // Through f32 first, as the device rounds an f32 result to half.
            aclDataType::ACL_FLOAT16 => {
                (p as *mut u16).write_unaligned(f16::from_f32(v as f32).to_bits())
            }
            aclDataType::ACL_BF16 => {
                (p as *mut u16).write_unaligned(bf16::from_f32(v as f32).to_bits())
            }
            aclDataType::ACL_DOUBLE => (p as *mut f64).write_unaligned(v),
            aclDataType::ACL_BOOL => p.write_unaligned(u8::from(v != 0.0)),
            aclDataType::ACL_INT8 => (p as *mut i8).write_unaligned(int() as i8),
            aclDataType::ACL_UINT8 => p.write_unaligned(int() as u8),
            aclDataType::ACL_INT16 => (p as *mut i16).write_unaligned(int() as i16),
            aclDataType::ACL_UINT16 => (p as *mut u16).write_unaligned(int() as u16),
            aclDataType::ACL_INT32 => (p as *mut i32).write_unaligned(int() as i32),
            aclDataType::ACL_UINT32 => (p as *mut u32).write_unaligned(int() as u32),
            aclDataType::ACL_INT64 => (p as *mut i64).write_unaligned(int()),
            aclDataType::ACL_UINT64 => (p as *mut u64).write_unaligned(int() as u64),
            _ => {}
        }
    }
}

/// Byte address of every element of `t`'s view, in row-major order of the view, or of the view
/// broadcast to `target` (dims of size 1, or missing leading dims, repeat).
pub(crate) fn for_each_addr(t: &TensorDesc, target: &[i64], mut f: impl FnMut(usize, usize)) {
    let es = elem_size(t.dtype).unwrap_or(1) as i64;
    let rank = target.len();
    let lead = rank - t.dims.len();
    // Strides in the target's frame: 0 where broadcast.
    let strides: Vec<i64> = (0..rank)
        .map(|i| {
            if i < lead {
                0
            } else {
                let j = i - lead;
                if t.dims[j] == 1 && target[i] != 1 {
                    0
                } else {
                    t.strides[j]
                }
            }
        })
        .collect();
    let n: usize = target.iter().map(|&d| d as usize).product();
    if n == 0 {
        return;
    }
    let base = t.addr as i64 + t.offset * es;
    let mut idx = vec![0i64; rank];
    let mut off = 0i64;
    for k in 0..n {
        f(k, (base + off * es) as usize);
        for d in (0..rank).rev() {
            idx[d] += 1;
            off += strides[d];
            if idx[d] < target[d] {
                break;
            }
            off -= strides[d] * idx[d];
            idx[d] = 0;
        }
    }
}

/// Reads `t`'s view as contiguous `f32`.
pub fn read_f32(t: &TensorDesc) -> Vec<f32> {
    read_f32_as(t, &t.dims)
}

/// Reads `t`'s view broadcast to `target` as contiguous `f32`.
pub fn read_f32_as(t: &TensorDesc, target: &[i64]) -> Vec<f32> {
    let n: usize = target.iter().map(|&d| d as usize).product();
    let mut out = vec![0f32; n];
    if n == 0 {
        return out;
    }
    if t.dtype == aclDataType::ACL_FLOAT && t.is_contiguous() && target == t.dims.as_slice() {
        // SAFETY: the view was checked to lie inside a live allocation.
        let src =
            unsafe { std::slice::from_raw_parts((t.addr as *const f32).add(t.offset as usize), n) };
        out.copy_from_slice(src);
        return out;
    }
    // SAFETY: every address of the view lies inside its (checked, live) storage.
    for_each_addr(t, target, |k, a| {
        out[k] = unsafe { load(a, t.dtype) } as f32
    });
    out
}

/// Reads `t`'s view as contiguous `i64` (exact for INT64 indices).
pub fn read_i64(t: &TensorDesc) -> Vec<i64> {
    let mut out = vec![0i64; t.numel()];
    // SAFETY: as in `read_f32_as`.
    for_each_addr(t, &t.dims, |k, a| out[k] = unsafe { load_i64(a, t.dtype) });
    out
}

/// Reads `t`'s view broadcast to `target` as contiguous `f64` (exact for every type but
/// 64-bit integers beyond 2^53).
pub fn read_f64_as(t: &TensorDesc, target: &[i64]) -> Vec<f64> {
    let n: usize = target.iter().map(|&d| d as usize).product();
    let mut out = vec![0f64; n];
    // SAFETY: as in `read_f32_as`.
    for_each_addr(t, target, |k, a| out[k] = unsafe { load(a, t.dtype) });
    out
}

/// Writes contiguous `data` (one value per view element) through `t`'s view.
pub fn write_f32(t: &TensorDesc, data: &[f32]) -> Result<(), String> {
    if data.len() != t.numel() {
        return Err(format!(
            "result has {} elements, output {} needs {}",
            data.len(),
            t.describe(),
            t.numel()
        ));
    }
    if data.is_empty() {
        return Ok(());
    }
    if t.dtype == aclDataType::ACL_FLOAT && t.is_contiguous() {
        // SAFETY: the view lies inside its live storage; `data` does not alias device memory.
        let dst = unsafe {
            std::slice::from_raw_parts_mut((t.addr as *mut f32).add(t.offset as usize), data.len())
        };
        dst.copy_from_slice(data);
        return Ok(());
    }
    // SAFETY: every address of the view lies inside its live storage.
    for_each_addr(t, &t.dims, |k, a| unsafe {
        store(a, t.dtype, f64::from(data[k]))
    });
    Ok(())
}

/// Writes contiguous `data` through `t`'s view (integers are written exactly).
pub fn write_f64(t: &TensorDesc, data: &[f64]) -> Result<(), String> {
    if data.len() != t.numel() {
        return Err(format!(
            "result has {} elements, output {} needs {}",
            data.len(),
            t.describe(),
            t.numel()
        ));
    }
    // SAFETY: as in `write_f32`.
    for_each_addr(t, &t.dims, |k, a| unsafe { store(a, t.dtype, data[k]) });
    Ok(())
}

/// Writes contiguous integers `data` through `t`'s view (exact for INT64).
pub fn write_i64(t: &TensorDesc, data: &[i64]) -> Result<(), String> {
    if data.len() != t.numel() {
        return Err(format!(
            "result has {} elements, output {} needs {}",
            data.len(),
            t.describe(),
            t.numel()
        ));
    }
    for_each_addr(t, &t.dims, |k, a| {
        // SAFETY: as in `write_f32`.
        unsafe {
            match t.dtype {
                aclDataType::ACL_INT64 | aclDataType::ACL_UINT64 => {
                    (a as *mut i64).write_unaligned(data[k])
                }
                dt => store(a, dt, data[k] as f64),
            }
        }
    });
    Ok(())
}

/// Rounds every value through FLOAT16 (round to nearest even), as fp16 compute does.
pub fn round_f16(v: &mut [f32]) {
    crate::reference::cast::round_through_f16(v);
}

/// Rounds every value to `dt`'s precision (identity for FLOAT).
pub fn round_to(v: &mut [f32], dt: aclDataType) {
    match dt {
        aclDataType::ACL_FLOAT16 => round_f16(v),
        aclDataType::ACL_BF16 => crate::reference::cast::round_through_bf16(v),
        _ => {}
    }
}
