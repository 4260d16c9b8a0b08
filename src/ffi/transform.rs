//! The eval transform as C data ([`SenetTransform`]): image size, crop fraction, interpolation,
//! whose transform, mean and std, as a MindCV recipe sets them (`image_resize`, `crop_pct`,
//! `interpolation`, `mean`, `std`), for images of any size (`senet_preprocess_*_transform`).
use super::args;
use super::preprocess::{SenetPreprocess, SENET_IMAGE_SIZE};
use super::status::{guard, FfiError, SenetStatus};
use crate::config::Recipe;
use crate::data::{EvalTransform, Interpolation, Preprocess, IMAGENET_MEAN, IMAGENET_STD};
use std::ffi::c_char;

/// The resize interpolation of a `SenetTransform` (a recipe's `interpolation`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenetInterpolation {
    /// Bicubic (OpenCV `INTER_CUBIC` for MindCV's transform; Pillow's for timm's): MindCV's
    /// SENet recipes.
    Bicubic = 0,
    /// Bilinear (OpenCV `INTER_LINEAR`; Pillow's for timm's): MindCV `config.py`'s default.
    Bilinear = 1,
}

/// An eval transform: decode, resize the short side to `floor(image_resize / crop_pct)`, centre
/// crop `image_resize x image_resize`, normalize `(pixel - mean[c]) / std[c]` (0..255 scale), CHW.
/// The output holds `3 * image_resize * image_resize` floats, one image of the NCHW batch
/// `senet_model_forward` takes with height = width = `image_resize`.
///
/// Fill it with `senet_transform_default` (MindCV's SENet recipe: 224, 0.875, bicubic, ImageNet
/// mean/std) and change fields, or read a recipe's with `senet_transform_from_recipe`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SenetTransform {
    /// Output height and width in pixels (MindCV `image_resize`), 1 to 16384.
    pub image_resize: usize,
    /// Crop fraction (MindCV `crop_pct`), positive and finite; the short side is resized to
    /// `floor(image_resize / crop_pct)` pixels (at most 16384, at least 1).
    pub crop_pct: f64,
    /// A `SenetInterpolation` value.
    pub interpolation: i32,
    /// A `SenetPreprocess` value: MindCV's resize/crop arithmetic, or timm's.
    pub preprocess: i32,
    /// Per-channel (R, G, B) mean on the 0..255 scale, finite.
    pub mean: [f32; 3],
    /// Per-channel (R, G, B) standard deviation on the 0..255 scale, positive and finite.
    pub std: [f32; 3],
}

