//! Safe wrapper of the AVX-512 conv GEMM in `kernels/cpu/sgemm_avx512.c` (x86_64 only):
//! `C[m x n] = act(bias + A[m x k] · B[k x n])` with A the row-major weights as stored and B the
//! implicit im2col matrix of one or more NCHW images ([`BSrc`]), gathered into a small panel per
//! call (no im2col buffer). Used only when [`available`] (the CPU has AVX-512 F/BW/DQ/VL).
use crate::backend::Activation;
use std::cell::RefCell;
use std::sync::OnceLock;

/// Columns of one packed B panel (3 zmm), as `SENET_SGEMM_NR` in `sgemm_avx512.h`.
pub const NR: usize = 48;

/// The im2col matrix of images `x[i*img_stride ..]`, each (c, h, w): row `(ci, ky, kx)`, column
/// `img * oh*ow + oy*ow + ox` holds `x[img, ci, oy*stride + ky - pad, ox*stride + kx - pad]`
/// (0 outside the image). A plain row-major K x N matrix with row stride `ldb` is
/// `BSrc::matrix`.
#[derive(Debug, Clone, Copy)]
pub struct BSrc<'a> {
    /// The images (or the matrix).
    pub x: &'a [f32],
    /// Elements from one image to the next in `x`.
    pub img_stride: usize,
    /// Images side by side in the columns.
    pub nimg: usize,
    /// Input channels (rows of a plain matrix).
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width (row stride of a plain matrix).
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub pad: usize,
    /// Output height.
    pub oh: usize,
    /// Output width (columns per image).
    pub ow: usize,
}

impl<'a> BSrc<'a> {
    /// A row-major `k` x `n` matrix with row stride `ldb`.
    pub fn matrix(x: &'a [f32], k: usize, n: usize, ldb: usize) -> BSrc<'a> {
        BSrc {
            x,
            img_stride: 0,
            nimg: 1,
            c: k,
            h: 1,
            w: ldb,
            kh: 1,
            kw: 1,
            stride: 1,
            pad: 0,
            oh: 1,
            ow: n,
        }
    }

    /// Rows of the matrix (c * kh * kw).
    pub fn rows(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Columns of the matrix (nimg * oh * ow).
    pub fn cols(&self) -> usize {
        self.nimg * self.oh * self.ow
    }
}

/// `senet_bsrc` of `sgemm_avx512.h`.
#[repr(C)]
struct RawBSrc {
    x: *const f32,
    img_stride: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

extern "C" {
    fn senet_sgemm_avx512(
        m: usize,
        n: usize,
        a: *const f32,
        lda: usize,
        b: *const RawBSrc,
        j0: usize,
        c: *mut f32,
        ldc: usize,
        bias: *const f32,
        act: i32,
        pack: *mut f32,
    );
    fn senet_sgemm_avx512_acc(
        m: usize,
        n: usize,
        a: *const f32,
        lda: usize,
        b: *const RawBSrc,
        j0: usize,
        c: *mut f32,
        ldc: usize,
        pack: *mut f32,
    );
    fn senet_sgemm_pack_floats() -> usize;
    fn senet_sgemm_transpose(
        src: *const f32,
        lds: usize,
        rows: usize,
        cols: usize,
        dst: *mut f32,
        ldd: usize,
    );
    fn senet_sgemm_set_kc(kc: usize);
    fn senet_sgemm_avx512_packed(
        m: usize,
        n: usize,
        k: usize,
        a: *const f32,
        lda: usize,
        panels: *const f32,
        c: *mut f32,
        ldc: usize,
    );
}

/// Whether the AVX-512 GEMM can run here (and is not disabled by `SENET_CPU_GEMM=crate`, which
/// forces the `gemm`-crate path for comparisons). The first call also applies
/// `SENET_CPU_SGEMM_KC=<rows>`, a smaller largest k block (16 to 512; the default 512) for
/// same-run comparisons of the blocking; every caller of the kernels calls this first.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let ok = std::env::var("SENET_CPU_GEMM").as_deref() != Ok("crate")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("fma");
        let kc = std::env::var("SENET_CPU_SGEMM_KC").ok();
        if let (true, Some(kc)) = (ok, kc.and_then(|v| v.parse::<usize>().ok())) {
            // SAFETY: sets a plain integer; no product has run yet (they all follow this call).
            unsafe { senet_sgemm_set_kc(kc) }
        }
        ok
    })
}

