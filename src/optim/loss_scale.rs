//! Loss scaling as MindSpore's loss-scale managers do it, chosen as MindCV chooses them
//! (`loss_scale_type`, `loss_scale`, `drop_overflow_update`; MindCV `create_loss_scale_manager`).
//!
//! - `fixed` without `drop_overflow_update` (the SENet recipes): `FixedLossScaleManager`; the
//!   loss gradient is multiplied by the scale and `nn.Momentum(loss_scale=...)` divides it back
//!   out; there is no overflow check.
//! - `fixed` with `drop_overflow_update: True`: the same scale, but the step runs through a
//!   loss-scale cell (`TrainOneStepWithLossScaleCell`): gradients are divided by the scale
//!   before the optimizer, and a step whose gradients hold an Inf or NaN is skipped.
//! - `dynamic`: `DynamicLossScaleManager(loss_scale, scale_factor=2, scale_window=2000)`, also a
//!   loss-scale cell: overflowing steps are skipped and the scale is divided by 2 (not below 1);
//!   after 2000 iterations without overflow it is multiplied by 2 (MindSpore's
//!   `DynamicLossScaleUpdateCell`, whose counters this type keeps).
//! - `auto`: `fixed` for `amp_level` O0/O1, `dynamic` otherwise (MindSpore's choice per level).
use crate::config::{AmpLevel, LossScaleType};
use crate::{Error, Result};

/// MindSpore's `DynamicLossScaleManager` defaults as MindCV passes them.
pub const DYNAMIC_SCALE_FACTOR: f32 = 2.0;
/// Iterations without overflow before a dynamic scale grows.
pub const DYNAMIC_SCALE_WINDOW: u64 = 2000;

/// A loss-scale manager and its state.
#[derive(Debug, Clone, PartialEq)]
pub enum LossScaler {
    /// `FixedLossScaleManager(scale, drop_overflow_update)`.
    Fixed {
        /// The scale (`loss_scale`).
        scale: f32,
        /// Skip steps whose gradients overflow (and unscale before the optimizer).
        drop_overflow_update: bool,
    },
    /// `DynamicLossScaleManager(scale, factor, window)` with the update cell's counters.
    Dynamic {
        /// The current scale.
        scale: f32,
        /// Multiplier on growth, divisor on overflow (2).
        factor: f32,
        /// Overflow-free iterations before growth (2000).
        window: u64,
        /// MindSpore's `cur_iter`: 1 + iterations seen.
        cur_iter: u64,
        /// MindSpore's `last_overflow_iter`: the iteration of the last overflow or growth.
        last_overflow_iter: u64,
    },
}

impl LossScaler {
    /// The manager MindCV builds for these recipe keys. Errors: a scale that is not finite
    /// and positive ([`Error::Config`] naming `loss_scale`).
    pub fn from_recipe(
        kind: LossScaleType,
        scale: f64,
        drop_overflow_update: bool,
        amp: AmpLevel,
    ) -> Result<LossScaler> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::Config(format!(
                "loss_scale must be a positive number, got {scale}"
            )));
        }
        let scale = scale as f32;
        let dynamic = match kind {
            LossScaleType::Fixed => false,
            LossScaleType::Dynamic => true,
            LossScaleType::Auto => !matches!(amp, AmpLevel::O0 | AmpLevel::O1),
        };
        Ok(if dynamic {
            LossScaler::dynamic(scale)
        } else {
            LossScaler::Fixed {
                scale,
                drop_overflow_update,
            }
        })
    }

    /// A dynamic manager starting at `scale` with MindSpore's factor 2 and window 2000.
    pub fn dynamic(scale: f32) -> LossScaler {
        LossScaler::Dynamic {
            scale,
            factor: DYNAMIC_SCALE_FACTOR,
            window: DYNAMIC_SCALE_WINDOW,
            cur_iter: 1,
            last_overflow_iter: 0,
        }
    }

    /// The scale the next step's loss gradient is multiplied by.
    pub fn scale(&self) -> f32 {
        match self {
            LossScaler::Fixed { scale, .. } | LossScaler::Dynamic { scale, .. } => *scale,
        }
    }

    /// Whether steps run through a loss-scale cell: gradients checked for overflow, divided by
    /// the scale before the optimizer, and overflowing steps skipped.
    pub fn checks_overflow(&self) -> bool {
        match self {
            LossScaler::Fixed {
                drop_overflow_update,
                ..
            } => *drop_overflow_update,
            LossScaler::Dynamic { .. } => true,
        }
    }

    /// Records one step whose gradients did (`overflow`) or did not overflow, after the
    /// update was applied or skipped; a dynamic scale shrinks or grows as
    /// `DynamicLossScaleUpdateCell` does (growth wins when both happen in one iteration, as
    /// there).
    pub fn record(&mut self, overflow: bool) {
        if let LossScaler::Dynamic {
            scale,
            factor,
            window,
            cur_iter,
            last_overflow_iter,
        } = self
        {
            let grow = *cur_iter - *last_overflow_iter >= *window;
            if overflow || grow {
                *last_overflow_iter = *cur_iter;
            }
            if grow {
                *scale *= *factor;
            } else if overflow {
                *scale = (*scale / *factor).max(1.0);
            }
            *cur_iter += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_scale_halves_on_overflow_and_doubles_after_the_window() {
        let mut s = LossScaler::Dynamic {
            scale: 1024.0,
            factor: 2.0,
            window: 3,
            cur_iter: 1,
            last_overflow_iter: 0,
        };
        s.record(true);
        assert_eq!(s.scale(), 512.0);
        // Iterations 2, 3: since the overflow at 1, 1 and 2 < 3 iterations.
        s.record(false);
        s.record(false);
        assert_eq!(s.scale(), 512.0);
        // Iteration 4: 3 since the overflow, grows.
        s.record(false);
        assert_eq!(s.scale(), 1024.0);
        // Never below 1.
        let mut s = LossScaler::dynamic(2.0);
        s.record(true);
        s.record(true);
        s.record(true);
        assert_eq!(s.scale(), 1.0);
    }

    #[test]
    fn recipe_choice_follows_mindcv() {
        let f = LossScaler::from_recipe(LossScaleType::Fixed, 1024.0, false, AmpLevel::O2).unwrap();
        assert!(!f.checks_overflow());
        assert_eq!(f.scale(), 1024.0);
        let d = LossScaler::from_recipe(LossScaleType::Fixed, 1024.0, true, AmpLevel::O2).unwrap();
        assert!(d.checks_overflow());
        let a = LossScaler::from_recipe(LossScaleType::Auto, 128.0, false, AmpLevel::O2).unwrap();
        assert_eq!(a, LossScaler::dynamic(128.0));
        let a0 = LossScaler::from_recipe(LossScaleType::Auto, 1.0, false, AmpLevel::O0).unwrap();
        assert!(!a0.checks_overflow());
        let bad = LossScaler::from_recipe(LossScaleType::Fixed, 0.0, false, AmpLevel::O0);
        assert!(bad.unwrap_err().to_string().contains("loss_scale"));
    }
}
