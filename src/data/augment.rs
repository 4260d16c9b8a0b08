//! MindCV's ImageNet TRAINING transforms (`transforms_imagenet_train` in
//! mindcv/data/transforms_factory.py) with MindSpore 2.x semantics, deterministic per sample:
//!
//! 1. `RandomCropDecodeResize(image_resize, scale, ratio, interpolation)`: decode, random resized
//!    crop ([`TrainTransform::random_crop_box`]), resize to `image_resize x image_resize`;
//! 2. `RandomHorizontalFlip(hflip)` (MindCV adds it only when `hflip > 0`);
//! 3. `RandomVerticalFlip(vflip)` (only when `vflip > 0`);
//! 4. `RandomColorAdjust(b, c, s)` (`color_jitter` = `j` gives `b = c = s = j`; a list gives
//!    them one by one; hue 0): brightness, contrast and saturation factors each
//!    `~ U[max(0, 1 - j), 1 + j]` with their own `j`, applied in a random order, on the `u8`
//!    image (see [`super::color`]);
//! 5. `Normalize(mean, std)` on the 0..255 values, then `HWC2CHW`.
//!
//! Every random draw comes from the sample's own [`SampleRng`], so the output is a pure function
//! of `(image, seed, epoch, index)`.
//!
//! Not covered (MindCV options the SENet recipes leave off): `auto_augment`, `re_prob > 0`
//! (RandomErasing), `aug_splits`; [`TrainTransform::from_recipe`] rejects them. Mixup/CutMix act
//! on batches, not here.
use std::path::Path;

use super::color::{adjust_brightness, adjust_contrast, adjust_saturation};
use super::decode::decode_file;
use super::resize::{resize_u8, Interpolation};
use super::rgb::RgbImage;
use super::rng::SampleRng;
use super::transforms::{IMAGENET_MEAN, IMAGENET_STD};
use crate::config::{self, Recipe};
use crate::error::{Error, Result};

/// Crop attempts before the centre-crop fallback (MindSpore's `max_attempts` default, which
/// `RandomCropDecodeResize` keeps in MindCV).
pub const CROP_ATTEMPTS: usize = 10;

/// A crop rectangle in pixels: columns `x .. x + width`, rows `y .. y + height`; always inside
/// the image it was drawn for, `width, height >= 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

/// The colour operations of `RandomColorAdjust` (hue jitter, only reachable through a 4-value
/// `color_jitter` list, is refused by [`TrainTransform::from_recipe`], so it is not modelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColorOp {
    Brightness,
    Contrast,
    Saturation,
}

/// MindCV's training transform `transforms_imagenet_train(image_resize, scale, ratio, hflip,
/// vflip, color_jitter, interpolation, mean, std)` (module docs list the steps). Input: an
/// [`RgbImage`] (HWC `u8`); output: `3 * image_resize^2` f32, CHW, normalized. Randomness: a
/// [`SampleRng`] per sample.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainTransform {
    /// Output height and width (MindCV `image_resize`), e.g. 224.
    pub image_resize: usize,
    /// Crop area as a fraction of the image area, drawn uniformly in `[scale[0], scale[1])`.
    pub scale: [f64; 2],
    /// Crop aspect ratio `width / height`, drawn log-uniformly in `[ratio[0], ratio[1])`.
    pub ratio: [f64; 2],
    /// The resize interpolation (OpenCV `INTER_CUBIC` / `INTER_LINEAR`, see [`resize_u8`]).
    pub interpolation: Interpolation,
    /// Probability of a horizontal (left-right) flip, in `[0, 1]`.
    pub hflip: f64,
    /// Probability of a vertical (top-bottom) flip, in `[0, 1]`.
    pub vflip: f64,
    /// Brightness, contrast and saturation jitter `[b, c, s]`, each `>= 0`: an operation's
    /// factor is drawn `~ U[max(0, 1 - j), 1 + j]` with its `j`; 0 leaves that operation out,
    /// all three 0 turn the colour step off.
    pub color_jitter: [f64; 3],
    /// Per-channel (R, G, B) mean on the 0..255 scale.
    pub mean: [f32; 3],
    /// Per-channel (R, G, B) standard deviation on the 0..255 scale.
    pub std: [f32; 3],
}