/// 64-byte aligned storage (packed panels, Winograd buffers): one cache line of floats.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct Line(pub [f32; 16]);

/// The floats of `lines`, resized first to hold at least `len` floats (new lines are 0).
pub fn aligned(lines: &mut Vec<Line>, len: usize) -> &mut [f32] {
    let n = len.div_ceil(16);
    if lines.len() < n {
        lines.resize(n, Line([0.0; 16]));
    }
    let lines = &mut lines[..n];
    // SAFETY: `Line` is 16 f32 with no padding (repr(C), 64 bytes); the slice covers n lines.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<f32>(), 16 * n) }
}

thread_local! {
    /// Per-thread B block (`SENET_SGEMM_PACK_FLOATS` floats).
    static PACK: RefCell<Vec<Line>> = RefCell::new({
        // SAFETY: a constant getter without preconditions.
        let floats = unsafe { senet_sgemm_pack_floats() };
        vec![Line([0.0; 16]); floats.div_ceil(16)]
    });
}

/// The output of one product: `c[i*ldc + j]` for i < m, j < n.
#[derive(Debug)]
pub struct Out<'a> {
    /// The output values.
    pub c: &'a mut [f32],
    /// Elements from one output row to the next.
    pub ldc: usize,
}

impl Out<'_> {
    /// Panics unless `c` holds every index of an m x n product.
    fn assert_holds(&self, m: usize, n: usize) {
        let need = if m == 0 || n == 0 {
            0
        } else {
            (m - 1) * self.ldc + n
        };
        assert!(self.c.len() >= need, "C too short");
    }
}

/// `c[i*ldc + j] = act(bias[i] + Σ_r a[i*lda + r] · B[r, j0 + j])` for i < m, j < n (r < k =
/// `b.rows()`; no bias term when `bias` is None). `act` is None or Relu. Panics if a slice is too short, the
/// columns exceed `b`, or the CPU lacks AVX-512 ([`available`]).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    b: &BSrc,
    j0: usize,
    out: Out,
    bias: Option<&[f32]>,
    act: Activation,
) {
    out.assert_holds(m, n);
    // SAFETY: C holds every index the product writes (checked); the slice is exclusively ours.
    unsafe { sgemm_ptr(m, n, a, lda, b, j0, out.c.as_mut_ptr(), out.ldc, bias, act) }
}

/// [`sgemm`] with C as a raw pointer, for callers that split one C by columns across threads.
///
/// # Safety
/// `c[i*ldc + j]` for i < m, j < n must be valid for writes and not accessed by anyone else
/// during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_ptr(
    m: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    b: &BSrc,
    j0: usize,
    c: *mut f32,
    ldc: usize,
    bias: Option<&[f32]>,
    act: Activation,
) {
    assert!(act != Activation::Sigmoid, "sgemm epilogue: None or ReLU");
    // SAFETY: passed on from the caller.
    unsafe { product(m, n, a, lda, b, j0, c, ldc, Epilogue::Store { bias, act }) }
}

/// How a product meets C: [`sgemm`]'s store with bias and activation, or [`sgemm_acc`]'s add.
#[derive(Clone, Copy)]
enum Epilogue<'a> {
    Store {
        bias: Option<&'a [f32]>,
        act: Activation,
    },
    Add,
}

/// `c += A·B` for i < m, j < n: [`sgemm`]'s product with no bias or activation, each k block's
/// sum (the blocks of [`sgemm`], up to 512 rows) added to C in block order; on a zero C the same
/// values as [`sgemm`]. For sums over several calls (the filter gradient's sum over images).
/// Panics as [`sgemm`].
pub fn sgemm_acc(m: usize, n: usize, a: &[f32], lda: usize, b: &BSrc, j0: usize, out: Out) {
    out.assert_holds(m, n);
    // SAFETY: C holds every index the product reads and writes (checked); it is ours alone.
    unsafe {
        product(
            m,
            n,
            a,
            lda,
            b,
            j0,
            out.c.as_mut_ptr(),
            out.ldc,
            Epilogue::Add,
        )
    }
}

