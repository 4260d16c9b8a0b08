//! Grouped convolutions with few channels per group (ResNeXt's 3x3, 32 groups of 4 to 16
//! channels) by a direct AVX-512 kernel, x86_64 only: `kernels/cpu/conv_grouped_avx512.c`
//! (method in its header). The im2col GEMM of such a group is a product of 4 to 16 rows whose
//! packing costs more than the product; the direct kernel reads each group's padded input in
//! place.
//!
//! Work split: one task per (image, group) pair across the rayon pool, so a single image splits
//! over its groups and a batch over both, with no synchronisation inside a task. Each output is
//! summed over (ci, ky, kx) in ascending order from 0 by FMA, then the bias is added: the order
//! of the im2col GEMM of one k block, whatever the split.
use super::super::sgemm::{self, Line};
use super::{ConvGeometry, ConvOp, PerImage};
use crate::backend::Activation;
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::OnceLock;

thread_local! {
    /// Per-thread scratch: one group's padded input and an output strip.
    static SCRATCH: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

/// `senet_gconv` of `conv_grouped_avx512.h`.
#[repr(C)]
struct RawGconv {
    x: *const f32,
    wt: *const f32,
    bias: *const f32,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    groups: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
    act: i32,
}

extern "C" {
    fn senet_gconv_scratch_floats(p: *const RawGconv) -> usize;
    fn senet_gconv_group(p: *const RawGconv, g: usize, y: *mut f32, scratch: *mut f32);
}

/// Whether the direct kernel is enabled: AVX-512 present and not turned off by
/// `SENET_CPU_GROUPED=gemm`, which keeps the GEMM paths for grouped convs (for comparisons).
fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        sgemm::available() && std::env::var("SENET_CPU_GROUPED").as_deref() != Ok("gemm")
    })
}

/// Whether this path computes the convolution: the kernel enabled ([`enabled`]), groups > 1
/// with fewer than 32 output channels per group (the groups the AVX-512 GEMM leaves to the
/// `gemm` crate, [`super::avx512::supports`]; with 32, seresnext50's last stage, the GEMM
/// measured as fast), stride 1 or 2, a kernel of at most 7x7, and an epilogue None or ReLU.
pub(super) fn supports(act: Activation, g: &ConvGeometry) -> bool {
    let groups = g.p.groups;
    enabled()
        && groups > 1
        && g.ys.c / groups < 32
        && (g.p.stride == 1 || g.p.stride == 2)
        && g.kh <= 7
        && g.kw <= 7
        && act != Activation::Sigmoid
}

/// `y = act(conv(x, w) + bias)` of `op` for the batch `op.g.xs.n` (x: (N, Cin, H, W), y:
/// (N, Cout, OH, OW)) on the current rayon pool; then `post` on each image. The caller has
/// checked [`supports`] and the slice lengths.
pub(super) fn conv2d(op: &ConvOp, x: &[f32], y: &mut [f32], post: Option<PerImage>) {
    let g = &op.g;
    let (n, groups) = (g.xs.n, g.p.groups);
    let (xi, yi) = (g.xs.image_len(), g.ys.image_len());
    let group_len = yi / groups;
    assert!(x.len() >= n * xi && y.len() >= n * yi);
    assert!(op.w.len() >= g.ys.c * g.xs.c / groups * g.kh * g.kw);
    assert!(op.bias.is_none_or(|b| b.len() >= g.ys.c));
    y[..n * yi]
        .par_chunks_mut(group_len)
        .enumerate()
        .for_each(|(t, yg)| {
            let (img, gi) = (t / groups, t % groups);
            group(op, &x[img * xi..(img + 1) * xi], gi, yg);
        });
    if let Some(post) = post {
        let (out, len, f) = (&mut post.out[..n * post.len], post.len, post.f);
        y[..n * yi]
            .par_chunks(yi)
            .zip(out.par_chunks_mut(len))
            .for_each(|(y1, o1)| f(y1, o1));
    }
}

/// Group `gi` of one image `x1` (Cin, H, W) into `yg`, the group's output channels.
fn group(op: &ConvOp, x1: &[f32], gi: usize, yg: &mut [f32]) {
    let g = &op.g;
    let cout_g = g.ys.c / g.p.groups;
    let plane = g.ys.h * g.ys.w;
    assert_eq!(yg.len(), cout_g * plane);
    let raw = RawGconv {
        x: x1.as_ptr(),
        wt: op.w.as_ptr(),
        bias: op.bias.map_or(std::ptr::null(), |b| b.as_ptr()),
        cin: g.xs.c,
        h: g.xs.h,
        w: g.xs.w,
        cout: g.ys.c,
        groups: g.p.groups,
        kh: g.kh,
        kw: g.kw,
        stride: g.p.stride,
        pad: g.p.padding,
        oh: g.ys.h,
        ow: g.ys.w,
        act: i32::from(op.act == Activation::Relu),
    };
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        // SAFETY: a pure size computation on the descriptor (stride 1 or 2: `supports`).
        let need = unsafe { senet_gconv_scratch_floats(&raw) };
        let scratch = sgemm::aligned(&mut s, need);
        // SAFETY: the CPU has AVX-512 (`supports`); x1 is one (Cin, H, W) image, the weight
        // and bias hold Cout x Cin/groups x kh x kw and Cout values (checked by the caller);
        // the kernel writes only the planes of group gi's channels, which are exactly yg
        // (checked above); the scratch holds the floats the kernel asks for, 64-byte aligned.
        unsafe { senet_gconv_group(&raw, gi, yg.as_mut_ptr(), scratch.as_mut_ptr()) }
    });
}

