//! The arguments of MindSpore's Momentum update and their checks.
use super::check_len;
use crate::backend::BufferLen;
use crate::{Error, Result};

/// The settings of one MindSpore `nn.Momentum` update of one parameter. The step's
/// hyper-parameters are the same for every parameter; `weight_decay` is the parameter's own
/// (0 for those excluded from decay, see `optim::decays`), as MindSpore's parameter groups
/// set it. An update of many parameters at once takes one of these per group of equal
/// settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MomentumParams {
    /// Learning rate of this step.
    pub lr: f32,
    /// Momentum coefficient.
    pub momentum: f32,
    /// Weight decay of this parameter, >= 0.
    pub weight_decay: f32,
    /// The loss scale the gradient still carries (1.0 when it was divided out), > 0.
    pub loss_scale: f32,
    /// Nesterov momentum (`use_nesterov`).
    pub nesterov: bool,
}

impl MomentumParams {
    /// The checks of [`Backend::momentum_update`](crate::backend::Backend::momentum_update): room for
    /// `len` values in every buffer ([`Error::Shape`]), a finite loss scale > 0 and a weight
    /// decay >= 0 ([`Error::Invalid`]).
    pub(crate) fn check(
        &self,
        param: &(impl BufferLen + ?Sized),
        grad: &(impl BufferLen + ?Sized),
        moment: &(impl BufferLen + ?Sized),
        len: usize,
    ) -> Result<()> {
        check_len("momentum_update param", param, len)?;
        check_len("momentum_update grad", grad, len)?;
        check_len("momentum_update moment", moment, len)?;
        let (ls, wd) = (self.loss_scale, self.weight_decay);
        if !(ls > 0.0 && ls.is_finite()) {
            return Err(Error::Invalid(format!(
                "momentum_update: loss scale {ls} must be > 0"
            )));
        }
        if wd.is_nan() || wd < 0.0 {
            return Err(Error::Invalid(format!(
                "momentum_update: weight decay {wd} must be >= 0"
            )));
        }
        Ok(())
    }

    /// The weight decay multiplied by the loss scale, formed in f64 and stored as f32 (MindSpore
    /// pre-scales it: `_preprocess_weight_decay`); 0 = no decay.
    pub(crate) fn scaled_weight_decay(&self) -> f32 {
        (self.weight_decay as f64 * self.loss_scale as f64) as f32
    }

    /// `1 / loss_scale` as f32, the factor that unscales the gradient.
    pub(crate) fn inverse_loss_scale(&self) -> f32 {
        (1.0 / self.loss_scale as f64) as f32
    }

    /// Whether the gradient is unscaled (the loss scale is not 1).
    pub(crate) fn unscales(&self) -> bool {
        self.loss_scale != 1.0
    }
}

/// One parameter of a grouped Momentum update
/// ([`Backend::momentum_update_group`](crate::backend::Backend::momentum_update_group)): its
/// value, gradient and accumulator, each holding at least `len` values.
pub struct MomentumSlot<'a, B> {
    /// The parameter, updated in place.
    pub param: &'a mut B,
    /// Its gradient (still carrying the loss scale); see the group update for what it holds
    /// afterwards.
    pub grad: &'a mut B,
    /// Its Momentum accumulator, updated in place.
    pub moment: &'a mut B,
    /// Values of the parameter.
    pub len: usize,
}