impl SenetTransform {
    /// MindCV's SENet eval recipe (what `senet_preprocess_file` applies).
    fn mindcv_default() -> SenetTransform {
        SenetTransform {
            image_resize: SENET_IMAGE_SIZE,
            crop_pct: 0.875,
            interpolation: SenetInterpolation::Bicubic as i32,
            preprocess: SenetPreprocess::Mindcv as i32,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// The transform it describes, checked. Errors: INVALID_ARGUMENT naming the field and value.
    pub(crate) fn to_eval(self) -> Result<EvalTransform, FfiError> {
        let interpolation = match self.interpolation {
            i if i == SenetInterpolation::Bicubic as i32 => Interpolation::Bicubic,
            i if i == SenetInterpolation::Bilinear as i32 => Interpolation::Bilinear,
            other => {
                return Err(FfiError::invalid(format!(
                    "transform.interpolation {other} is unknown (SENET_INTERPOLATION_BICUBIC = \
                     0, SENET_INTERPOLATION_BILINEAR = 1)"
                )))
            }
        };
        let preprocess = super::preprocess::preprocess_of(self.preprocess)?;
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(FfiError::invalid(format!(
                "transform.mean must be finite, got {:?}",
                self.mean
            )));
        }
        if self.std.iter().any(|s| !s.is_finite()) {
            return Err(FfiError::invalid(format!(
                "transform.std must be positive and finite, got {:?}",
                self.std
            )));
        }
        let t = EvalTransform::new(
            self.image_resize,
            self.crop_pct,
            interpolation,
            self.mean,
            self.std,
        )
        .map_err(|e| FfiError::invalid(format!("transform: {}", config_message(e))))?;
        Ok(t.with_preprocess(preprocess))
    }

    /// Floats of one image it writes: `3 * image_resize^2` (checked by [`Self::to_eval`]).
    pub(crate) fn values(self) -> usize {
        3 * self.image_resize * self.image_resize
    }
}

/// The text of a configuration error, without the error kind's prefix.
fn config_message(e: crate::Error) -> String {
    match e {
        crate::Error::Config(m) => m,
        other => other.to_string(),
    }
}

/// Writes MindCV's SENet eval transform to `out`: image_resize 224 (SENET_IMAGE_SIZE), crop_pct
/// 0.875, bicubic, SENET_PREPROCESS_MINDCV, ImageNet mean/std — what `senet_preprocess_file`
/// applies. Change fields to describe another recipe's.
///
/// Ownership: `out` stays the caller's. Thread-safety: safe from any thread, concurrently.
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER, SENET_STATUS_INVALID_ARGUMENT
/// (misaligned `out`), SENET_STATUS_INTERNAL.
///
/// # Safety
/// `out` is NULL or points to writable memory for one `SenetTransform`.
#[no_mangle]
pub unsafe extern "C" fn senet_transform_default(out: *mut SenetTransform) -> SenetStatus {
    // SAFETY: `out` is NULL or writable by the contract.
    guard(|| unsafe { args::write_out(out, SenetTransform::mindcv_default(), "out") })
}

/// Reads the eval transform of the MindCV recipe (YAML) at `recipe_path` into `out`: its
/// `image_resize`, `crop_pct`, `interpolation`, `mean` and `std` (keys the file leaves out keep
/// MindCV `config.py`'s defaults), with SENET_PREPROCESS_MINDCV — the transform
/// `senet predict -c RECIPE` and `senet validate -c RECIPE` apply. `out` is written only on
/// success.
///
/// Ownership: `out` stays the caller's; the path is only read during the call.
/// Thread-safety: safe from any thread, concurrently.
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER, SENET_STATUS_INVALID_ARGUMENT (empty
/// path, misaligned `out`; a key of the wrong type, an unknown key, an interpolation other than
/// bicubic/bilinear, a size or crop_pct out of range, mean/std not of 3 values: the message
/// names the file and key), SENET_STATUS_IO (missing or not a regular file),
/// SENET_STATUS_FORMAT (not UTF-8), SENET_STATUS_INTERNAL.
///
/// # Safety
/// `recipe_path` is NULL or a NUL-terminated string; `out` is NULL or points to writable
/// memory for one `SenetTransform`.
#[no_mangle]
pub unsafe extern "C" fn senet_transform_from_recipe(
    recipe_path: *const c_char,
    out: *mut SenetTransform,
) -> SenetStatus {
    guard(|| {
        // SAFETY: NULL or a NUL-terminated string by the contract.
        let path = unsafe { args::path(recipe_path, "recipe_path") }?;
        let r = Recipe::from_yaml_file(&path)?;
        let eval = crate::engine::eval_transform(&r)
            .map_err(|e| FfiError::invalid(format!("{}: {}", path.display(), config_message(e))))?;
        let t = SenetTransform {
            image_resize: eval.image_resize,
            crop_pct: r.crop_pct,
            interpolation: match eval.interpolation {
                Interpolation::Bicubic => SenetInterpolation::Bicubic,
                Interpolation::Bilinear => SenetInterpolation::Bilinear,
            } as i32,
            preprocess: match eval.preprocess {
                Preprocess::MindCv => SenetPreprocess::Mindcv,
                Preprocess::Timm => SenetPreprocess::Timm,
            } as i32,
            mean: eval.mean,
            std: eval.std,
        };
        // SAFETY: `out` is NULL or writable by the contract.
        unsafe { args::write_out(out, t, "out") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_what_senet_preprocess_file_applies() {
        let t = SenetTransform::mindcv_default().to_eval().unwrap();
        assert_eq!(t, EvalTransform::default());
        assert_eq!(SenetTransform::mindcv_default().values(), 150528);
    }
}