#[cfg(test)]
mod tests {
    use super::super::check_against_direct;
    use super::*;
    use crate::backend::cpu::test_values as fill;
    use crate::backend::Conv2dParams;

    /// Against the direct sum for odd shapes: strides 1 and 2, paddings 0 to 3, 1x1 to 7x7 and
    /// non-square kernels, non-square images, 1 to 31 output channels per group (not only
    /// multiples of the kernel's 4), batch 1 and larger, bias or none, ReLU or none, the fused
    /// per-image post; bit for bit the same on 1, 2 and 3 threads.
    #[test]
    fn matches_direct_convolution() {
        if !enabled() {
            return;
        }
        // (n, cin, cout, h, w, kh, kw, stride, pad, groups)
        let cases = [
            (1, 128, 128, 56, 56, 3, 3, 1, 1, 32),
            (2, 64, 64, 15, 13, 3, 3, 2, 1, 32),
            (1, 12, 18, 9, 11, 3, 3, 1, 1, 3),
            (3, 10, 15, 7, 7, 3, 3, 2, 1, 5),
            (1, 8, 8, 6, 9, 1, 1, 1, 0, 2),
            (2, 6, 9, 8, 8, 5, 3, 1, 2, 3),
            (1, 4, 2, 20, 17, 7, 7, 2, 3, 2),
            (1, 62, 62, 5, 5, 3, 3, 1, 0, 2),
            (2, 93, 93, 7, 7, 3, 3, 1, 1, 3),
            (1, 6, 6, 4, 4, 3, 3, 2, 2, 6),
        ];
        for (case, &(n, cin, cout, h, w, kh, kw, s, pad, groups)) in cases.iter().enumerate() {
            let p = Conv2dParams {
                stride: s,
                padding: pad,
                groups,
            };
            let g = ConvGeometry::of(n, cin, cout, [h, w], [kh, kw], p);
            let x = fill(g.xs.numel(), case as u64 + 1);
            let wt = fill(cout * cin / groups * kh * kw, case as u64 + 50);
            let bias = fill(cout, case as u64 + 90);
            let with_bias = case % 3 != 1;
            let act = if case % 2 == 0 {
                Activation::Relu
            } else {
                Activation::None
            };
            let op = ConvOp {
                g,
                w: &wt,
                bias: with_bias.then_some(&bias[..]),
                act,
            };
            assert!(supports(act, &g), "case {case}");
            let mut first: Option<Vec<f32>> = None;
            for threads in [1, 2, 3] {
                let what = format!("case {case} threads {threads}");
                let y = check_against_direct(&op, &x, threads, &what, |x, y, post| {
                    conv2d(&op, x, y, post)
                });
                match &first {
                    None => first = Some(y),
                    Some(f) => assert!(
                        f.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "case {case}: {threads} threads differ"
                    ),
                }
            }
        }
    }

    /// Which convs take this path: grouped, thin groups, strides 1 and 2 only.
    #[test]
    fn chooses_its_convolutions() {
        if !enabled() {
            return;
        }
        let geom = |cin: usize, cout: usize, k: usize, stride: usize, groups: usize| {
            let p = Conv2dParams {
                stride,
                padding: k / 2,
                groups,
            };
            ConvGeometry::of(1, cin, cout, [28, 28], [k, k], p)
        };
        let relu = Activation::Relu;
        assert!(supports(relu, &geom(128, 128, 3, 1, 32)));
        assert!(supports(relu, &geom(512, 512, 3, 2, 32)));
        assert!(!supports(relu, &geom(1024, 1024, 3, 2, 32)));
        assert!(!supports(relu, &geom(128, 128, 3, 1, 1)));
        assert!(!supports(relu, &geom(128, 128, 3, 3, 32)));
        assert!(!supports(relu, &geom(128, 256, 3, 1, 2)));
        assert!(!supports(relu, &geom(64, 64, 9, 1, 32)));
        assert!(!supports(Activation::Sigmoid, &geom(128, 128, 3, 1, 32)));
    }
}