impl Default for TrainTransform {
    /// The SENet recipes' train transform: 224, scale [0.08, 1], ratio [0.75, 1.333], bicubic,
    /// hflip 0.5, vflip 0, color_jitter 0.4 (config.py default), ImageNet mean/std.
    fn default() -> Self {
        TrainTransform {
            image_resize: 224,
            scale: [0.08, 1.0],
            ratio: [0.75, 1.333],
            interpolation: Interpolation::Bicubic,
            hflip: 0.5,
            vflip: 0.0,
            color_jitter: [0.4; 3],
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

impl TrainTransform {
    /// The train transform a recipe sets (`image_resize`, `scale`, `ratio`, `interpolation`,
    /// `hflip`, `vflip`, `color_jitter`, `mean`, `std`), validated ([`Self::validate`]).
    /// Errors ([`Error::Config`], naming the key and value): an interpolation other than
    /// bicubic/bilinear; `mean`/`std` not of 3 values; any value [`Self::validate`] rejects;
    /// `auto_augment` set, `re_prob > 0`, `aug_splits > 0` or a hue jitter (a 4th
    /// `color_jitter` value above 0) (MindCV options not implemented here, refused rather than
    /// silently dropped); a `color_jitter` list not of 3 or 4 values.
    pub fn from_recipe(r: &Recipe) -> Result<TrainTransform> {
        fn bad<T>(key: &str, value: impl std::fmt::Debug, why: &str) -> Result<T> {
            Err(Error::Config(format!("key '{key}' = {value:?}: {why}")))
        }
        let interpolation = match r.interpolation {
            config::Interpolation::Bicubic => Interpolation::Bicubic,
            config::Interpolation::Bilinear => Interpolation::Bilinear,
            other => {
                return bad(
                    "interpolation",
                    other.as_str(),
                    "not supported for training (bicubic, bilinear)",
                )
            }
        };
        let three = |key: &str, v: &[f64]| -> Result<[f32; 3]> {
            match v {
                [a, b, c] => Ok([*a as f32, *b as f32, *c as f32]),
                _ => bad(key, v, "needs 3 values (R, G, B)"),
            }
        };
        if let Some(aa) = &r.auto_augment {
            return bad("auto_augment", aa, "auto-augmentation is not implemented");
        }
        if r.re_prob > 0.0 {
            return bad("re_prob", r.re_prob, "random erasing is not implemented");
        }
        if r.aug_splits > 0 {
            return bad(
                "aug_splits",
                r.aug_splits,
                "augmentation splits are not implemented",
            );
        }
        let color_jitter = match &r.color_jitter {
            None => [0.0; 3],
            Some(cj) => match cj.factors() {
                Ok([_, _, _, hue]) if hue > 0.0 => {
                    return bad(
                        "color_jitter",
                        cj.to_string(),
                        "hue jitter (a 4th value above 0) is not implemented",
                    )
                }
                Ok([b, c, s, _]) => [b, c, s],
                Err(why) => return bad("color_jitter", cj.to_string(), &why),
            },
        };
        let t = TrainTransform {
            image_resize: r.image_resize,
            scale: r.scale,
            ratio: r.ratio,
            interpolation,
            hflip: r.hflip,
            vflip: r.vflip,
            color_jitter,
            mean: three("mean", &r.mean)?,
            std: three("std", &r.std)?,
        };
        t.validate()?;
        Ok(t)
    }

    /// Checks the parameters; an [`Error::Config`] names the first bad key and its value:
    /// `image_resize` >= 1; `scale` finite with `0 <= scale[0] <= scale[1]`, `scale[1] > 0`
    /// (MindSpore's range check); `ratio` finite with `0 < ratio[0] <= ratio[1]`; `hflip`,
    /// `vflip` in `[0, 1]`; `color_jitter` finite `>= 0`; `mean` finite; `std` finite `> 0`.
    pub fn validate(&self) -> Result<()> {
        fn bad(key: &str, value: impl std::fmt::Debug, why: &str) -> Result<()> {
            Err(Error::Config(format!("key '{key}' = {value:?}: {why}")))
        }
        if self.image_resize == 0 || self.image_resize > super::transforms::MAX_SIDE {
            return bad(
                "image_resize",
                self.image_resize,
                "must be between 1 and 16384 pixels",
            );
        }
        let [s0, s1] = self.scale;
        if !(s0.is_finite() && s1.is_finite() && s0 >= 0.0 && s0 <= s1 && s1 > 0.0) {
            return bad(
                "scale",
                self.scale,
                "must be [lo, hi] with 0 <= lo <= hi, hi > 0",
            );
        }
        let [r0, r1] = self.ratio;
        if !(r0.is_finite() && r1.is_finite() && r0 > 0.0 && r0 <= r1) {
            return bad("ratio", self.ratio, "must be [lo, hi] with 0 < lo <= hi");
        }
        for (key, p) in [("hflip", self.hflip), ("vflip", self.vflip)] {
            if !(0.0..=1.0).contains(&p) {
                return bad(key, p, "must be a probability in [0, 1]");
            }
        }
        if !self.color_jitter.iter().all(|j| j.is_finite() && *j >= 0.0) {
            return bad(
                "color_jitter",
                self.color_jitter,
                "must be finite numbers >= 0",
            );
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return bad("mean", self.mean, "must be finite");
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad("std", self.std, "must be positive");
        }
        Ok(())
    }

    /// The CHW shape of one output image: `[3, image_resize, image_resize]`.
    pub fn output_shape(&self) -> [usize; 3] {
        [3, self.image_resize, self.image_resize]
    }

    /// The random crop of MindSpore's `RandomCropAndResizeOp::GetCropBox` for a
    /// `width x height` image (`W x H`), with `scale`, `ratio` as MindSpore stores them (`f32`):
    ///
    /// up to [`CROP_ATTEMPTS`] times: `s ~ U[scale)` and `a = exp(U[ln ratio))` (both drawn as
    /// `f32`, as MindSpore's `uniform_real_distribution<float>`); `w = round(sqrt(H*W*s*a))`,
    /// `h = round(w / a)` (half away from zero, `std::round`), each at least 1; if `w <= W` and
    /// `h <= H`, accept with `x ~ U{0..=W-w}`, `y ~ U{0..=H-h}`.
    ///
    /// Fallback (no attempt fits): if `W/H < ratio[0]`: `w = W`, `h = round(W / ratio[0])`;
    /// else if `W/H > ratio[1]`: `h = H`, `w = round(H * ratio[1])`; else the whole image; then
    /// the centred offsets `x = round((W - w) / 2)`, `y = round((H - h) / 2)` (half away from
    /// zero: an odd margin leaves the extra pixel on the left/top, e.g. `(1000 - 13) / 2 = 493.5`
    /// gives `x = 494`).
    ///
    /// Draws: 2 per attempt, plus 2 for the offsets of an accepted attempt.
    /// `width` and `height` must be positive.
    pub fn random_crop_box(&self, width: usize, height: usize, rng: &mut SampleRng) -> CropBox {
        let (w_in, h_in) = (width as i64, height as i64);
        let area = (w_in * h_in) as f64;
        let (s0, s1) = (self.scale[0] as f32, self.scale[1] as f32);
        let (r0, r1) = (self.ratio[0] as f32, self.ratio[1] as f32);
        let (l0, l1) = ((r0 as f64).ln() as f32, (r1 as f64).ln() as f32);
        for _ in 0..CROP_ATTEMPTS {
            let s = rng.uniform_range(s0 as f64, s1 as f64) as f32 as f64;
            let a = (rng.uniform_range(l0 as f64, l1 as f64) as f32 as f64).exp();
            let w = ((area * s * a).sqrt().round() as i64).max(1);
            let h = ((w as f64 / a).round() as i64).max(1);
            if w <= w_in && h <= h_in {
                let x = rng.below((w_in - w + 1) as u64) as usize;
                let y = rng.below((h_in - h + 1) as u64) as usize;
                return CropBox {
                    x,
                    y,
                    width: w as usize,
                    height: h as usize,
                };
            }
        }
        let aspect = w_in as f64 / h_in as f64;
        let (mut w, mut h) = (w_in, h_in);
        if aspect < r0 as f64 {
            h = (w_in as f64 / r0 as f64).round() as i64;
        } else if aspect > r1 as f64 {
            w = (h_in as f64 * r1 as f64).round() as i64;
        }
        let (w, h) = (w.clamp(1, w_in), h.clamp(1, h_in));
        let centre = |margin: i64| ((margin as f32 / 2.0).round() as i64).max(0) as usize;
        CropBox {
            x: centre(w_in - w),
            y: centre(h_in - h),
            width: w as usize,
            height: h as usize,
        }
    }

    /// The augmented `u8` image before normalization: `image_resize x image_resize` RGB, HWC.
    /// Steps and draws, in this order (all from `rng`):
    /// 1. [`Self::random_crop_box`], then the crop resized with `interpolation` ([`resize_u8`];
    ///    MindSpore resizes the crop even when it already has the output size, which OpenCV
    ///    turns into a copy, as `resize_u8` does);
    /// 2. one draw: horizontal flip with probability `hflip`;
    /// 3. one draw: vertical flip with probability `vflip` (both draws happen even for
    ///    probability 0, so the colour draws do not depend on the flip settings);
    /// 4. if any `color_jitter` value is above 0: a random order of (brightness, contrast,
    ///    saturation) (2 draws, Fisher-Yates), then each operation in that order whose `j` is
    ///    above 0 draws its factor `~ U[max(0, 1 - j), 1 + j)` as `f32` and applies it
    ///    ([`super::adjust_brightness`] ...). MindSpore shuffles (brightness, contrast, saturation, hue) and
    ///    skips hue; the relative order of the three is uniform either way. A `j` of 0 makes no
    ///    draw and no change (MindSpore's factor range `[1, 1]` is the identity too).
    ///
    /// Unsure: for JPEG files MindSpore decodes only the crop region (libjpeg's crop/skip
    /// scanline API) where we decode the whole image and crop; we expect the same pixels but have
    /// not verified the crop edges (chroma upsampling context) against MindSpore.
    ///
    /// Errors: [`Error::Invalid`] for an empty image or invalid parameters.
    pub fn augment(&self, img: &RgbImage, rng: &mut SampleRng) -> Result<RgbImage> {
        self.validate()
            .map_err(|e| Error::Invalid(format!("train transform: {e}")))?;
        if img.width == 0 || img.height == 0 || img.data.len() != img.width * img.height * 3 {
            return Err(Error::Invalid(format!(
                "train transform: invalid {}x{} image ({} bytes)",
                img.width,
                img.height,
                img.data.len()
            )));
        }
        let b = self.random_crop_box(img.width, img.height, rng);
        // The box lies inside the image (at most MAX_IMAGE_PIXELS pixels when decoded).
        let mut crop = crate::mem::with_capacity(b.width * b.height * 3, || {
            format!("a {}x{} crop", b.width, b.height)
        })?;
        for row in b.y..b.y + b.height {
            let start = (row * img.width + b.x) * 3;
            crop.extend_from_slice(&img.data[start..start + b.width * 3]);
        }
        let size = self.image_resize;
        let data = resize_u8(&crop, b.width, b.height, 3, size, size, self.interpolation)?;
        let mut out = RgbImage {
            width: size,
            height: size,
            data,
        };
        if rng.bernoulli(self.hflip) {
            flip_horizontal(&mut out);
        }
        if rng.bernoulli(self.vflip) {
            flip_vertical(&mut out);
        }
        if self.color_jitter.iter().any(|j| *j > 0.0) {
            let mut order = [ColorOp::Brightness, ColorOp::Contrast, ColorOp::Saturation];
            rng.shuffle(&mut order);
            for op in order {
                let j = self.color_jitter[op as usize];
                if j <= 0.0 {
                    continue;
                }
                let (lo, hi) = ((1.0 - j).max(0.0) as f32, (1.0 + j) as f32);
                let f = rng.uniform_range(lo as f64, hi as f64) as f32;
                match op {
                    ColorOp::Brightness => adjust_brightness(&mut out, f),
                    ColorOp::Contrast => adjust_contrast(&mut out, f),
                    ColorOp::Saturation => adjust_saturation(&mut out, f),
                }
            }
        }
        Ok(out)
    }

    /// Transforms a decoded image: [`Self::augment`], then `(v - mean[c]) / std[c]` in f32 on the
    /// 0..255 values (as [`super::EvalTransform`]) and CHW layout: `3 * image_resize^2` f32,
    /// channel planes R, G, B, each row-major.
    /// Errors: as [`Self::augment`].
    pub fn apply(&self, img: &RgbImage, rng: &mut SampleRng) -> Result<Vec<f32>> {
        let aug = self.augment(img, rng)?;
        let plane = aug.width * aug.height;
        let mut out = vec![0f32; 3 * plane];
        for (i, px) in aug.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (px[c] as f32 - self.mean[c]) / self.std[c];
            }
        }
        Ok(out)
    }

    /// Decodes the image file at `path` ([`decode_file`]: RGB, as MindSpore's decoder) and
    /// transforms it with [`Self::apply`]. Errors: [`Error::Io`] / [`Error::Format`] naming the
    /// file, or those of [`Self::apply`] (prefixed with the file name).
    pub fn apply_path(&self, path: &Path, rng: &mut SampleRng) -> Result<Vec<f32>> {
        let img = decode_file(path)?;
        self.apply(&img, rng).map_err(|e| match e {
            Error::Invalid(msg) => Error::Invalid(format!("{}: {msg}", path.display())),
            other => other,
        })
    }
}

/// Mirrors an image left-right in place (OpenCV `cv::flip(img, 1)`, MindSpore `HorizontalFlip`).
pub fn flip_horizontal(img: &mut RgbImage) {
    let w = img.width;
    for row in img.data.chunks_exact_mut(w * 3) {
        for x in 0..w / 2 {
            let (a, b) = (x * 3, (w - 1 - x) * 3);
            for c in 0..3 {
                row.swap(a + c, b + c);
            }
        }
    }
}

/// Mirrors an image top-bottom in place (OpenCV `cv::flip(img, 0)`, MindSpore `VerticalFlip`).
pub fn flip_vertical(img: &mut RgbImage) {
    let (w, h) = (img.width * 3, img.height);
    for y in 0..h / 2 {
        let (top, bottom) = img.data.split_at_mut((h - 1 - y) * w);
        top[y * w..(y + 1) * w].swap_with_slice(&mut bottom[..w]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: usize, h: usize) -> RgbImage {
        let data = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        RgbImage::from_raw(w, h, data).unwrap()
    }

    #[test]
    fn flips_are_mirrors() {
        let img = image(5, 3);
        let mut h = img.clone();
        flip_horizontal(&mut h);
        let mut v = img.clone();
        flip_vertical(&mut v);
        for y in 0..3 {
            for x in 0..5 {
                assert_eq!(h.pixel(x, y), img.pixel(4 - x, y));
                assert_eq!(v.pixel(x, y), img.pixel(x, 2 - y));
            }
        }
    }

    #[test]
    fn recipe_defaults_and_errors() {
        let mut r = Recipe::default();
        let t = TrainTransform::from_recipe(&r).unwrap();
        assert_eq!(t.interpolation, Interpolation::Bilinear); // config.py default
        assert_eq!((t.hflip, t.color_jitter), (0.5, [0.4; 3]));
        r.interpolation = config::Interpolation::Bicubic;
        assert_eq!(
            TrainTransform::from_recipe(&r).unwrap(),
            TrainTransform::default()
        );
        let err = |r: &Recipe| TrainTransform::from_recipe(r).unwrap_err().to_string();
        let mut bad = r.clone();
        bad.ratio = [1.5, 0.5];
        assert!(err(&bad).contains("'ratio'"), "{}", err(&bad));
        let mut bad = r.clone();
        bad.hflip = 1.5;
        assert!(err(&bad).contains("'hflip'"));
        let mut bad = r.clone();
        bad.mean = vec![1.0, 2.0];
        assert!(err(&bad).contains("'mean'"));
        let mut bad = r.clone();
        bad.interpolation = config::Interpolation::Area;
        assert!(err(&bad).contains("'interpolation'"));
        let mut bad = r.clone();
        bad.re_prob = 0.25;
        assert!(err(&bad).contains("'re_prob'"));
        let mut bad = r.clone();
        bad.auto_augment = Some("randaug-m9".into());
        assert!(err(&bad).contains("'auto_augment'"));
        let mut hue = r.clone();
        hue.color_jitter = Some(config::ColorJitter::PerOp(vec![0.4, 0.4, 0.4, 0.1]));
        assert!(err(&hue).contains("'color_jitter'") && err(&hue).contains("hue"));
        // MindCV's ViT-style list: per-operation factors; hue 0 is accepted.
        let mut list = r.clone();
        list.color_jitter = Some(config::ColorJitter::PerOp(vec![0.3, 0.2, 0.1, 0.0]));
        let t = TrainTransform::from_recipe(&list).unwrap();
        assert_eq!(t.color_jitter, [0.3, 0.2, 0.1]);
        list.color_jitter = None;
        assert_eq!(
            TrainTransform::from_recipe(&list).unwrap().color_jitter,
            [0.0; 3]
        );
    }

    #[test]
    fn a_zero_jitter_leaves_its_operation_out() {
        // A grey image: saturation is the identity on it, brightness is not.
        let grey = RgbImage::from_raw(8, 8, (0..192).map(|i| (i / 3 * 3) as u8).collect()).unwrap();
        let run = |jitter: [f64; 3]| {
            let t = TrainTransform {
                image_resize: 8,
                scale: [1.0, 1.0],
                ratio: [1.0, 1.0],
                color_jitter: jitter,
                ..TrainTransform::default()
            };
            t.augment(&grey, &mut SampleRng::for_sample(1, 2, 3))
                .unwrap()
        };
        let plain = run([0.0; 3]);
        assert_eq!(run([0.0, 0.0, 0.9]), plain);
        assert_ne!(run([0.9, 0.0, 0.0]), plain);
    }
}
