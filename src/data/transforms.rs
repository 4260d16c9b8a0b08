//! The ImageNet evaluation transforms: MindCV's (`transforms_imagenet_eval` in
//! mindcv/data/transforms_factory.py: Decode -> Resize(short side) -> CenterCrop -> Normalize ->
//! HWC2CHW, with MindSpore 2.x semantics), and timm's ([`Preprocess::Timm`]).
use std::path::Path;
use std::str::FromStr;

use super::decode::{decode_file, MAX_IMAGE_PIXELS};
use super::pil_resize::resize_u8_pil;
use super::resize::{resize_u8_window, Interpolation, ResizeWindow};
use super::rgb::RgbImage;
use crate::error::{Error, Result};

/// The largest image side (pixels) a transform may produce.
pub const MAX_SIDE: usize = 16384;

/// ImageNet channel means on the 0..255 scale (R, G, B): MindCV's default `mean`.
pub const IMAGENET_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
/// ImageNet channel standard deviations on the 0..255 scale (R, G, B): MindCV's default `std`.
pub const IMAGENET_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// timm's `IMAGENET_DEFAULT_MEAN` (0..1 scale, R, G, B), as the f32 tensor `Normalize` holds.
const TIMM_IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// timm's `IMAGENET_DEFAULT_STD` (0..1 scale, R, G, B), as the f32 tensor `Normalize` holds.
const TIMM_IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Whose evaluation transform an [`EvalTransform`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preprocess {
    /// MindCV's (the default): OpenCV resizing, floor centre-crop offsets, normalization on the
    /// 0..255 scale.
    #[default]
    MindCv,
    /// timm's `transforms_imagenet_eval` with `crop_mode='center'`, as
    /// `create_transform(**resolve_data_config(model=m), is_training=False)` builds it for
    /// senet's networks (timm 1.0, torchvision's `Resize` / `CenterCrop` on PIL images):
    /// 1. the short side resized to `resize_size = floor(image_resize / crop_pct)` and the long
    ///    side to `trunc(resize_size * long / short)` with Pillow's antialiased
    ///    `Image.resize` (bicubic a = -0.5 or bilinear, see [`super::resize_u8_pil`]); an image
    ///    already of that size is left alone;
    /// 2. centre crop at offset `round((dim - image_resize) / 2)`, halves rounded to even
    ///    (Python's `round`), or, where the image is smaller than the crop, zero pixels
    ///    `(image_resize - dim) div 2` before it (torchvision pads, then crops);
    /// 3. `ToTensor` (`pixel / 255` in f32) then `Normalize`: `(x - mean[c] / 255) / (std[c] /
    ///    255)` in f32, with `mean` and `std` (0..255 scale, as MindCV's recipes give them)
    ///    divided by 255 and rounded to f32 (the ImageNet defaults [`IMAGENET_MEAN`] /
    ///    [`IMAGENET_STD`] become exactly timm's `IMAGENET_DEFAULT_MEAN` / `_STD`).
    Timm,
}

impl FromStr for Preprocess {
    type Err = Error;

    /// Parses `"mindcv"` or `"timm"` (case-insensitive); another value is an [`Error::Config`]
    /// naming it.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "mindcv" => Ok(Preprocess::MindCv),
            "timm" => Ok(Preprocess::Timm),
            _ => Err(Error::Config(format!(
                "unknown preprocess '{s}' (supported: mindcv, timm)"
            ))),
        }
    }
}

impl std::fmt::Display for Preprocess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Preprocess::MindCv => "mindcv",
            Preprocess::Timm => "timm",
        })
    }
}

/// MindCV's eval transform `transforms_imagenet_eval(image_resize, crop_pct, interpolation, mean, std)`
/// (or timm's, see [`Preprocess::Timm`], after [`EvalTransform::with_preprocess`]):
/// 1. decode to RGB u8;
/// 2. resize (OpenCV `INTER_CUBIC`/`INTER_LINEAR`, see [`super::resize_u8`]) so that the SHORT side becomes
///    `resize_size = floor(image_resize / crop_pct)` (256 for 224 / 0.875) and the long side
///    `floor(long / short * resize_size)` (MindSpore 2.x; a square stays square);
/// 3. centre crop `image_resize x image_resize` at offset `(dim - image_resize) div 2` (floor), zero
///    padding where the image is smaller (MindSpore's `CenterCrop`);
/// 4. normalize each channel: `(pixel - mean[c]) / std[c]` on 0..255 values, f32;
/// 5. layout CHW.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalTransform {
    /// Output height and width (MindCV `image_resize`), e.g. 224.
    pub image_resize: usize,
    /// Short side after resizing, `floor(image_resize / crop_pct)`, e.g. 256.
    pub resize_size: usize,
    /// The resize interpolation.
    pub interpolation: Interpolation,
    /// Per-channel (R, G, B) mean on the 0..255 scale.
    pub mean: [f32; 3],
    /// Per-channel (R, G, B) standard deviation on the 0..255 scale.
    pub std: [f32; 3],
    /// Whose transform: MindCV's (the default) or timm's.
    pub preprocess: Preprocess,
}

