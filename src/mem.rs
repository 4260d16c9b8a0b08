//! Fallible allocation of buffers sized by input (a file's tensors, a decoded image, a class
//! count, a batch of logits): the allocator's refusal (a memory limit such as `RLIMIT_AS`, or a
//! size that overflows) becomes [`Error::OutOfMemory`] naming what the buffer was for, never an
//! abort (`Vec::with_capacity` and `vec![..]` abort the process when the allocator fails).
//!
//! With Linux's default overcommit, an allocation the machine cannot back may still succeed
//! here and fail later when the pages are touched (the kernel's OOM killer): that is outside
//! what a process can catch. What these functions guarantee is that no refusal the allocator
//! reports is turned into an abort.
use crate::{Error, Result};

/// `n` bytes for humans: "512 B", "4.0 KiB", "12.9 GB"-style with binary units ("12.0 GiB").
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {} ({n} bytes)", UNITS[unit])
}

fn oom<T>(len: usize, what: impl FnOnce() -> String) -> Error {
    let bytes = (len as u64).saturating_mul(std::mem::size_of::<T>() as u64);
    Error::OutOfMemory {
        what: what(),
        bytes,
    }
}

/// An empty `Vec` with room for exactly `cap` elements.
/// Errors: [`Error::OutOfMemory`] naming `what()` when the allocation is refused or its byte
/// size overflows.
pub fn with_capacity<T>(cap: usize, what: impl FnOnce() -> String) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(cap).map_err(|_| oom::<T>(cap, what))?;
    Ok(v)
}

/// A `Vec` of `len` copies of `value`. Errors as [`with_capacity`].
pub fn filled<T: Clone>(len: usize, value: T, what: impl FnOnce() -> String) -> Result<Vec<T>> {
    let mut v = with_capacity(len, what)?;
    v.resize(len, value);
    Ok(v)
}

/// `len` zero bytes, allocated already zeroed (`calloc`: for a large buffer the system hands
/// out zero pages lazily, so the bytes a decoder never writes cost nothing). Errors as
/// [`with_capacity`].
pub fn zeroed_bytes(len: usize, what: impl FnOnce() -> String) -> Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let Ok(layout) = std::alloc::Layout::array::<u8>(len) else {
        return Err(oom::<u8>(len, what));
    };
    // SAFETY: `layout` has a non-zero size (len > 0).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        return Err(oom::<u8>(len, what));
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of `len` bytes (align
    // 1), all initialised (zeroed); the Vec takes ownership and frees it with that layout.
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// Makes room in `v` for `extra` more elements. Errors as [`with_capacity`] (the size named is
/// the new total).
pub fn reserve<T>(v: &mut Vec<T>, extra: usize, what: impl FnOnce() -> String) -> Result<()> {
    v.try_reserve(extra)
        .map_err(|_| oom::<T>(v.len().saturating_add(extra), what))
}

/// `a * b * ...`, or `None` when the product overflows `usize`.
pub fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_allocations_are_errors() {
        // More than isize::MAX bytes: refused by the allocator API itself, on every machine.
        let e = with_capacity::<f32>(usize::MAX / 2, || "the test buffer".into()).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(
                e,
                Error::OutOfMemory {
                    bytes: u64::MAX,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            msg.contains("out of memory") && msg.contains("the test buffer"),
            "{msg}"
        );
        let mut v = vec![1u8];
        let e = reserve(&mut v, usize::MAX, || "more".into()).unwrap_err();
        assert!(matches!(e, Error::OutOfMemory { .. }), "{e:?}");
        assert_eq!(filled(3, 7u16, || unreachable!()).unwrap(), vec![7, 7, 7]);
        assert_eq!(zeroed_bytes(5, || unreachable!()).unwrap(), vec![0; 5]);
        assert!(zeroed_bytes(0, || unreachable!()).unwrap().is_empty());
        let e = zeroed_bytes(usize::MAX, || "huge".into()).unwrap_err();
        assert!(matches!(e, Error::OutOfMemory { .. }), "{e:?}");
    }

    #[test]
    fn sizes_for_humans() {
        assert_eq!(human_bytes(100), "100 bytes");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB (3221225472 bytes)");
        assert_eq!(checked_product(&[1 << 40, 1 << 30]), None);
        assert_eq!(checked_product(&[2, 3, 4]), Some(24));
        assert_eq!(checked_product(&[]), Some(1));
    }
}
