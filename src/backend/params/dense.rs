//! The arguments of the dense ops (MindSpore `nn.Dense`) and their length checks.
use super::check_len;
use crate::backend::{Activation, BufferLen};
use crate::Result;

/// The shapes of a dense layer (MindSpore `nn.Dense`): `n` rows of `in_features` in,
/// `out_features` out, the weight (out_features, in_features).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearShape {
    /// Rows (the batch).
    pub n: usize,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
}

impl LinearShape {
    /// The checks of [`Backend::linear_backward`](crate::backend::Backend::linear_backward): every
    /// buffer has room for its shape.
    pub(crate) fn check_backward<B: BufferLen + ?Sized>(
        self,
        x: &(impl BufferLen + ?Sized),
        w: &(impl BufferLen + ?Sized),
        dy: &(impl BufferLen + ?Sized),
        grads: &LinearGrads<'_, B>,
    ) -> Result<()> {
        let LinearShape {
            n,
            in_features: i,
            out_features: o,
        } = self;
        check_len("linear_backward x", x, n * i)?;
        check_len("linear_backward weight", w, o * i)?;
        check_len("linear_backward dy", dy, n * o)?;
        check_len("linear_backward dw", &*grads.dw, o * i)?;
        check_len("linear_backward db", &*grads.db, o)?;
        if let Some(dx) = grads.dx.as_deref() {
            check_len("linear_backward dx", dx, n * i)?;
        }
        Ok(())
    }
}

/// A dense layer's forward as [`Backend::linear`](crate::backend::Backend::linear) applies it:
/// `y = act(x · wᵀ + b)`.
#[derive(Debug)]
pub struct LinearForward<'a, B: ?Sized> {
    /// Rows and features.
    pub shape: LinearShape,
    /// The weight (out_features, in_features), as MindSpore `nn.Dense` stores it.
    pub w: &'a B,
    /// The bias (out_features).
    pub b: &'a B,
    /// The activation applied last.
    pub act: Activation,
}

impl<B: ?Sized> Clone for LinearForward<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: ?Sized> Copy for LinearForward<'_, B> {}

impl<B: BufferLen + ?Sized> LinearForward<'_, B> {
    /// The checks of a forward from `x` into `y`: every buffer has room for its shape.
    pub(crate) fn check(
        &self,
        x: &(impl BufferLen + ?Sized),
        y: &(impl BufferLen + ?Sized),
    ) -> Result<()> {
        let LinearShape {
            n,
            in_features: i,
            out_features: o,
        } = self.shape;
        check_len("linear input", x, n * i)?;
        check_len("linear weight", self.w, o * i)?;
        check_len("linear bias", self.b, o)?;
        check_len("linear output", y, n * o)
    }
}

/// The gradients [`Backend::linear_backward`](crate::backend::Backend::linear_backward) writes, each
/// overwritten.
#[derive(Debug)]
pub struct LinearGrads<'a, B: ?Sized> {
    /// ∂L/∂x (n, in_features), or None when no input gradient is needed (the first layer).
    pub dx: Option<&'a mut B>,
    /// ∂L/∂w (out_features, in_features).
    pub dw: &'a mut B,
    /// ∂L/∂b (out_features).
    pub db: &'a mut B,
}