impl Default for EvalTransform {
    /// MindCV's SENet eval recipe: 224, crop_pct 0.875, bicubic, ImageNet mean/std.
    fn default() -> Self {
        EvalTransform::new(
            224,
            0.875,
            Interpolation::Bicubic,
            IMAGENET_MEAN,
            IMAGENET_STD,
        )
        .expect("valid defaults")
    }
}

impl EvalTransform {
    /// Builds the transform. `crop_pct` in (0, 1] normally (values > 1 crop beyond the resized
    /// image, which is zero padded). Errors: [`Error::Config`] when `image_resize` is 0, `crop_pct`
    /// is not a positive finite number, a `mean` entry is not finite, or a `std` entry is not
    /// positive and finite.
    pub fn new(
        image_resize: usize,
        crop_pct: f64,
        interpolation: Interpolation,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<EvalTransform> {
        if image_resize == 0 {
            return Err(Error::Config("image_resize must be positive".into()));
        }
        if !(crop_pct.is_finite() && crop_pct > 0.0) {
            return Err(Error::Config(format!(
                "crop_pct must be a positive number, got {crop_pct}"
            )));
        }
        // An infinite mean or std (a recipe's 1e39 read as f32) would turn every pixel into
        // NaN or 0 without an error.
        if mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::Config(format!("mean must be finite, got {mean:?}")));
        }
        if std.iter().any(|&s| !(s.is_finite() && s > 0.0)) {
            return Err(Error::Config(format!(
                "std must be positive and finite, got {std:?}"
            )));
        }
        let resize_size = (image_resize as f64 / crop_pct).floor() as usize;
        if image_resize > MAX_SIDE || resize_size > MAX_SIDE {
            return Err(Error::Config(format!(
                "image_resize {image_resize} / crop_pct {crop_pct} resizes images to {resize_size} \
                 pixels, more than {MAX_SIDE}"
            )));
        }
        if resize_size == 0 {
            return Err(Error::Config(format!(
                "image_resize {image_resize} / crop_pct {crop_pct} rounds down to 0"
            )));
        }
        Ok(EvalTransform {
            image_resize,
            resize_size,
            interpolation,
            mean,
            std,
            preprocess: Preprocess::MindCv,
        })
    }

    /// The same transform computed as `preprocess` computes it (MindCV's or timm's).
    pub fn with_preprocess(self, preprocess: Preprocess) -> EvalTransform {
        EvalTransform { preprocess, ..self }
    }

    /// The CHW shape of one output image: `[3, image_resize, image_resize]`.
    pub fn output_shape(&self) -> [usize; 3] {
        [3, self.image_resize, self.image_resize]
    }

    /// The size `(width, height)` an image of `width x height` is resized to: the short side
    /// becomes `resize_size`, the long side `floor(long / short * resize_size)` (MindSpore), or
    /// for timm `trunc(resize_size * long / short)` (torchvision: the product first).
    pub fn resized_dims(&self, width: usize, height: usize) -> (usize, usize) {
        let s = self.resize_size;
        let timm = self.preprocess == Preprocess::Timm;
        let scaled = |long: usize, short: usize| {
            let v = if timm {
                (s as f64 * long as f64 / short as f64).trunc()
            } else {
                (long as f64 / short as f64 * s as f64).floor()
            };
            (v as usize).max(1)
        };
        if width <= height {
            (s, scaled(height, width))
        } else {
            (scaled(width, height), s)
        }
    }

    /// [`Self::resized_dims`], refused when the resized image would have more than
    /// [`super::MAX_IMAGE_PIXELS`] pixels (a 1x20000 image resized to a short side of 256 is
    /// 256x5120000); the message gives both sizes.
    pub fn checked_resized_dims(
        &self,
        width: usize,
        height: usize,
    ) -> std::result::Result<(usize, usize), String> {
        let (rw, rh) = self.resized_dims(width, height);
        let pixels = (rw as u64).saturating_mul(rh as u64);
        if pixels > MAX_IMAGE_PIXELS {
            return Err(format!(
                "a {width}x{height} image resizes to {rw}x{rh} ({pixels} pixels) for a short \
                 side of {}: more than the {MAX_IMAGE_PIXELS} pixels senet handles (aspect \
                 ratio too extreme)",
                self.resize_size
            ));
        }
        Ok((rw, rh))
    }

    /// Decodes the image file at `path` and transforms it: `3 * image_resize^2` f32, CHW.
    /// Errors: [`Error::Io`] / [`Error::Format`] / [`Error::OutOfMemory`] naming the file (see
    /// [`super::decode_file`] and [`Self::apply_named`]).
    pub fn apply_path(&self, path: &Path) -> Result<Vec<f32>> {
        let img = decode_file(path)?;
        self.apply_named(&img, path)
    }

    /// Offset of the centre crop along a side of `dim` resized pixels; negative where the crop
    /// is larger (those pixels are zero): `(dim - crop) div 2` (MindSpore), or for timm
    /// torchvision's `round((dim - crop) / 2)` (halves to even) and `-((crop - dim) div 2)`.
    fn crop_offset(&self, dim: usize) -> i64 {
        let (dim, crop) = (dim as i64, self.image_resize as i64);
        match self.preprocess {
            Preprocess::MindCv => (dim - crop).div_euclid(2),
            Preprocess::Timm if dim >= crop => ((dim - crop) as f64 / 2.0).round_ties_even() as i64,
            Preprocess::Timm => -(crop - dim).div_euclid(2),
        }
    }

    /// The normalization of channel `c`'s pixels: `(p - mean) / std` (MindCV, 0..255 scale), or
    /// `(p / 255 - mean / 255) / (std / 255)` in f32 (timm's ToTensor + Normalize).
    fn normalization(&self, c: usize) -> impl Fn(u8) -> f32 {
        let timm = self.preprocess == Preprocess::Timm;
        let (mean, std) = match timm {
            false => (self.mean[c], self.std[c]),
            // 57.12f32 / 255 rounds to one float below 0.224f32: use timm's own constants.
            true if self.mean == IMAGENET_MEAN && self.std == IMAGENET_STD => {
                (TIMM_IMAGENET_MEAN[c], TIMM_IMAGENET_STD[c])
            }
            true => (
                (self.mean[c] as f64 / 255.0) as f32,
                (self.std[c] as f64 / 255.0) as f32,
            ),
        };
        move |p: u8| {
            let x = if timm { p as f32 / 255.0 } else { p as f32 };
            (x - mean) / std
        }
    }

    /// The resized and centre-cropped image before normalization: `image_resize` square, RGB
    /// u8, zero where the crop reaches beyond the resized image.
    /// Errors: as [`Self::pixels_named`], naming the image "image".
    pub fn pixels(&self, img: &RgbImage) -> Result<RgbImage> {
        self.pixels_named(img, Path::new("image"))
    }

    /// [`Self::pixels`] with errors naming the image `name` (its file, or e.g. "in-memory
    /// image"): [`Error::Format`] when the resized size exceeds [`super::MAX_IMAGE_PIXELS`]
    /// ([`Self::checked_resized_dims`]); [`Error::Invalid`] for an empty image;
    /// [`Error::OutOfMemory`] from the resize.
    ///
    /// MindCV's transform computes only the part of the resized image inside the crop
    /// ([`resize_u8_window`]: the same values as the whole resize), so an extreme aspect ratio
    /// costs no more than a square image; timm's (PIL's resize) resizes the whole image.
    pub fn pixels_named(&self, img: &RgbImage, name: &Path) -> Result<RgbImage> {
        let (rw, rh) = self
            .checked_resized_dims(img.width, img.height)
            .map_err(|m| Error::format(name, m))?;
        let crop = self.image_resize;
        let (top, left) = (self.crop_offset(rh), self.crop_offset(rw));
        let window = match self.preprocess {
            Preprocess::MindCv => {
                let x0 = left.max(0) as usize;
                let y0 = top.max(0) as usize;
                ResizeWindow {
                    left: x0,
                    top: y0,
                    width: ((left + crop as i64).min(rw as i64) as usize).saturating_sub(x0),
                    height: ((top + crop as i64).min(rh as i64) as usize).saturating_sub(y0),
                }
            }
            Preprocess::Timm => ResizeWindow {
                left: 0,
                top: 0,
                width: rw,
                height: rh,
            },
        };
        let resized = match self.preprocess {
            Preprocess::MindCv => resize_u8_window(
                &img.data,
                (img.width, img.height, 3),
                (rw, rh),
                window,
                self.interpolation,
            )?,
            Preprocess::Timm => resize_u8_pil(
                &img.data,
                img.width,
                img.height,
                3,
                rw,
                rh,
                self.interpolation,
            )?,
        };
        let (x0, y0) = (window.left as i64, window.top as i64);
        let (x1, y1) = (x0 + window.width as i64, y0 + window.height as i64);
        let mut out = vec![0u8; crop * crop * 3];
        for (y, row) in out.chunks_exact_mut(crop * 3).enumerate() {
            let sy = top + y as i64;
            if sy < y0 || sy >= y1 {
                continue;
            }
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let sx = left + x as i64;
                if sx >= x0 && sx < x1 {
                    let i = ((sy - y0) as usize * window.width + (sx - x0) as usize) * 3;
                    px.copy_from_slice(&resized[i..i + 3]);
                }
            }
        }
        Ok(RgbImage {
            width: crop,
            height: crop,
            data: out,
        })
    }

    /// Transforms a decoded image: `3 * image_resize^2` f32, CHW, normalized.
    /// Errors: as [`Self::apply_named`], naming the image "image".
    pub fn apply(&self, img: &RgbImage) -> Result<Vec<f32>> {
        self.apply_named(img, Path::new("image"))
    }

    /// [`Self::apply`] with errors naming the image `name` (see [`Self::pixels_named`]).
    pub fn apply_named(&self, img: &RgbImage, name: &Path) -> Result<Vec<f32>> {
        let pixels = self.pixels_named(img, name)?;
        let plane = self.image_resize * self.image_resize;
        let mut out = vec![0f32; 3 * plane];
        for (c, chan) in out.chunks_exact_mut(plane).enumerate() {
            let norm = self.normalization(c);
            for (o, px) in chan.iter_mut().zip(pixels.data.chunks_exact(3)) {
                *o = norm(px[c]);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_dims_follow_mindspore() {
        let t = EvalTransform::default();
        assert_eq!(t.resize_size, 256);
        assert_eq!(t.resized_dims(500, 375), (341, 256));
        assert_eq!(t.resized_dims(375, 500), (256, 341));
        assert_eq!(t.resized_dims(300, 300), (256, 256));
        assert_eq!(t.resized_dims(1000, 500), (512, 256));
    }

    #[test]
    fn constant_image_normalizes_to_constant() {
        let t = EvalTransform::default();
        let img = RgbImage::from_raw(300, 200, [10u8, 20, 30].repeat(300 * 200)).unwrap();
        let out = t.apply(&img).unwrap();
        assert_eq!(out.len(), 3 * 224 * 224);
        for c in 0..3 {
            let want = ([10.0, 20.0, 30.0][c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            assert!(out[c * 224 * 224..(c + 1) * 224 * 224]
                .iter()
                .all(|&v| v == want));
        }
    }

    #[test]
    fn timm_sizes_and_offsets_follow_torchvision() {
        let t = EvalTransform::default().with_preprocess(Preprocess::Timm);
        assert_eq!(t.resized_dims(500, 375), (341, 256));
        assert_eq!(t.resized_dims(422, 500), (256, 303));
        // 256 * 700 / 600 = 298.67: both truncate; the product-first order matters only at
        // exact quotients, where floor(long / short * s) can fall one below.
        assert_eq!(t.resized_dims(700, 600), (298, 256));
        // Offsets: round half to even (303 - 224 = 79 -> 39.5 -> 40), floor for MindCV.
        assert_eq!(t.crop_offset(303), 40);
        assert_eq!(t.crop_offset(341), 58);
        assert_eq!(EvalTransform::default().crop_offset(303), 39);
        // Smaller than the crop: torchvision pads (crop - dim) div 2 zero pixels before.
        assert_eq!(t.crop_offset(201), -11);
        assert_eq!(EvalTransform::default().crop_offset(201), -12);
    }

    #[test]
    fn timm_normalization_is_totensor_then_imagenet_default() {
        let t = EvalTransform::default().with_preprocess(Preprocess::Timm);
        // timm's IMAGENET_DEFAULT_MEAN / _STD as float32 tensors.
        let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
        assert_ne!((57.12f32 as f64 / 255.0) as f32, 0.224f32);
        for c in 0..3 {
            let norm = t.normalization(c);
            for p in [0u8, 1, 128, 255] {
                assert_eq!(
                    norm(p),
                    (p as f32 / 255.0 - mean[c]) / std[c],
                    "c={c} p={p}"
                );
            }
        }
        assert_eq!("TIMM".parse::<Preprocess>().unwrap(), Preprocess::Timm);
        assert!("pil".parse::<Preprocess>().is_err());
    }

    #[test]
    fn rejects_bad_parameters() {
        let b = Interpolation::Bicubic;
        assert!(EvalTransform::new(0, 0.875, b, IMAGENET_MEAN, IMAGENET_STD).is_err());
        assert!(EvalTransform::new(224, 0.0, b, IMAGENET_MEAN, IMAGENET_STD).is_err());
        assert!(EvalTransform::new(224, 0.875, b, IMAGENET_MEAN, [1.0, 0.0, 1.0]).is_err());
        let inf = f32::INFINITY;
        assert!(EvalTransform::new(224, 0.875, b, IMAGENET_MEAN, [1.0, inf, 1.0]).is_err());
        assert!(EvalTransform::new(224, 0.875, b, [inf, 0.0, 0.0], IMAGENET_STD).is_err());
    }
}
