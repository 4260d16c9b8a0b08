//! One layer's forward and backward in training mode: conv + BatchNorm (+ ReLU), and Dense.
use super::{ConvBn, ConvBnActs, Dense, DeviceParam, BN_EPS, BN_MOMENTUM};
use crate::backend::{Activation, Backend};
use crate::Result;

/// Mutable access to four distinct parameters.
fn four<B: Backend>(p: &mut [DeviceParam<B>], idx: [usize; 4]) -> [&mut DeviceParam<B>; 4] {
    p.get_disjoint_mut(idx).expect("distinct parameter indices")
}

fn grad_of<B: Backend>(dp: &mut DeviceParam<B>) -> &mut B::Buffer {
    &mut dp.train.as_mut().expect("trainable parameter").0
}

/// conv -> BatchNorm (batch statistics, moving stats updated; or, when `frozen`, the moving
/// statistics, left unchanged) [-> ReLU].
pub(super) fn conv_bn_forward<B: Backend>(
    be: &B,
    p: &mut [DeviceParam<B>],
    c: &ConvBn,
    input: &B::Buffer,
    a: &mut ConvBnActs<B>,
    frozen: bool,
) -> Result<()> {
    be.conv2d(
        input,
        a.in_shape,
        &p[c.weight].value,
        c.w_shape,
        None,
        c.p,
        Activation::None,
        &mut a.conv_out,
    )?;
    let [gamma, beta, mean, var] = four(p, [c.gamma, c.beta, c.mean, c.var]);
    let act = if c.relu {
        Activation::Relu
    } else {
        Activation::None
    };
    if frozen {
        return be.batch_norm_frozen(
            &a.conv_out,
            a.out_shape,
            &gamma.value,
            &beta.value,
            &mean.value,
            &var.value,
            BN_EPS,
            act,
            &mut a.bn_out,
        );
    }
    be.batch_norm_train(
        &a.conv_out,
        a.out_shape,
        &gamma.value,
        &beta.value,
        BN_EPS,
        BN_MOMENTUM,
        &mut mean.value,
        &mut var.value,
        &mut a.saved_mean,
        &mut a.saved_invstd,
        act,
        &mut a.bn_out,
    )
}

/// Backward of [`conv_bn_forward`]: `dy` = d(BN output) (ReLU applied inside when the layer has
/// one), `dconv` scratch, `dx` = d(conv input) when wanted. Writes the conv weight's and BN's
/// gradients. `frozen` as the forward's.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_bn_backward<B: Backend>(
    be: &B,
    p: &mut [DeviceParam<B>],
    c: &ConvBn,
    a: &ConvBnActs<B>,
    input: &B::Buffer,
    dy: &B::Buffer,
    dconv: &mut B::Buffer,
    dx: Option<&mut B::Buffer>,
    frozen: bool,
) -> Result<()> {
    if frozen {
        let [gamma, beta, mean, var] = four(p, [c.gamma, c.beta, c.mean, c.var]);
        let y_relu = if c.relu { Some(&a.bn_out) } else { None };
        let dgamma = &mut gamma.train.as_mut().expect("gamma is trainable").0;
        be.batch_norm_frozen_backward(
            &a.conv_out,
            a.out_shape,
            dy,
            y_relu,
            &gamma.value,
            &mean.value,
            &var.value,
            BN_EPS,
            dconv,
            dgamma,
            grad_of(beta),
        )?;
    } else {
        let [gamma, beta] = p
            .get_disjoint_mut([c.gamma, c.beta])
            .expect("distinct parameter indices");
        let y_relu = if c.relu { Some(&a.bn_out) } else { None };
        let dgamma = &mut gamma.train.as_mut().expect("gamma is trainable").0;
        be.batch_norm_backward(
            &a.conv_out,
            a.out_shape,
            dy,
            y_relu,
            &gamma.value,
            &a.saved_mean,
            &a.saved_invstd,
            dconv,
            dgamma,
            grad_of(beta),
        )?;
    }
    let w = &mut p[c.weight];
    let dw = &mut w.train.as_mut().expect("conv weight is trainable").0;
    be.conv2d_backward_filter(
        input,
        a.in_shape,
        dconv,
        a.out_shape,
        c.p,
        c.w_shape,
        dw,
        false,
    )?;
    if let Some(dx) = dx {
        be.conv2d_backward_data(dconv, a.out_shape, &w.value, c.w_shape, c.p, a.in_shape, dx)?;
    }
    Ok(())
}

/// Dense forward `y = act(x · wᵀ + b)`.
pub(super) fn dense_forward<B: Backend>(
    be: &B,
    p: &[DeviceParam<B>],
    d: &Dense,
    x: &B::Buffer,
    n: usize,
    act: Activation,
    y: &mut B::Buffer,
) -> Result<()> {
    be.linear(
        x,
        n,
        &p[d.weight].value,
        d.out_features,
        d.in_features,
        &p[d.bias].value,
        act,
        y,
    )
}

/// Dense backward: weight and bias gradients, and `dx` when wanted.
pub(super) fn dense_backward<B: Backend>(
    be: &B,
    p: &mut [DeviceParam<B>],
    d: &Dense,
    x: &B::Buffer,
    n: usize,
    dy: &B::Buffer,
    dx: Option<&mut B::Buffer>,
) -> Result<()> {
    let [w, b] = p
        .get_disjoint_mut([d.weight, d.bias])
        .expect("distinct parameter indices");
    let dw = &mut w.train.as_mut().expect("dense weight is trainable").0;
    be.linear_backward(
        x,
        n,
        &w.value,
        d.out_features,
        d.in_features,
        dy,
        dx,
        dw,
        grad_of(b),
    )
}
