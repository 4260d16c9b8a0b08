//! The arguments of the fused SE scale + residual + ReLU and its backward, and their checks.
use super::check_len;
use crate::backend::{BufferLen, Shape4};
use crate::Result;

/// The checks of [`Backend::se_scale_add_relu`](crate::backend::Backend::se_scale_add_relu): room in `x`
/// and `shortcut` (`xs`) and `gate` (N, C).
pub(crate) fn check_se_scale_add_relu(
    xs: Shape4,
    x: &(impl BufferLen + ?Sized),
    gate: &(impl BufferLen + ?Sized),
    shortcut: &(impl BufferLen + ?Sized),
) -> Result<()> {
    check_len("se_scale_add_relu input", x, xs.numel())?;
    check_len("se_scale_add_relu shortcut", shortcut, xs.numel())?;
    check_len("se_scale_add_relu gate", gate, xs.n * xs.c)
}

/// The gradients
/// [`Backend::se_scale_add_relu_backward`](crate::backend::Backend::se_scale_add_relu_backward) writes,
/// each overwritten.
#[derive(Debug)]
pub struct SeGrads<'a, B: ?Sized> {
    /// ∂L/∂x, NCHW.
    pub dx: &'a mut B,
    /// ∂L/∂gate, (N, C).
    pub dgate: &'a mut B,
    /// ∂L/∂shortcut, NCHW.
    pub dshortcut: &'a mut B,
}

impl<B: BufferLen + ?Sized> SeGrads<'_, B> {
    /// The checks of
    /// [`Backend::se_scale_add_relu_backward`](crate::backend::Backend::se_scale_add_relu_backward): room
    /// in the NCHW buffers (`xs`), then in the (N, C) ones.
    pub(crate) fn check(
        &self,
        xs: Shape4,
        x: &(impl BufferLen + ?Sized),
        gate: &(impl BufferLen + ?Sized),
        out: &(impl BufferLen + ?Sized),
        dout: &(impl BufferLen + ?Sized),
    ) -> Result<()> {
        let what = "se_scale_add_relu_backward";
        let (numel, planes) = (xs.numel(), xs.n * xs.c);
        check_len(&format!("{what} x"), x, numel)?;
        check_len(&format!("{what} out"), out, numel)?;
        check_len(&format!("{what} dout"), dout, numel)?;
        check_len(&format!("{what} dx"), &*self.dx, numel)?;
        check_len(&format!("{what} dshortcut"), &*self.dshortcut, numel)?;
        check_len(&format!("{what} gate"), gate, planes)?;
        check_len(&format!("{what} dgate"), &*self.dgate, planes)
    }
}
