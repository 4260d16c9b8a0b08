//! MindSpore's `MaxPool2d(pad_mode="same")` expressed with aclnn's pooling parameters.
//!
//! MindSpore 'same' (TF SAME, [`same_pool_geometry`]) pads asymmetrically: `out = ceil(in/s)`,
//! total padding `max(0, (out-1)*s + k - in)` with the smaller half `pb` before and the rest
//! after. aclnn's `MaxPool2dWithIndices` / `WithMask` (like PyTorch) take one symmetric padding
//! `p` per axis plus `ceilMode`; output size `floor((in + 2p - k)/s) + 1`, or with `ceilMode`
//! `ceil((in + 2p - k)/s) + 1`, minus one when the last window would start at or beyond
//! `in + p` (the aclnn docs' rule, cann.md §2.3 sources). Padded positions hold -inf in aclnn and
//! never win in MindSpore's (the input is post-ReLU, and senet's CPU op skips them).
//!
//! With `p = pb`, window `i` starts at `i*s - pb` in both, so the two agree exactly whenever the
//! aclnn output size (floor or ceil) equals `out` and `pb <= k/2` (aclnn's padding limit): the
//! extra windows of 'same' beyond the input are then the same windows aclnn clips at `in + p`.
//! [`aclnn_same_pool_2d`] finds that mapping for both axes or reports that none exists.
use crate::backend::{same_pool_geometry, symmetric_pool_out};

/// aclnn parameters reproducing a 'same' max pool along one axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclnnPool {
    /// Output size (= MindSpore's `ceil(in/stride)`).
    pub out: usize,
    /// Symmetric padding to pass to aclnn (= MindSpore's padding before).
    pub pad: usize,
    /// aclnn `ceilMode`.
    pub ceil_mode: bool,
}

/// The aclnn (padding, ceilMode) giving exactly MindSpore's 'same' max pool of `kernel`,
/// `stride` over `input` positions with the given `ceil_mode`, or None when that mode cannot.
pub fn aclnn_same_pool_with(
    input: usize,
    kernel: usize,
    stride: usize,
    ceil_mode: bool,
) -> Option<AclnnPool> {
    if kernel == 0 || stride == 0 || input == 0 {
        return None;
    }
    let (out, pad) = same_pool_geometry(input, kernel, stride);
    if 2 * pad > kernel || symmetric_pool_out(input, kernel, stride, pad, ceil_mode) != Some(out) {
        return None;
    }
    Some(AclnnPool {
        out,
        pad,
        ceil_mode,
    })
}

/// As [`aclnn_same_pool_with`], floor mode preferred, or None when no symmetric padding
/// reproduces 'same' (then the backend reports the case as unsupported rather than compute
/// something else).
#[cfg(test)]
pub fn aclnn_same_pool(input: usize, kernel: usize, stride: usize) -> Option<AclnnPool> {
    aclnn_same_pool_with(input, kernel, stride, false)
        .or_else(|| aclnn_same_pool_with(input, kernel, stride, true))
}

/// Both axes of a 2-D 'same' pool with one `ceilMode` (aclnn has a single flag): floor mode if
/// it fits both axes, else ceil mode. Every geometry of SENet's stem pool (k 3, s 2, any
/// height and width of at least 3) maps.
pub fn aclnn_same_pool_2d(
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
) -> Option<(AclnnPool, AclnnPool)> {
    [false, true].into_iter().find_map(|ceil| {
        Some((
            aclnn_same_pool_with(h, kernel, stride, ceil)?,
            aclnn_same_pool_with(w, kernel, stride, ceil)?,
        ))
    })
}

