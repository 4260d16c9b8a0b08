//! The filter gradient of an ungrouped conv on the AVX-512 GEMM ([`sgemm::sgemm_packed`]),
//! x86_64 only. With `K = Cin·kh·kw` and `P = OH·OW`, per image
//! `dWᵀ[K×Cout] (+)= col[K×P] · dYᵀ[P×Cout]`: A is the image's im2col (the image itself for a
//! 1x1 stride-1 conv, subsampled for a strided 1x1 one), row-major as gathered; B is `dY`
//! (Cout × P) transposed into the GEMM's 48-column panels, K times fewer values than `col` for
//! a 3x3 conv. The sum over the batch is reduced as `backward.rs` does: one contiguous run of
//! images per thread, each run summed image by image, the runs added in run order, then the
//! total transposed into `dw` (Cout, Cin, kh, kw). Bit-identical run to run for a given thread
//! count.
use super::super::kernels;
use super::super::sgemm::{self, Line, NR};
use super::super::CpuBackend;
use super::ConvGeometry;
use rayon::prelude::*;
use std::cell::RefCell;

/// Pixels per block of the transpose into panels (a 64 x 48 block of a panel stays in L1).
const PIXEL_BLOCK: usize = 64;

thread_local! {
    /// Per-run sums `dWᵀ` (runs x K x Cout), owned by the calling thread.
    static SUMS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread im2col of one image (K x P).
    static COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread panels of one image's `dYᵀ`.
    static PANELS: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
    /// Per-thread product of one image before it is added to its run's sum (K x Cout).
    static PRODUCT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether this path computes the filter gradient of `g`: AVX-512 present and no groups.
pub(super) fn supports(g: &ConvGeometry) -> bool {
    sgemm::available() && g.p.groups == 1
}

/// `dw` (Cout, Cin, kh, kw) (+)= the filter gradient of `g` summed over its `g.xs.n` images
/// (`x` (N, Cin, H, W), `dy` (N, Cout, OH, OW)), in `runs` runs of images on the backend's pool.
/// The caller has checked [`supports`], the lengths and that no dimension is 0.
pub(super) fn conv2d_backward_filter(
    be: &CpuBackend,
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    accumulate: bool,
    runs: usize,
) {
    let (n, k, cout) = (g.xs.n, g.xs.c * g.kh * g.kw, g.ys.c);
    let wl = k * cout;
    SUMS.with(|sums| {
        let mut sums = sums.borrow_mut();
        if sums.len() < runs * wl {
            sums.resize(runs * wl, 0.0);
        }
        let sums = &mut sums[..runs * wl];
        be.pool.install(|| {
            sums.par_chunks_mut(wl)
                .enumerate()
                .for_each(|(r, sum)| run_images(x, dy, g, r * n / runs..(r + 1) * n / runs, sum))
        });
        let (total, rest) = sums.split_at_mut(wl);
        for part in rest.chunks(wl) {
            add(total, part);
        }
        for (co, dw_co) in dw[..wl].chunks_mut(k).enumerate() {
            for (j, d) in dw_co.iter_mut().enumerate() {
                let v = total[j * cout + co];
                *d = if accumulate { *d + v } else { v };
            }
        }
    });
}

/// `sum[..] += part[..]`.
fn add(sum: &mut [f32], part: &[f32]) {
    for (d, s) in sum.iter_mut().zip(part) {
        *d += *s;
    }
}

/// `sum` (K x Cout) = Σ over `images` of `col_i · dY_iᵀ`, image by image in order.
fn run_images(
    x: &[f32],
    dy: &[f32],
    g: &ConvGeometry,
    images: std::ops::Range<usize>,
    sum: &mut [f32],
) {
    let (xi, yi) = (g.xs.image_len(), g.ys.image_len());
    let (k, cout, plane) = (g.xs.c * g.kh * g.kw, g.ys.c, g.ys.h * g.ys.w);
    let pointwise = g.kh == 1 && g.kw == 1 && g.p.padding == 0;
    let direct = pointwise && g.p.stride == 1;
    let (mut col, mut panels, mut product) = (
        COL.with(|c| c.take()),
        PANELS.with(|p| p.take()),
        PRODUCT.with(|p| p.take()),
    );
    if !direct && col.len() < k * plane {
        col.resize(k * plane, 0.0);
    }
    if product.len() < k * cout {
        product.resize(k * cout, 0.0);
    }
    let packed = sgemm::aligned(&mut panels, sgemm::packed_len(plane, cout));
    let first = images.start;
    for i in images {
        let x1 = &x[i * xi..(i + 1) * xi];
        let a: &[f32] = if direct {
            x1
        } else {
            let c = &mut col[..k * plane];
            if pointwise {
                kernels::subsample(x1, g.im2col(g.xs.c), c);
            } else {
                kernels::im2col(x1, g.im2col(g.xs.c), c);
            }
            c
        };
        pack_transposed(&dy[i * yi..(i + 1) * yi], cout, plane, packed);
        if i == first {
            sgemm::sgemm_packed(k, cout, plane, a, plane, packed, sum, cout);
        } else {
            let p = &mut product[..k * cout];
            sgemm::sgemm_packed(k, cout, plane, a, plane, packed, p, cout);
            add(sum, p);
        }
    }
    COL.with(|c| c.replace(col));
    PANELS.with(|p| p.replace(panels));
    PRODUCT.with(|p| p.replace(product));
}

/// `dy1` (`rows` x `cols`, row-major) transposed into the B panels of
/// [`sgemm::sgemm_packed`]: `B[r, j] = dy1[j, r]` at `panels[(j / NR)·cols·NR + r·NR + j % NR]`;
/// the unused lanes of the last panel are 0.
fn pack_transposed(dy1: &[f32], rows: usize, cols: usize, panels: &mut [f32]) {
    for (pj, panel) in panels[..sgemm::packed_len(cols, rows)]
        .chunks_mut(cols * NR)
        .enumerate()
    {
        let j0 = pj * NR;
        let width = (rows - j0).min(NR);
        for r0 in (0..cols).step_by(PIXEL_BLOCK) {
            let r1 = (r0 + PIXEL_BLOCK).min(cols);
            for jj in 0..width {
                let src = &dy1[(j0 + jj) * cols + r0..(j0 + jj) * cols + r1];
                for (r, &v) in (r0..r1).zip(src) {
                    panel[r * NR + jj] = v;
                }
            }
            if width < NR {
                for r in r0..r1 {
                    panel[r * NR + width..(r + 1) * NR].fill(0.0);
                }
            }
        }
    }
}
