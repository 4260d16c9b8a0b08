//! MindSpore's colour adjustments on 8-bit RGB images (`AdjustBrightness`, `AdjustContrast`,
//! `AdjustSaturation` in mindspore/ccsrc/minddata/dataset/kernels/image/image_utils.cc), which
//! `RandomColorAdjust` applies. They run on OpenCV matrices, so the arithmetic here is OpenCV's:
//!
//! - grey level: `cv::cvtColor(RGB2GRAY)` on `CV_8U`, ITU-R 601-2 luma
//!   `L = 0.299 R + 0.587 G + 0.114 B` in OpenCV 4's 15-bit fixed point
//!   `(9798 R + 19235 G + 3735 B + 2^14) >> 15` (within 0.52 of the exact luma rounded; PIL's
//!   `convert("L")` uses 16-bit weights and can differ by one level);
//! - brightness: `img * f` (`Mat::convertTo` with scale `f`), i.e. `round(v * f)`;
//! - contrast and saturation: `grey * (1 - f) + img * f` (a `MatExpr` evaluated by
//!   `cv::addWeighted`), i.e. `round(fma(g, 1 - f, v * f))` in single precision;
//! - every `u8` result saturates to `0..=255` and rounds half to even (`cvRound` =
//!   `saturate_cast<uchar>(float)` on x86 and ARM).
//!
//! Unsure (documented, not measured against MindSpore): `addWeighted`'s SIMD path fuses the
//! multiply-add on CPUs with FMA (AVX2, NEON) and computes `a*alpha + b*beta` unfused on the
//! scalar tail and older CPUs; we use the fused form everywhere. The two only differ when a value
//! lies within one float rounding of a `.5` boundary.
use super::rgb::RgbImage;

/// Fixed-point weights of OpenCV 4's 8-bit `RGB2GRAY` (15 fractional bits; they sum to 2^15).
const GRAY_R: u32 = 9798;
const GRAY_G: u32 = 19235;
const GRAY_B: u32 = 3735;
const GRAY_SHIFT: u32 = 15;

/// OpenCV's `saturate_cast<uchar>(float)`: round half to even, then clamp to `0..=255`.
fn saturate_u8(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

/// The grey level (ITU-R 601-2 luma) of one RGB pixel, as OpenCV's `COLOR_RGB2GRAY` computes it
/// on 8-bit images: `(9798 r + 19235 g + 3735 b + 16384) >> 15`.
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    let sum = r as u32 * GRAY_R + g as u32 * GRAY_G + b as u32 * GRAY_B + (1 << (GRAY_SHIFT - 1));
    (sum >> GRAY_SHIFT) as u8
}

/// `grey * (1 - f) + v * f` saturated to `u8`: OpenCV's `addWeighted` as MindSpore's contrast and
/// saturation use it (weights converted to `f32`; `1 - f` formed in double as the C++ does).
fn blend(grey: u8, v: u8, factor: f32) -> u8 {
    let alpha = (1.0 - factor as f64) as f32;
    saturate_u8((grey as f32).mul_add(alpha, v as f32 * factor))
}

/// MindSpore `AdjustBrightness(img, f)`: every channel value `v` becomes `round(v * f)` (blend
/// with a black image), saturated to `0..=255`. `f = 1` is the identity. In place.
pub fn adjust_brightness(img: &mut RgbImage, factor: f32) {
    let lut: Vec<u8> = (0..=255u8)
        .map(|v| saturate_u8(v as f32 * factor))
        .collect();
    img.data.iter_mut().for_each(|v| *v = lut[*v as usize]);
}

/// MindSpore `AdjustContrast(img, f)`: blend with the image's mean grey level `m`,
/// `v -> round(m * (1 - f) + v * f)`, where `m = floor(mean(grey) + 0.5)` is the mean of the
/// grey levels ([`luma`]) over the whole image (`cv::mean`, i.e. `sum * (1 / count)` in
/// double) rounded half up to an integer, as MindSpore does before blending. `f = 1` is the
/// identity, `f = 0` gives a uniform image of level `m`. In place; an empty image is left
/// unchanged.
pub fn adjust_contrast(img: &mut RgbImage, factor: f32) {
    let n = img.width * img.height;
    if n == 0 {
        return;
    }
    let sum: u64 = img
        .data
        .chunks_exact(3)
        .map(|p| luma(p[0], p[1], p[2]) as u64)
        .sum();
    let mean = sum as f64 * (1.0 / n as f64);
    let m = ((mean + 0.5) as u32).min(255) as u8;
    let lut: Vec<u8> = (0..=255u8).map(|v| blend(m, v, factor)).collect();
    img.data.iter_mut().for_each(|v| *v = lut[*v as usize]);
}

/// MindSpore `AdjustSaturation(img, f)`: blend every pixel with its own grey level `L`
/// ([`luma`]), `v -> round(L * (1 - f) + v * f)` per channel. `f = 1` is the identity, `f = 0`
/// gives the grey image (`r = g = b = L`). In place.
pub fn adjust_saturation(img: &mut RgbImage, factor: f32) {
    for p in img.data.chunks_exact_mut(3) {
        let grey = luma(p[0], p[1], p[2]);
        for v in p.iter_mut() {
            *v = blend(grey, *v, factor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_601_weights() {
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(0, 0, 0), 0);
        assert_eq!(luma(255, 0, 0), 76); // 76.245
        assert_eq!(luma(0, 255, 0), 150); // 149.685
        assert_eq!(luma(0, 0, 255), 29); // 29.07
        for (r, g, b) in [(12u8, 200u8, 77u8), (250, 3, 140), (90, 91, 92)] {
            let exact = 0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64;
            assert!((luma(r, g, b) as f64 - exact).abs() <= 0.52);
        }
    }

    #[test]
    fn identity_factors() {
        let data: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 23 % 256) as u8).collect();
        let img = RgbImage::from_raw(4, 3, data).unwrap();
        for f in [adjust_brightness, adjust_contrast, adjust_saturation] {
            let mut out = img.clone();
            f(&mut out, 1.0);
            assert_eq!(out, img);
        }
    }

    #[test]
    fn rounding_is_half_to_even_and_saturating() {
        let mut img = RgbImage::from_raw(1, 1, vec![5, 7, 200]).unwrap();
        adjust_brightness(&mut img, 1.5); // 7.5 -> 8, 10.5 -> 10, 300 -> 255
        assert_eq!(img.data, vec![8, 10, 255]);
    }
}
