//! Checked conversions of C arguments (strings, buffers, out-pointers) into Rust values. Every
//! check that can be made on a pointer without dereferencing it is made here: NULL, alignment,
//! a length whose byte size overflows. What cannot be checked (that a non-NULL pointer points to
//! as many live values as the caller says) is the caller's contract, stated in the header.
use super::status::{FfiError, FfiResult, SenetStatus};
use std::ffi::{c_char, CStr};
use std::path::PathBuf;

fn null(what: &str) -> FfiError {
    FfiError::new(SenetStatus::NullPointer, format!("{what} is NULL"))
}

fn check_ptr<T>(p: *const T, what: &str) -> FfiResult {
    if p.is_null() {
        return Err(null(what));
    }
    if !p.is_aligned() {
        return Err(FfiError::invalid(format!(
            "{what} is not aligned to {} bytes",
            std::mem::align_of::<T>()
        )));
    }
    Ok(())
}

fn check_len<T>(len: usize, what: &str) -> FfiResult {
    match len.checked_mul(std::mem::size_of::<T>()) {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(()),
        _ => Err(FfiError::invalid(format!(
            "{what}: length {len} is too large"
        ))),
    }
}

/// The NUL-terminated string at `p`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a` and is not modified.
pub unsafe fn c_str<'a>(p: *const c_char, what: &str) -> FfiResult<&'a CStr> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL, and a NUL-terminated live string by this function's contract.
    Ok(unsafe { CStr::from_ptr(p) })
}

/// The UTF-8 string at `p`. Errors: NULL, not UTF-8.
///
/// # Safety
/// As [`c_str`].
pub unsafe fn utf8<'a>(p: *const c_char, what: &str) -> FfiResult<&'a str> {
    // SAFETY: forwarded contract.
    let s = unsafe { c_str(p, what) }?;
    s.to_str()
        .map_err(|_| FfiError::invalid(format!("{what} is not valid UTF-8")))
}

/// The file path at `p` (any bytes on Unix, UTF-8 elsewhere). Errors: NULL, empty.
///
/// # Safety
/// As [`c_str`].
pub unsafe fn path(p: *const c_char, what: &str) -> FfiResult<PathBuf> {
    // SAFETY: forwarded contract.
    let s = unsafe { c_str(p, what) }?;
    if s.is_empty() {
        return Err(FfiError::invalid(format!("{what} is an empty path")));
    }
    #[cfg(unix)]
    let path = {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(s.to_bytes()))
    };
    #[cfg(not(unix))]
    let path = PathBuf::from(
        s.to_str()
            .map_err(|_| FfiError::invalid(format!("{what} is not valid UTF-8")))?,
    );
    Ok(path)
}

/// The `len` values at `p`. Errors: NULL, misaligned, a byte size over `isize::MAX`.
///
/// # Safety
/// `p` is NULL or points to `len` initialised values that outlive `'a` and are not written
/// meanwhile.
pub unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> FfiResult<&'a [T]> {
    check_ptr(p, what)?;
    check_len::<T>(len, what)?;
    // SAFETY: non-NULL, aligned, a valid byte size (checked above); `len` live values by this
    // function's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// The `len` writable values at `p`. Errors: NULL, misaligned, a byte size over `isize::MAX`.
///
/// # Safety
/// `p` is NULL or points to `len` writable values (any bit pattern of a float is valid, so they
/// need not be initialised for `f32`) that outlive `'a` and nothing else accesses meanwhile.
pub unsafe fn slice_mut<'a, T>(p: *mut T, len: usize, what: &str) -> FfiResult<&'a mut [T]> {
    check_ptr(p, what)?;
    check_len::<T>(len, what)?;
    // SAFETY: non-NULL, aligned, valid byte size (checked above); exclusive access to `len`
    // values by this function's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// A copy of the value at `p`. Errors: NULL, misaligned.
///
/// # Safety
/// `p` is NULL or points to a readable, initialised `T` not written during the call.
pub unsafe fn read_in<T: Copy>(p: *const T, what: &str) -> FfiResult<T> {
    check_ptr(p, what)?;
    // SAFETY: non-NULL and aligned (checked above), readable by this function's contract.
    Ok(unsafe { p.read() })
}

/// Writes `value` to the out-parameter `p`. Errors: NULL, misaligned.
///
/// # Safety
/// `p` is NULL or points to writable memory for one `T`.
pub unsafe fn write_out<T>(p: *mut T, value: T, what: &str) -> FfiResult {
    check_ptr(p, what)?;
    // SAFETY: non-NULL and aligned (checked above), writable by this function's contract;
    // `write` does not drop the (possibly uninitialised) old value.
    unsafe { p.write(value) };
    Ok(())
}

/// Whether the byte ranges of `a` (`a_len` values of `A`) and `b` (`b_len` values of `B`)
/// overlap. Pointers are only compared, never dereferenced.
pub fn overlap<A, B>(a: *const A, a_len: usize, b: *const B, b_len: usize) -> bool {
    let (a0, b0) = (a as usize, b as usize);
    let a1 = a0.saturating_add(a_len.saturating_mul(std::mem::size_of::<A>()));
    let b1 = b0.saturating_add(b_len.saturating_mul(std::mem::size_of::<B>()));
    a0 < b1 && b0 < a1
}

/// `n1 * n2 * ...` or an `InvalidArgument` error naming `what` on overflow.
pub fn product(dims: &[usize], what: &str) -> FfiResult<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| FfiError::invalid(format!("{what}: size {dims:?} overflows")))
}

/// A `BufferTooSmall` error unless `have >= need`.
pub fn need(what: &str, have: usize, need: usize) -> FfiResult {
    if have < need {
        return Err(FfiError::new(
            SenetStatus::BufferTooSmall,
            format!("{what} holds {have} values, {need} needed"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_of_ranges() {
        let v = [0f32; 8];
        let p = v.as_ptr();
        assert!(overlap(p, 4, p.wrapping_add(3), 4));
        assert!(!overlap(p, 4, p.wrapping_add(4), 4));
        assert!(!overlap(p, 0, p, 4));
    }

    #[test]
    fn rejects_null_and_misaligned() {
        // SAFETY: NULL is rejected before any access.
        let e = unsafe { slice::<f32>(std::ptr::null(), 1, "x") }.unwrap_err();
        assert_eq!(e.status, SenetStatus::NullPointer);
        let v = [0f32; 4];
        let odd = (v.as_ptr() as *const u8).wrapping_add(1) as *const f32;
        // SAFETY: a misaligned pointer is rejected before any access.
        let e = unsafe { slice(odd, 1, "x") }.unwrap_err();
        assert_eq!(e.status, SenetStatus::InvalidArgument);
        assert!(product(&[usize::MAX, 2], "x").is_err());
    }
}
