//! Whether two tensor views share device memory: the check behind "an output must not alias an
//! input of a non-inplace operator" (contract Part D).
use crate::objects::TensorDesc;
use crate::view;

/// Byte range `[first, end)` spanned by the view of `t` (`None` for an empty view).
fn extent(t: &TensorDesc) -> Option<(usize, usize)> {
    if t.numel() == 0 {
        return None;
    }
    let es = view::elem_size(t.dtype).unwrap_or(1) as i64;
    let last: i64 = t.offset
        + t.dims
            .iter()
            .zip(&t.strides)
            .map(|(&d, &s)| (d - 1) * s)
            .sum::<i64>();
    let base = t.addr as i64;
    Some((
        (base + t.offset * es) as usize,
        (base + (last + 1) * es) as usize,
    ))
}

/// Byte ranges of every element of `t`, sorted.
fn element_ranges(t: &TensorDesc) -> Vec<(usize, usize)> {
    let es = view::elem_size(t.dtype).unwrap_or(1);
    let mut v = Vec::with_capacity(t.numel());
    view::for_each_addr(t, &t.dims, |_, a| v.push((a, a + es)));
    v.sort_unstable();
    v
}

/// Whether some byte of `a`'s view is also a byte of `b`'s view.
pub fn overlap(a: &TensorDesc, b: &TensorDesc) -> bool {
    let (Some((a0, a1)), Some((b0, b1))) = (extent(a), extent(b)) else {
        return false;
    };
    if a1 <= b0 || b1 <= a0 {
        return false;
    }
    if a.is_contiguous() && b.is_contiguous() {
        return true;
    }
    // Interleaved strided views may share the span but no element: compare element by element.
    let ra = element_ranges(a);
    element_ranges(b).iter().any(|&(s, e)| {
        let i = ra.partition_point(|&(_, end)| end <= s);
        ra.get(i).is_some_and(|&(s2, _)| s2 < e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use senet_cann_sys::{aclDataType, aclFormat};

    fn t(addr: usize, dims: &[i64], strides: &[i64], offset: i64) -> TensorDesc {
        TensorDesc {
            dims: dims.to_vec(),
            dtype: aclDataType::ACL_FLOAT,
            strides: strides.to_vec(),
            offset,
            format: aclFormat::ACL_FORMAT_ND,
            storage: vec![1 << 20],
            addr,
        }
    }

    #[test]
    fn contiguous_and_strided_views() {
        let a = t(0x1000, &[4], &[1], 0);
        assert!(overlap(&a, &a));
        assert!(!overlap(&a, &t(0x1010, &[4], &[1], 0)), "adjacent");
        assert!(
            overlap(&a, &t(0x100c, &[4], &[1], 0)),
            "last element shared"
        );
        // Even and odd elements of one buffer: same span, no shared element.
        let even = t(0x1000, &[4], &[2], 0);
        let odd = t(0x1000, &[4], &[2], 1);
        assert!(!overlap(&even, &odd));
        assert!(
            overlap(&even, &t(0x1000, &[2], &[1], 2)),
            "element 2 is even"
        );
        assert!(!overlap(&a, &t(0x1000, &[0], &[1], 0)), "empty view");
    }
}
