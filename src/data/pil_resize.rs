//! Resizing 8-bit images the way Pillow's `Image.resize(size, BICUBIC | BILINEAR)` does (with
//! `reducing_gap=None`, as torchvision's `Resize` calls it for timm's eval transform): Pillow's
//! `libImaging/Resample.c`, a separable convolution whose kernel is stretched by the downscale
//! factor (antialiasing), computed as Pillow computes it:
//!
//! - per output position `xx` along an axis of `in_size` pixels: `scale = in_size / out_size`,
//!   `filterscale = max(scale, 1)`, `support = filter_support * filterscale`,
//!   `center = (xx + 0.5) * scale`, taps `xmin = trunc(center - support + 0.5)` (at least 0) to
//!   `trunc(center + support + 0.5)` (at most `in_size`), weights
//!   `filter((x - center + 0.5) / filterscale)` in double precision, normalised to sum 1;
//! - the weights quantised to 22 fractional bits (`(int)(w * 2^22 ± 0.5)`, away from zero);
//! - the horizontal pass first, each value `(2^21 + sum(pixel * weight)) >> 22` clamped to
//!   0..=255 (an 8-bit intermediate image), then the vertical pass the same way on it;
//! - an axis whose size does not change is not resampled; an unchanged image is copied.
//!
//! Filters: bicubic with a = -0.5 (support 2), bilinear = triangle (support 1).
use super::resize::{check_sizes, Interpolation};
use crate::error::Result;

/// Fractional bits of Pillow's fixed-point weights for 8-bit images (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's filter of `interp` at `x` (`bicubic_filter` with a = -0.5, `bilinear_filter`).
fn filter(interp: Interpolation, x: f64) -> f64 {
    let x = x.abs();
    match interp {
        Interpolation::Bicubic => {
            let a = -0.5;
            if x < 1.0 {
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * a
            } else {
                0.0
            }
        }
        Interpolation::Bilinear => (1.0 - x).max(0.0),
    }
}

/// Half-width of the filter at scale 1.
fn support(interp: Interpolation) -> f64 {
    match interp {
        Interpolation::Bicubic => 2.0,
        Interpolation::Bilinear => 1.0,
    }
}

