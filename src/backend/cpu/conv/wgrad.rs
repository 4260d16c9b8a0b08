//! The filter gradient of a run of images on senet's AVX-512 GEMM (`kernels/cpu/sgemm_avx512.c`).
//!
//! For one group, with `K = Cin/groups·kh·kw` and `P = OH·OW`, the filter gradient of image i is
//! `dW (Cout_g×K) += dY_i (Cout_g×P) · col_iᵀ (P×K)` ([`super::backward`]). The GEMM reads B as
//! packed rows of contiguous columns and broadcasts A along k, so the product is taken transposed:
//! `dWᵀ (K×Cout_g) += col_i (K×P) · dY_iᵀ (P×Cout_g)`, with `col_i` the im2col gather of the data
//! gradient's path (A, row-major along the pixels, as gathered) and `dY_iᵀ` one transpose of
//! `dY_i` per image (B, rows of Cout_g contiguous floats; the transpose costs 1/(2K) of the
//! product). Images whose planes are smaller than one k block (14x14 and 7x7) are laid side by side
//! in the columns of A and the rows of B, so each product sums at least ~512 pixels before it
//! meets C (otherwise the 7x7 layers would spend a pass over their 9 MiB of C for every 49-pixel
//! sum); each image's columns are gathered straight into their place (`kernels::im2col_rows`:
//! the im2col with the row stride of the wider matrix). The run's sums go into a transposed accumulator (the first product stores, the later
//! ones add with [`sgemm_acc`]), transposed into the caller's `(Cout, Cin/groups, kh, kw)`
//! target once per run.
//!
//! Each gradient is therefore an f32 sum of the run's `images·P` products in a fixed order (k
//! ascending within the GEMM's k blocks, blocks and products added in turn): a direct sum, within
//! the same Higham bound as the `gemm` crate's, and independent of the scheduling.
//! `SENET_CPU_WGRAD=gemm-crate` ([`CpuBackend::set_legacy_filter_gradient`]) takes the `gemm`
//! crate path of before instead, for A/B runs.
//!
//! [`CpuBackend::set_legacy_filter_gradient`]: super::super::CpuBackend::set_legacy_filter_gradient
//! [`CpuBackend::set_legacy_filter_gather`]: super::super::CpuBackend::set_legacy_filter_gather
use super::super::kernels;
use super::super::matmul::Par;
use super::super::sgemm::{self, sgemm, sgemm_acc, transpose, BSrc, Out};
use super::backward::{cols_kind, gather, Cols};
use super::ConvGeometry;
use crate::backend::Activation;
use std::cell::RefCell;
use std::ops::Range;

/// Pixels summed per product, at least (when a plane is smaller, several images are side by
/// side): the GEMM's largest k block, so a product passes over C once per k block.
const DEPTH: usize = 512;

/// Output channels per group below which the `gemm` crate keeps the filter gradient: with
/// fewer columns than one 48-float panel the GEMM's tail kernels run most of the product
/// (ResNeXt's grouped 3x3 convs, 4 to 32 channels per group, measured 0.7-0.9x the `gemm`
/// crate's speed in `benches/layers.rs`).
const MIN_COUT_G: usize = 48;

