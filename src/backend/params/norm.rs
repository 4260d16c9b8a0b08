//! The arguments of the BatchNorm ops (training and frozen, forward and backward) and their
//! checks.
use super::check_len;
use crate::backend::{Activation, BufferLen, Shape4};
use crate::{Error, Result};

/// Values per channel `M = N*H*W` of a BatchNorm on batch statistics. Errors
/// ([`Error::Shape`]): no channel, or `M < 2` (the unbiased variance needs two values; PyTorch
/// refuses the same case).
fn values_per_channel(what: &str, xs: Shape4) -> Result<usize> {
    let m = xs.n * xs.h * xs.w;
    if xs.c == 0 || m < 2 {
        return Err(Error::Shape(format!(
            "{what}: input {xs:?} has {m} value(s) per channel, training BatchNorm needs >= 2"
        )));
    }
    Ok(m)
}

/// [`Error::Shape`] for an empty input of a BatchNorm on the moving statistics.
fn not_empty(what: &str, xs: Shape4) -> Result<()> {
    if xs.numel() == 0 {
        return Err(Error::Shape(format!("{what}: empty input {xs:?}")));
    }
    Ok(())
}

/// A BatchNorm2d forward (MindSpore `nn.BatchNorm2d`) as
/// [`Backend::batch_norm_train`](crate::backend::Backend::batch_norm_train) and
/// [`Backend::batch_norm_frozen`](crate::backend::Backend::batch_norm_frozen) apply it:
/// `y = act(gamma*(x-mean)*invstd + beta)` per channel, the statistics given beside it
/// ([`BatchStats`] or [`MovingStats`]).
#[derive(Debug)]
pub struct BatchNormForward<'a, B: ?Sized> {
    /// The input and output, NCHW.
    pub xs: Shape4,
    /// Scale, C values.
    pub gamma: &'a B,
    /// Shift, C values.
    pub beta: &'a B,
    /// The fused activation: None or Relu ([`Error::Invalid`] for Sigmoid).
    pub act: Activation,
}

impl<B: ?Sized> Clone for BatchNormForward<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: ?Sized> Copy for BatchNormForward<'_, B> {}

/// The statistics of a training-mode BatchNorm: the batch's, with the moving ones updated and
/// two per-channel statistics saved for the backward (C values each; backend-defined, see
/// [`BatchStats::saved_invstd`]). MindSpore's convention:
/// `moving = momentum*moving + (1-momentum)*batch` (MindSpore momentum 0.9 = PyTorch 0.1), the
/// variance with the unbiased batch variance.
#[derive(Debug)]
pub struct BatchStats<'a, B: ?Sized> {
    /// `invstd = 1/sqrt(var + eps)`.
    pub eps: f32,
    /// Weight of the old moving statistics.
    pub momentum: f32,
    /// Moving mean, updated in place.
    pub moving_mean: &'a mut B,
    /// Moving variance, updated in place.
    pub moving_var: &'a mut B,
    /// The first saved statistic, written (the batch mean on the CPU and Ascend backends).
    pub saved_mean: &'a mut B,
    /// The second saved statistic, written: opaque, only for the same backend's
    /// [`Backend::batch_norm_backward`](crate::backend::Backend::batch_norm_backward). The CPU
    /// backend writes the batch `1/sqrt(var + eps)`; the Ascend backend aclnnBatchNorm's
    /// `saveInvstd`, which despite its name is the biased batch variance on 910/A2/A3
    /// (1/sqrt(var + eps) only on 950; `aclnn-contract.md` Part A 4).
    pub saved_invstd: &'a mut B,
}

/// The moving statistics a frozen BatchNorm (MindSpore
/// `nn.BatchNorm2d(use_batch_statistics=False)`) normalises with, read only (C values each),
/// and its epsilon: `invstd = 1/sqrt(var + eps)`.
#[derive(Debug)]
pub struct MovingStats<'a, B: ?Sized> {
    /// Moving mean.
    pub mean: &'a B,
    /// Moving variance.
    pub var: &'a B,
    /// Epsilon added to the variance.
    pub eps: f32,
}

impl<B: ?Sized> Clone for MovingStats<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: ?Sized> Copy for MovingStats<'_, B> {}

/// The batch statistics a training-mode forward saved ([`BatchStats::saved_mean`] and
/// [`BatchStats::saved_invstd`]), for its backward (C values each), as that backend wrote
/// them.
#[derive(Debug)]
pub struct SavedStats<'a, B: ?Sized> {
    /// [`BatchStats::saved_mean`].
    pub mean: &'a B,
    /// [`BatchStats::saved_invstd`] (backend-defined, see there).
    pub invstd: &'a B,
}

impl<B: ?Sized> Clone for SavedStats<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: ?Sized> Copy for SavedStats<'_, B> {}

/// What a BatchNorm backward reads of its forward: the input, the output gradient and, when the
/// forward fused a ReLU, its output (`dy` is then masked by `y > 0` first).
#[derive(Debug)]
pub struct BatchNormBackward<'a, B: ?Sized> {
    /// The shape of `x`, `dy` and `y_relu`, NCHW.
    pub xs: Shape4,
    /// The forward's input.
    pub x: &'a B,
    /// ∂L/∂y.
    pub dy: &'a B,
    /// The forward's output when it fused a ReLU, else None.
    pub y_relu: Option<&'a B>,
    /// Scale, C values.
    pub gamma: &'a B,
}

impl<B: ?Sized> Clone for BatchNormBackward<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: ?Sized> Copy for BatchNormBackward<'_, B> {}