/// The taps of one axis: output position `i` reads `len[i]` source pixels from `first[i]` with
/// the quantised weights `weights[i * ksize ..][.. len[i]]`.
struct Taps {
    ksize: usize,
    first: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` for the whole axis (box 0..in_size) followed by
/// `normalize_coeffs_8bpc`.
fn taps(in_size: usize, out_size: usize, interp: Interpolation) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support(interp) * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let mut t = Taps {
        ksize,
        first: Vec::with_capacity(out_size),
        len: Vec::with_capacity(out_size),
        weights: vec![0; out_size * ksize],
    };
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) conversion truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let n = xmax.max(0) as usize;
        let mut sum = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            *wx = filter(
                interp,
                (x as f64 + xmin as f64 - center + 0.5) * inv_filterscale,
            );
            sum += *wx;
        }
        let row = &mut t.weights[xx * ksize..xx * ksize + n];
        for (q, &wx) in row.iter_mut().zip(&w) {
            let wx = if sum != 0.0 { wx / sum } else { wx };
            let scaled = wx * (1u32 << PRECISION_BITS) as f64;
            *q = if wx < 0.0 {
                (scaled - 0.5) as i32
            } else {
                (scaled + 0.5) as i32
            };
        }
        t.first.push(xmin as usize);
        t.len.push(n);
    }
    t
}

/// `(2^21 + sum) >> 22`, clamped to 0..=255 (Pillow's `clip8`).
fn clip8(sum: i64) -> u8 {
    ((sum + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal pass over `rows` rows of `src` (`width * ch` bytes a row) into `out_width` columns.
/// Errors: [`Error::OutOfMemory`] when the output cannot be allocated.
fn horizontal(src: &[u8], width: usize, ch: usize, rows: usize, t: &Taps) -> Result<Vec<u8>> {
    let out_width = t.len.len();
    let mut dst = crate::mem::filled(rows * out_width * ch, 0u8, || {
        format!("a {out_width}x{rows} horizontally resized image")
    })?;
    for (src_row, dst_row) in src
        .chunks_exact(width * ch)
        .take(rows)
        .zip(dst.chunks_exact_mut(out_width * ch))
    {
        for (xx, px) in dst_row.chunks_exact_mut(ch).enumerate() {
            let w = &t.weights[xx * t.ksize..xx * t.ksize + t.len[xx]];
            let taps = &src_row[t.first[xx] * ch..(t.first[xx] + t.len[xx]) * ch];
            for (c, out) in px.iter_mut().enumerate() {
                let sum: i64 = taps
                    .chunks_exact(ch)
                    .zip(w)
                    .map(|(p, &k)| p[c] as i64 * k as i64)
                    .sum();
                *out = clip8(sum);
            }
        }
    }
    Ok(dst)
}

/// Vertical pass: output row `yy` from the rows `first[yy] ..` of `src` (`row_len` bytes each).
/// Errors: [`Error::OutOfMemory`] when the output cannot be allocated.
fn vertical(src: &[u8], row_len: usize, t: &Taps) -> Result<Vec<u8>> {
    let out_height = t.len.len();
    let mut dst = crate::mem::filled(out_height * row_len, 0u8, || {
        format!("a resized image of {out_height} rows of {row_len} bytes")
    })?;
    for (yy, dst_row) in dst.chunks_exact_mut(row_len).enumerate() {
        let w = &t.weights[yy * t.ksize..yy * t.ksize + t.len[yy]];
        let rows = &src[t.first[yy] * row_len..(t.first[yy] + t.len[yy]) * row_len];
        for (i, out) in dst_row.iter_mut().enumerate() {
            let sum: i64 = rows
                .chunks_exact(row_len)
                .zip(w)
                .map(|(r, &k)| r[i] as i64 * k as i64)
                .sum();
            *out = clip8(sum);
        }
    }
    Ok(dst)
}

/// Resizes an 8-bit interleaved image (`height * width * channels` bytes, row-major HWC) to
/// `dst_width x dst_height` as Pillow's `Image.resize((dst_width, dst_height), resample)` does for
/// `resample` = BICUBIC or BILINEAR (see the module documentation). Returns
/// `dst_height * dst_width * channels` bytes, HWC.
///
/// Errors: [`Error::Invalid`] when a size is zero or `src.len()` does not match the dimensions;
/// [`Error::OutOfMemory`] when the output or the intermediate rows cannot be allocated.
pub fn resize_u8_pil(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    dst_width: usize,
    dst_height: usize,
    interp: Interpolation,
) -> Result<Vec<u8>> {
    check_sizes(src, (width, height, channels), (dst_width, dst_height))?;
    let vert = (dst_height != height).then(|| taps(height, dst_height, interp));
    let (mut img, row0) = if dst_width != width {
        // Only the source rows the vertical pass reads (Pillow's ybox_first..ybox_last).
        let (first, last) = match &vert {
            Some(v) => (v.first[0], v.first[dst_height - 1] + v.len[dst_height - 1]),
            None => (0, height),
        };
        let h = taps(width, dst_width, interp);
        let rows = &src[first * width * channels..];
        (horizontal(rows, width, channels, last - first, &h)?, first)
    } else {
        let mut copy =
            crate::mem::with_capacity(src.len(), || format!("a copy of a {width}x{height} image"))?;
        copy.extend_from_slice(src);
        (copy, 0)
    };
    if let Some(mut v) = vert {
        v.first.iter_mut().for_each(|f| *f -= row0);
        img = vertical(&img, dst_width * channels, &v)?;
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_filter_is_keys_with_a_minus_half() {
        // Keys' kernel, a = -0.5: 1 at 0, 0 at the integers, 0.5625 and -0.0625 at 1/2, 3/2.
        let f = |x| filter(Interpolation::Bicubic, x);
        assert_eq!((f(0.0), f(1.0), f(2.0), f(-1.0)), (1.0, 0.0, 0.0, 0.0));
        assert_eq!((f(0.5), f(1.5), f(-1.5)), (0.5625, -0.0625, -0.0625));
        assert_eq!(filter(Interpolation::Bilinear, 0.25), 0.75);
    }

    #[test]
    fn downscale_widens_the_kernel() {
        // 4 -> 1: scale 4, support 2 * 4 = 8; centre 2; taps 0..4 all inside, weights of
        // filter((x - 1.5) / 4) normalised: symmetric, summing to 2^22 (up to rounding).
        let t = taps(4, 1, Interpolation::Bicubic);
        assert_eq!((t.first[0], t.len[0], t.ksize), (0, 4, 17));
        let w = &t.weights[..4];
        assert_eq!(w[0], w[3]);
        assert_eq!(w[1], w[2]);
        assert!((w.iter().sum::<i32>() - (1 << 22)).abs() <= 2, "{w:?}");
        // An upscale keeps the support: 2 -> 4, centre of output 1 at 0.75: taps 0..2.
        let t = taps(2, 4, Interpolation::Bicubic);
        assert_eq!((t.first[1], t.len[1], t.ksize), (0, 2, 5));
    }

    #[test]
    fn constant_image_stays_constant_and_identity_is_a_copy() {
        let src = [7u8, 200, 33].repeat(5 * 3);
        for (w, h) in [(2, 2), (9, 4), (5, 7)] {
            for interp in [Interpolation::Bicubic, Interpolation::Bilinear] {
                let out = resize_u8_pil(&src, 5, 3, 3, w, h, interp).unwrap();
                assert_eq!(out, [7u8, 200, 33].repeat(w * h), "{w}x{h} {interp}");
            }
        }
        let ramp: Vec<u8> = (0..5 * 3 * 3).map(|i| i as u8).collect();
        let same = resize_u8_pil(&ramp, 5, 3, 3, 5, 3, Interpolation::Bicubic).unwrap();
        assert_eq!(same, ramp);
    }

    #[test]
    fn rejects_bad_sizes() {
        let src = vec![0u8; 12];
        assert!(resize_u8_pil(&src, 2, 2, 3, 0, 1, Interpolation::Bicubic).is_err());
        assert!(resize_u8_pil(&src, 2, 3, 3, 1, 1, Interpolation::Bicubic).is_err());
    }
}