/// Per-thread buffers of [`run`], grown to the largest layer and reused.
#[derive(Default)]
struct Buffers {
    /// The columns of the images of one product, (Cin·kh·kw) × (images·P).
    col: Vec<f32>,
    /// One image's columns, when several images are side by side and `copy` (see [`run`]).
    image: Vec<f32>,
    /// `dYᵀ` of the same images, per group (images·P) × Cout_g.
    dyt: Vec<f32>,
    /// The run's sums, per group K × Cout_g.
    acc: Vec<f32>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// The first `len` floats of `v`, grown (with zeros) to hold them.
fn grown(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// One image's columns (an im2col or subsample gather, not [`Cols::Direct`]) written straight
/// into their place among several images' side by side: row r at `col[r*ld ..]`.
fn gather_rows(x1: &[f32], g: &ConvGeometry, kind: Cols, col: &mut [f32], ld: usize) {
    let geom = g.im2col(g.xs.c);
    match kind {
        Cols::Subsample => kernels::subsample_rows(x1, geom, col, ld),
        _ => kernels::im2col_rows(x1, geom, col, ld),
    }
}

/// Whether [`run`] takes the filter gradient of `g`: the CPU has the AVX-512 GEMM, the backend
/// was not told to keep the `gemm` crate, each group has at least [`MIN_COUT_G`] output
/// channels, and the conv is not a 1x1 with more outputs than inputs per group. Those (the
/// bottlenecks' expansions and the downsampling convs) keep the `gemm` crate: `dYᵀ` is then
/// larger than `col`, and transposing it cost more than the GEMM gained (0.5-0.9x in
/// `benches/layers.rs`).
pub(super) fn usable(legacy: bool, g: &ConvGeometry) -> bool {
    let (cin_g, cout_g) = (g.xs.c / g.p.groups, g.ys.c / g.p.groups);
    let expansion = g.kh * g.kw == 1 && cout_g > cin_g;
    !legacy && cout_g >= MIN_COUT_G && !expansion && sgemm::available()
}

/// `target` (Cout, Cin/groups, kh, kw) (+)= Σ over `images` of image i's filter gradient
/// (`accumulate` false overwrites), from the NCHW `x` and `dy` of the whole batch. See the
/// module doc for the order of the sums. `copy` gathers the columns of images laid side by side
/// into a buffer of their own first, then copies them into place (the path before
/// [`gather_rows`]; [`CpuBackend::set_legacy_filter_gather`]): the same values.
pub(super) fn run(
    x: &[f32],
    dy: &[f32],
    g: &ConvGeometry,
    images: Range<usize>,
    target: &mut [f32],
    accumulate: bool,
    copy: bool,
) {
    let groups = g.p.groups;
    let (cin_g, cout_g) = (g.xs.c / groups, g.ys.c / groups);
    let (k_g, plane) = (cin_g * g.kh * g.kw, g.ys.h * g.ys.w);
    let k = groups * k_g;
    let (xi, yi) = (g.xs.image_len(), g.ys.image_len());
    let kind = cols_kind(g);
    if images.is_empty() {
        if !accumulate {
            target.fill(0.0);
        }
        return;
    }
    let per = (DEPTH / plane).clamp(1, images.len());
    BUFFERS.with(|b| {
        let b = &mut *b.borrow_mut();
        let acc = grown(&mut b.acc, k * cout_g);
        for (chunk, start) in images.clone().step_by(per).enumerate() {
            let count = per.min(images.end - start);
            let width = count * plane;
            // A: the columns of the chunk's images side by side, K × width.
            let col: &[f32] = if count == 1 && kind == Cols::Direct {
                &x[start * xi..start * xi + k * plane]
            } else if count == 1 {
                let col = grown(&mut b.col, k * plane);
                gather(&x[start * xi..], g, kind, col, Par::Seq);
                col
            } else {
                let col = grown(&mut b.col, k * width);
                for j in 0..count {
                    let x1 = &x[(start + j) * xi..(start + j + 1) * xi];
                    let dst = &mut col[j * plane..];
                    if kind != Cols::Direct && !copy {
                        gather_rows(x1, g, kind, dst, width);
                        continue;
                    }
                    let src: &[f32] = if kind == Cols::Direct {
                        x1
                    } else {
                        let image = grown(&mut b.image, k * plane);
                        gather(x1, g, kind, image, Par::Seq);
                        image
                    };
                    for (r, row) in src[..k * plane].chunks_exact(plane).enumerate() {
                        dst[r * width..r * width + plane].copy_from_slice(row);
                    }
                }
                col
            };
            // B: dYᵀ per group, width × Cout_g.
            let dyt = grown(&mut b.dyt, groups * width * cout_g);
            for j in 0..count {
                let dy1 = &dy[(start + j) * yi..(start + j + 1) * yi];
                for gi in 0..groups {
                    let src = &dy1[gi * cout_g * plane..(gi + 1) * cout_g * plane];
                    let dst = &mut dyt[(gi * width + j * plane) * cout_g..];
                    transpose(src, plane, cout_g, plane, dst, cout_g);
                }
            }
            for gi in 0..groups {
                let a = &col[gi * k_g * width..(gi + 1) * k_g * width];
                let bt = &dyt[gi * width * cout_g..(gi + 1) * width * cout_g];
                let b = BSrc::matrix(bt, width, cout_g, cout_g);
                let c = &mut acc[gi * k_g * cout_g..(gi + 1) * k_g * cout_g];
                let out = Out { c, ldc: cout_g };
                if chunk == 0 {
                    sgemm(k_g, cout_g, a, width, &b, 0, out, None, Activation::None);
                } else {
                    sgemm_acc(k_g, cout_g, a, width, &b, 0, out);
                }
            }
        }
        // dW (Cout_g × K) of each group from its accumulator K × Cout_g.
        for gi in 0..groups {
            let src = &acc[gi * k_g * cout_g..(gi + 1) * k_g * cout_g];
            let dst = &mut target[gi * cout_g * k_g..(gi + 1) * cout_g * k_g];
            if accumulate {
                for (co, row) in dst.chunks_exact_mut(k_g).enumerate() {
                    for (r, d) in row.iter_mut().enumerate() {
                        *d += src[r * cout_g + co];
                    }
                }
            } else {
                transpose(src, cout_g, k_g, cout_g, dst, k_g);
            }
        }
    });
}