/// The checks and the call of both [`sgemm_ptr`] and [`sgemm_acc`].
///
/// # Safety
/// As [`sgemm_ptr`] (C also read for [`Epilogue::Add`]).
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    m: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    b: &BSrc,
    j0: usize,
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue,
) {
    let k = b.rows();
    assert!(available(), "AVX-512 GEMM on a CPU without AVX-512");
    assert!(
        j0 + n <= b.cols(),
        "columns {}..{} of {}",
        j0,
        j0 + n,
        b.cols()
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(lda >= k && a.len() >= (m - 1) * lda + k, "A too short");
    assert!(ldc >= n, "ldc < n");
    assert!(b.nimg >= 1 && b.x.len() >= (b.nimg - 1) * b.img_stride + b.c * b.h * b.w);
    assert!(b.stride >= 1 && b.kh >= 1 && b.kw >= 1);
    if let Epilogue::Store {
        bias: Some(bias), ..
    } = epilogue
    {
        assert!(bias.len() >= m, "bias too short");
    }
    let raw = RawBSrc {
        x: b.x.as_ptr(),
        img_stride: b.img_stride,
        c: b.c,
        h: b.h,
        w: b.w,
        kh: b.kh,
        kw: b.kw,
        stride: b.stride,
        pad: b.pad,
        oh: b.oh,
        ow: b.ow,
    };
    PACK.with(|pack| {
        let mut pack = pack.borrow_mut();
        let pack = pack.as_mut_ptr().cast::<f32>();
        // SAFETY: the CPU has the instructions (checked); A and bias hold the indices the kernel
        // reads (checked above), C is the caller's promise; B is read only at (image < nimg,
        // channel < c, row < h, column < w) positions, inside x; the pack buffer holds
        // SENET_SGEMM_PACK_FLOATS floats, 64-byte aligned.
        unsafe {
            match epilogue {
                Epilogue::Store { bias, act } => senet_sgemm_avx512(
                    m,
                    n,
                    a.as_ptr(),
                    lda,
                    &raw,
                    j0,
                    c,
                    ldc,
                    bias.map_or(std::ptr::null(), |b| b.as_ptr()),
                    i32::from(act == Activation::Relu),
                    pack,
                ),
                Epilogue::Add => {
                    senet_sgemm_avx512_acc(m, n, a.as_ptr(), lda, &raw, j0, c, ldc, pack)
                }
            }
        }
    });
}

/// `dst[c*ldd + r] = src[r*lds + c]` for r < rows, c < cols, by AVX-512 gathers of 16 rows.
/// Panics if a slice is too short, `ldd < rows`, `lds < cols`, `15·lds` exceeds an i32 (the
/// gather's offsets) or the CPU lacks AVX-512 ([`available`]).
pub fn transpose(src: &[f32], lds: usize, rows: usize, cols: usize, dst: &mut [f32], ldd: usize) {
    assert!(available(), "AVX-512 transpose on a CPU without AVX-512");
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        lds >= cols && src.len() >= (rows - 1) * lds + cols,
        "src too short"
    );
    assert!(
        ldd >= rows && dst.len() >= (cols - 1) * ldd + rows,
        "dst too short"
    );
    assert!(
        15 * lds <= i32::MAX as usize,
        "row stride {lds} too large for the gathers"
    );
    // SAFETY: the CPU has the instructions; the kernel reads src[r*lds + c] and writes
    // dst[c*ldd + r] for r < rows, c < cols only (masked lanes neither load nor store), inside
    // the slices (checked above); the gather offsets fit an i32 (checked).
    unsafe { senet_sgemm_transpose(src.as_ptr(), lds, rows, cols, dst.as_mut_ptr(), ldd) }
}

/// Floats of the B panels of a `k` x `n` matrix for [`sgemm_packed`]: ceil(n / NR) panels of
/// k x NR.
pub fn packed_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * k * NR
}