/// Shape of the INT8 mask `aclnnMaxPool2dWithMask` writes (`cann_subset.h`):
/// `[N, C, kh*kw, (ceil(oh*ow/16) + 1) * 32]`.
pub fn mask_dims(n: usize, c: usize, kernel: usize, oh: usize, ow: usize) -> [usize; 4] {
    [n, c, kernel * kernel, ((oh * ow).div_ceil(16) + 1) * 32]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::backend::{Backend, MaxPool2dParams, Shape4};

    /// Max pool with aclnn semantics: symmetric -inf padding, output size from
    /// [`symmetric_pool_out`].
    fn aclnn_pool_reference(
        x: &[f32],
        h: usize,
        w: usize,
        k: usize,
        s: usize,
        ph: AclnnPool,
        pw: AclnnPool,
    ) -> Vec<f32> {
        let mut y = vec![f32::NEG_INFINITY; ph.out * pw.out];
        for oy in 0..ph.out {
            for ox in 0..pw.out {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s + ky) as isize - ph.pad as isize;
                        let ix = (ox * s + kx) as isize - pw.pad as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            m = m.max(x[iy as usize * w + ix as usize]);
                        }
                    }
                }
                y[oy * pw.out + ox] = m;
            }
        }
        y
    }

    #[test]
    fn senet_stem_pools_always_map() {
        // A 2-pixel plane is the one exception (aclnn needs the padded plane to hold the
        // kernel); SENet's stem output is at least 16x16.
        assert_eq!(aclnn_same_pool(2, 3, 2), None);
        for input in (1..300).filter(|&i| i != 2) {
            let p = aclnn_same_pool(input, 3, 2).unwrap_or_else(|| panic!("{input}"));
            assert_eq!(p.out, input.div_ceil(2));
            // Ceil mode fits every size, so mixed even/odd planes share one flag.
            assert!(aclnn_same_pool_with(input, 3, 2, true).is_some(), "{input}");
            // Even sizes: no padding before, ceil mode; odd: one on each side, floor mode.
            if input % 2 == 0 {
                assert_eq!((p.pad, p.ceil_mode), (0, true), "{input}");
            } else {
                assert_eq!((p.pad, p.ceil_mode), (1, false), "{input}");
            }
        }
        assert_eq!(
            aclnn_same_pool(112, 3, 2),
            Some(AclnnPool {
                out: 56,
                pad: 0,
                ceil_mode: true
            })
        );
    }

    #[test]
    fn mapped_pools_equal_the_cpu_same_pool() {
        let cpu = CpuBackend::new(1).unwrap();
        let mut checked = 0;
        for k in 1..=5 {
            for s in 1..=3 {
                for h in 1..=13 {
                    let w = h + 2;
                    let Some((ph, pw)) = aclnn_same_pool_2d(h, w, k, s) else {
                        continue;
                    };
                    // Values that make ties rare but include negatives (padding must not win).
                    let x: Vec<f32> = (0..h * w)
                        .map(|i| ((i * 7919 % 97) as f32 - 48.0) * 0.5)
                        .collect();
                    let xs = Shape4::new(1, 1, h, w);
                    let mut y = vec![0.0; ph.out * pw.out];
                    let pool = MaxPool2dParams::same(k, s);
                    let ys = cpu.max_pool2d(pool, &x, xs, &mut y).unwrap();
                    assert_eq!((ys.h, ys.w), (ph.out, pw.out));
                    let r = aclnn_pool_reference(&x, h, w, k, s, ph, pw);
                    assert_eq!(y, r, "k {k} s {s} {h}x{w}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "{checked}");
        assert!(aclnn_same_pool_2d(112, 111, 3, 2).is_some_and(|(a, b)| a.ceil_mode && b.ceil_mode));
    }

    #[test]
    fn unmappable_geometries_are_refused() {
        // k 1, s 3 over 5: out 2, total pad max(0, 3+1-5) = 0 -> maps (floor).
        assert!(aclnn_same_pool(5, 1, 3).is_some());
        // k 2, s 1 over 4: out 4, total pad 1 (after): pb 0, and aclnn gives 3 either way.
        assert_eq!(aclnn_same_pool(4, 2, 1), None);
        assert_eq!(aclnn_same_pool(0, 3, 2), None);
    }

    #[test]
    fn mask_shape_follows_the_header() {
        assert_eq!(mask_dims(2, 64, 3, 56, 56), [2, 64, 9, (196 + 1) * 32]);
    }
}