/// The gradients a BatchNorm backward writes, each overwritten.
#[derive(Debug)]
pub struct BatchNormGrads<'a, B: ?Sized> {
    /// ∂L/∂x, NCHW.
    pub dx: &'a mut B,
    /// ∂L/∂gamma, C values.
    pub dgamma: &'a mut B,
    /// ∂L/∂beta, C values.
    pub dbeta: &'a mut B,
}

impl<B: BufferLen + ?Sized> BatchNormForward<'_, B> {
    /// The checks of [`Backend::batch_norm_train`](crate::backend::Backend::batch_norm_train): at least
    /// two values per channel, a fusable activation, room in every buffer. Returns the values
    /// per channel `M = N*H*W`.
    pub(crate) fn check_train(
        &self,
        x: &(impl BufferLen + ?Sized),
        stats: &BatchStats<'_, B>,
        y: &(impl BufferLen + ?Sized),
    ) -> Result<usize> {
        let what = "batch_norm_train";
        let m = values_per_channel(what, self.xs)?;
        self.check(what, x, y)?;
        let per_channel: [(&str, &B); 4] = [
            ("moving_mean", stats.moving_mean),
            ("moving_variance", stats.moving_var),
            ("saved_mean", stats.saved_mean),
            ("saved_invstd", stats.saved_invstd),
        ];
        for (name, b) in per_channel {
            check_len(&format!("{what} {name}"), b, self.xs.c)?;
        }
        Ok(m)
    }

    /// The checks of [`Backend::batch_norm_frozen`](crate::backend::Backend::batch_norm_frozen): a
    /// fusable activation, a non-empty input, room in every buffer.
    pub(crate) fn check_frozen(
        &self,
        x: &(impl BufferLen + ?Sized),
        moving: MovingStats<'_, B>,
        y: &(impl BufferLen + ?Sized),
    ) -> Result<()> {
        let what = "batch_norm_frozen";
        self.fused_relu(what)?;
        not_empty(what, self.xs)?;
        self.check(what, x, y)?;
        check_len(&format!("{what} moving_mean"), moving.mean, self.xs.c)?;
        check_len(&format!("{what} moving_variance"), moving.var, self.xs.c)
    }

    /// Whether the forward fuses a ReLU. Errors ([`Error::Invalid`]): Sigmoid, which cannot be
    /// fused.
    pub(crate) fn fused_relu(&self, what: &str) -> Result<bool> {
        match self.act {
            Activation::None => Ok(false),
            Activation::Relu => Ok(true),
            Activation::Sigmoid => Err(Error::Invalid(format!(
                "{what}: only Activation::None or Relu can be fused"
            ))),
        }
    }

    /// The checks both forwards share: the activation, then room in `x`, `y`, `gamma`, `beta`.
    fn check(
        &self,
        what: &str,
        x: &(impl BufferLen + ?Sized),
        y: &(impl BufferLen + ?Sized),
    ) -> Result<()> {
        self.fused_relu(what)?;
        check_len(&format!("{what} input"), x, self.xs.numel())?;
        check_len(&format!("{what} output"), y, self.xs.numel())?;
        check_len(&format!("{what} gamma"), self.gamma, self.xs.c)?;
        check_len(&format!("{what} beta"), self.beta, self.xs.c)
    }
}

impl<B: BufferLen + ?Sized> BatchNormBackward<'_, B> {
    /// The checks of [`Backend::batch_norm_backward`](crate::backend::Backend::batch_norm_backward): at
    /// least two values per channel, room in every buffer. Returns `M = N*H*W`.
    pub(crate) fn check_batch(
        &self,
        saved: SavedStats<'_, B>,
        grads: &BatchNormGrads<'_, B>,
    ) -> Result<usize> {
        let what = "batch_norm_backward";
        let m = values_per_channel(what, self.xs)?;
        self.check(
            what,
            [("saved_mean", saved.mean), ("saved_invstd", saved.invstd)],
            grads,
        )?;
        Ok(m)
    }

    /// The checks of
    /// [`Backend::batch_norm_frozen_backward`](crate::backend::Backend::batch_norm_frozen_backward): a
    /// non-empty input, room in every buffer.
    pub(crate) fn check_frozen(
        &self,
        moving: MovingStats<'_, B>,
        grads: &BatchNormGrads<'_, B>,
    ) -> Result<()> {
        let what = "batch_norm_frozen_backward";
        not_empty(what, self.xs)?;
        let stats = [
            ("moving_mean", moving.mean),
            ("moving_variance", moving.var),
        ];
        self.check(what, stats, grads)
    }

    /// Room in the NCHW buffers, then in `gamma`, the two `stats` and the parameter gradients.
    fn check(
        &self,
        what: &str,
        stats: [(&str, &B); 2],
        grads: &BatchNormGrads<'_, B>,
    ) -> Result<()> {
        let (numel, c) = (self.xs.numel(), self.xs.c);
        check_len(&format!("{what} input"), self.x, numel)?;
        check_len(&format!("{what} dy"), self.dy, numel)?;
        check_len(&format!("{what} dx"), &*grads.dx, numel)?;
        if let Some(y) = self.y_relu {
            check_len(&format!("{what} y_relu"), y, numel)?;
        }
        check_len(&format!("{what} gamma"), self.gamma, c)?;
        for (name, b) in stats {
            check_len(&format!("{what} {name}"), b, c)?;
        }
        check_len(&format!("{what} dgamma"), &*grads.dgamma, c)?;
        check_len(&format!("{what} dbeta"), &*grads.dbeta, c)
    }
}