/// `c[i*ldc + j] = Σ_r a[i*lda + r] · B[r, j]` for i < m, j < n, r < k, with B given as packed
/// panels: `B[r, j]` at `panels[(j / NR) * k * NR + r * NR + j % NR]` (the lanes of the last panel
/// up to the next multiple of 16 are read, so must be initialised; their products are not
/// stored). Panics if a slice is too short, `panels` is not 64-byte aligned or the CPU lacks
/// AVX-512 ([`available`]).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_packed(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    panels: &[f32],
    c: &mut [f32],
    ldc: usize,
) {
    assert!(available(), "AVX-512 GEMM on a CPU without AVX-512");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(lda >= k && a.len() >= (m - 1) * lda + k, "A too short");
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "C too short");
    let last = (n - 1) / NR;
    let lanes = (n - last * NR).next_multiple_of(16);
    assert!(
        panels.len() >= last * k * NR + (k - 1) * NR + lanes,
        "B panels too short"
    );
    assert_eq!(
        panels.as_ptr().align_offset(64),
        0,
        "B panels not 64-byte aligned"
    );
    // SAFETY: the CPU has the instructions; every index read or written is inside the slices
    // (checked above) and the panels are aligned as the kernel's aligned loads need.
    unsafe {
        senet_sgemm_avx512_packed(
            m,
            n,
            k,
            a.as_ptr(),
            lda,
            panels.as_ptr(),
            c.as_mut_ptr(),
            ldc,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::backend::cpu::test_values as fill;

    fn check(m: usize, n: usize, k: usize, bias: bool, act: Activation) {
        let (lda, ldb, ldc) = (k + 3, n + 5, n + 2);
        let a = fill(m * lda, (m * 1000 + n * 10 + k) as u64);
        let b = fill(k * ldb, (k * 7 + n) as u64);
        let bv = fill(m, 99);
        let mut c = vec![f32::NAN; m * ldc];
        let bias = bias.then_some(&bv[..]);
        sgemm(
            m,
            n,
            &a,
            lda,
            &BSrc::matrix(&b, k, n, ldb),
            0,
            Out { c: &mut c, ldc },
            bias,
            act,
        );
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                let mut mag = 0.0f64;
                for r in 0..k {
                    let p = a[i * lda + r] as f64 * b[r * ldb + j] as f64;
                    s += p;
                    mag += p.abs();
                }
                s += bias.map_or(0.0, |b| b[i] as f64);
                if act == Activation::Relu {
                    s = s.max(0.0);
                }
                let got = c[i * ldc + j] as f64;
                assert!(
                    (got - s).abs() <= 1e-4 * (mag + 1.0),
                    "m{m} n{n} k{k} ({i},{j}): {got} vs {s}"
                );
            }
            // Padding columns of C are untouched.
            for j in n..ldc {
                assert!(c[i * ldc + j].is_nan());
            }
        }
    }

    #[test]
    fn matches_naive_product() {
        if !available() {
            return;
        }
        for &m in &[1, 3, 7, 8, 9, 17, 33, 70] {
            for &n in &[1, 5, 16, 17, 31, 47, 48, 49, 64, 70] {
                for &k in &[1, 2, 9, 63, 255, 256, 257, 512, 513, 600, 1100] {
                    check(m, n, k, (m + n) % 2 == 0, Activation::None);
                }
            }
        }
        for &(m, n, k) in &[
            (5, 33, 100),
            (70, 70, 511),
            (13, 1, 600),
            (8, 96, 27),
            (9, 500, 300),
        ] {
            for bias in [false, true] {
                for act in [Activation::None, Activation::Relu] {
                    check(m, n, k, bias, act);
                }
            }
        }
    }

    /// `sgemm_acc` adds the product to C: against the naive f64 sum plus C's start, within
    /// Higham's bound for k + 1 terms; on a zero C, the values of `sgemm` (same k blocks, same
    /// order). Shapes with 1-3 k blocks (512 rows at most each), m not a multiple of 8 and n not
    /// a multiple of the 48-column panels nor of 16; C rows longer than n (untouched there).
    #[test]
    fn acc_adds_the_naive_product() {
        if !available() {
            return;
        }
        let gamma = |t: usize| {
            let tu = t as f64 * f64::from(f32::EPSILON) / 2.0;
            tu / (1.0 - tu)
        };
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 17, 9),
            (9, 49, 511),
            (8, 64, 513),
            (17, 70, 1100),
            (33, 96, 1600),
            (3, 100, 49),
        ] {
            let (lda, ldb, ldc) = (k + 1, n + 3, n + 2);
            let a = fill(m * lda, (m + 31 * n + k) as u64);
            let b = fill(k * ldb, (k * 3 + n) as u64);
            let start = fill(m * ldc, 7);
            let bsrc = BSrc::matrix(&b, k, n, ldb);
            let mut c = start.clone();
            sgemm_acc(m, n, &a, lda, &bsrc, 0, Out { c: &mut c, ldc });
            let mut zero = vec![0.0f32; m * ldc];
            sgemm_acc(m, n, &a, lda, &bsrc, 0, Out { c: &mut zero, ldc });
            let mut stored = vec![0.0f32; m * ldc];
            let out = Out {
                c: &mut stored,
                ldc,
            };
            sgemm(m, n, &a, lda, &bsrc, 0, out, None, Activation::None);
            for i in 0..m {
                for j in 0..n {
                    let (mut s, mut mag) = (f64::from(start[i * ldc + j]), 0.0f64);
                    mag += s.abs();
                    for r in 0..k {
                        let p = f64::from(a[i * lda + r]) * f64::from(b[r * ldb + j]);
                        s += p;
                        mag += p.abs();
                    }
                    let got = f64::from(c[i * ldc + j]);
                    assert!(
                        (got - s).abs() <= gamma(k + 1) * mag,
                        "m{m} n{n} k{k} ({i},{j}): {got} vs {s}"
                    );
                    assert_eq!(zero[i * ldc + j], stored[i * ldc + j], "m{m} n{n} k{k}");
                }
                for j in n..ldc {
                    assert_eq!(c[i * ldc + j].to_bits(), start[i * ldc + j].to_bits());
                }
            }
        }
    }

    /// `transpose` moves every element and nothing else: rows not a multiple of 16, padded
    /// strides on both sides.
    #[test]
    fn transpose_moves_every_element() {
        if !available() {
            return;
        }
        for &(rows, cols) in &[(1, 1), (16, 3), (17, 40), (70, 33), (5, 100)] {
            let (lds, ldd) = (cols + 3, rows + 2);
            let src = fill(rows * lds, (rows * 100 + cols) as u64);
            let mut dst = vec![f32::NAN; cols * ldd];
            transpose(&src, lds, rows, cols, &mut dst, ldd);
            for c in 0..cols {
                for r in 0..rows {
                    assert_eq!(dst[c * ldd + r].to_bits(), src[r * lds + c].to_bits());
                }
                assert!(dst[c * ldd + rows..(c + 1) * ldd]
                    .iter()
                    .all(|v| v.is_nan()));
            }
        }
    }

    /// The implicit im2col agrees with `kernels::im2col` for 3x3/7x7, strides 1-3, padding,
    /// several images and column offsets.
    #[test]
    fn conv_source_matches_im2col() {
        if !available() {
            return;
        }
        use crate::backend::cpu::kernels::{im2col, Im2col};
        for &(c, h, w, k, s, p) in &[
            (3, 11, 13, 3, 1, 1),
            (2, 20, 9, 7, 2, 3),
            (4, 9, 9, 3, 2, 1),
            (2, 10, 8, 3, 3, 1),
            (5, 7, 7, 1, 1, 0),
            (3, 40, 37, 3, 2, 1),
        ] {
            let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            let nimg = 3;
            let x = fill(nimg * c * h * w, (c * h + w) as u64);
            let kk = c * k * k;
            let plane = oh * ow;
            let mut col = vec![0.0; nimg * kk * plane];
            for i in 0..nimg {
                let g = Im2col {
                    c,
                    h,
                    w,
                    kh: k,
                    kw: k,
                    stride: s,
                    pad: p,
                    oh,
                    ow,
                };
                im2col(
                    &x[i * c * h * w..(i + 1) * c * h * w],
                    g,
                    &mut col[i * kk * plane..(i + 1) * kk * plane],
                );
            }
            let src = BSrc {
                x: &x,
                img_stride: c * h * w,
                nimg,
                c,
                h,
                w,
                kh: k,
                kw: k,
                stride: s,
                pad: p,
                oh,
                ow,
            };
            let m = 9;
            let a = fill(m * kk, 5);
            let bias = fill(m, 6);
            let n = nimg * plane - 3;
            let mut y = vec![0.0; m * n];
            sgemm(
                m,
                n,
                &a,
                kk,
                &src,
                3,
                Out { c: &mut y, ldc: n },
                Some(&bias),
                Activation::Relu,
            );
            for i in 0..m {
                for j in 0..n {
                    let (img, px) = ((j + 3) / plane, (j + 3) % plane);
                    let mut s = bias[i] as f64;
                    for r in 0..kk {
                        s += a[i * kk + r] as f64 * col[img * kk * plane + r * plane + px] as f64;
                    }
                    let got = y[i * n + j] as f64;
                    assert!(
                        (got - s.max(0.0)).abs() < 1e-4 * (1.0 + s.abs()),
                        "{got} {s}"
                    );
                }
            }
        }
    }
}
