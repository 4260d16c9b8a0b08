//! MindCV's ImageNet evaluation transforms (`transforms_imagenet_eval` in
//! mindcv/data/transforms_factory.py): Decode -> Resize(short side) -> CenterCrop -> Normalize ->
//! HWC2CHW, with MindSpore 2.x semantics.
use std::path::Path;

use super::decode::{decode_file, MAX_IMAGE_PIXELS};
use super::resize::{resize_u8_window, Interpolation, ResizeWindow};
use super::rgb::RgbImage;
use crate::error::{Error, Result};

/// The largest image side (pixels) a transform may produce.
pub const MAX_SIDE: usize = 16384;

/// ImageNet channel means on the 0..255 scale (R, G, B): MindCV's default `mean`.
pub const IMAGENET_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
/// ImageNet channel standard deviations on the 0..255 scale (R, G, B): MindCV's default `std`.
pub const IMAGENET_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// MindCV's eval transform `transforms_imagenet_eval(image_resize, crop_pct, interpolation, mean, std)`:
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
    /// is not a positive finite number, or a `std` entry is not positive.
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
        if std.iter().any(|&s| s.is_nan() || s <= 0.0) {
            return Err(Error::Config(format!("std must be positive, got {std:?}")));
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
        })
    }

    /// The CHW shape of one output image: `[3, image_resize, image_resize]`.
    pub fn output_shape(&self) -> [usize; 3] {
        [3, self.image_resize, self.image_resize]
    }

    /// The size `(width, height)` an image of `width x height` is resized to: the short side
    /// becomes `resize_size`, the long side `floor(long / short * resize_size)`.
    pub fn resized_dims(&self, width: usize, height: usize) -> (usize, usize) {
        let s = self.resize_size;
        let scaled = |long: usize, short: usize| {
            ((long as f64 / short as f64 * s as f64).floor() as usize).max(1)
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

    /// Transforms a decoded image: `3 * image_resize^2` f32, CHW, normalized.
    /// Errors: as [`Self::apply_named`], naming the image "image".
    pub fn apply(&self, img: &RgbImage) -> Result<Vec<f32>> {
        self.apply_named(img, Path::new("image"))
    }

    /// [`Self::apply`] with errors naming the image `name` (its file, or e.g. "in-memory
    /// image"): [`Error::Format`] when the resized size exceeds [`super::MAX_IMAGE_PIXELS`]
    /// ([`Self::checked_resized_dims`]); [`Error::Invalid`] for an empty image;
    /// [`Error::OutOfMemory`] from the resize.
    pub fn apply_named(&self, img: &RgbImage, name: &Path) -> Result<Vec<f32>> {
        let (rw, rh) = self
            .checked_resized_dims(img.width, img.height)
            .map_err(|m| Error::format(name, m))?;
        let crop = self.image_resize;
        // Offsets may be negative (crop larger than the image): those pixels are zero.
        let top = (rh as i64 - crop as i64).div_euclid(2);
        let left = (rw as i64 - crop as i64).div_euclid(2);
        // Only the part of the resized image inside the crop is computed (the same values as
        // the whole resize): an extreme aspect ratio costs no more than a square image.
        let (x0, x1) = (
            left.max(0) as usize,
            (left + crop as i64).min(rw as i64) as usize,
        );
        let (y0, y1) = (
            top.max(0) as usize,
            (top + crop as i64).min(rh as i64) as usize,
        );
        let window = ResizeWindow {
            left: x0,
            top: y0,
            width: x1 - x0,
            height: y1 - y0,
        };
        let resized = resize_u8_window(
            &img.data,
            (img.width, img.height, 3),
            (rw, rh),
            window,
            self.interpolation,
        )?;
        let plane = crop * crop;
        let mut out = vec![0f32; 3 * plane];
        for y in 0..crop {
            let sy = top + y as i64;
            for x in 0..crop {
                let sx = left + x as i64;
                let inside = sy >= y0 as i64 && sx >= x0 as i64 && sy < y1 as i64 && sx < x1 as i64;
                for c in 0..3 {
                    let v = if inside {
                        let (wy, wx) = (sy as usize - y0, sx as usize - x0);
                        resized[(wy * window.width + wx) * 3 + c] as f32
                    } else {
                        0.0
                    };
                    out[c * plane + y * crop + x] = (v - self.mean[c]) / self.std[c];
                }
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
    fn rejects_bad_parameters() {
        let b = Interpolation::Bicubic;
        assert!(EvalTransform::new(0, 0.875, b, IMAGENET_MEAN, IMAGENET_STD).is_err());
        assert!(EvalTransform::new(224, 0.0, b, IMAGENET_MEAN, IMAGENET_STD).is_err());
        assert!(EvalTransform::new(224, 0.875, b, IMAGENET_MEAN, [1.0, 0.0, 1.0]).is_err());
    }
}
