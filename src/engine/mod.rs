//! The jobs the CLI and the C ABI call: validate, predict, preprocess, bench, models, and the
//! training curves.
pub mod bench;
pub mod curves;
pub mod device;
pub mod inspect;
pub mod models;
pub mod predict;
pub mod preprocess;
mod session;
pub mod train;
pub mod validate;

use crate::config::{self, Recipe};
use crate::data::{EvalTransform, Interpolation};
use crate::{Error, Result};

/// MindCV's eval transform as a recipe sets it (`image_resize`, `crop_pct`, `interpolation`,
/// `mean`, `std`). Errors: an interpolation other than bicubic/bilinear, mean/std not of 3.
pub fn eval_transform(r: &Recipe) -> Result<EvalTransform> {
    let interpolation = match r.interpolation {
        config::Interpolation::Bicubic => Interpolation::Bicubic,
        config::Interpolation::Bilinear => Interpolation::Bilinear,
        other => {
            return Err(Error::Config(format!(
                "interpolation '{}' is not supported for evaluation (bicubic, bilinear)",
                other.as_str()
            )))
        }
    };
    let three = |key: &str, v: &[f64]| -> Result<[f32; 3]> {
        match v {
            [a, b, c] => Ok([*a as f32, *b as f32, *c as f32]),
            _ => Err(Error::Config(format!(
                "{key} must have 3 values (R, G, B), got {v:?}"
            ))),
        }
    };
    EvalTransform::new(
        r.image_resize,
        r.crop_pct,
        interpolation,
        three("mean", &r.mean)?,
        three("std", &r.std)?,
    )
}
