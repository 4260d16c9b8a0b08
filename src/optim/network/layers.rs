//! One layer's forward and backward in training mode: conv + BatchNorm (+ ReLU), and Dense.
use super::{ConvBn, ConvBnActs, Dense, DeviceParam, BN_EPS, BN_MOMENTUM};
use crate::backend::{
    Activation, Backend, BatchNormBackward, BatchNormForward, BatchNormGrads, BatchStats,
    Conv2dForward, Conv2dShape, LinearForward, LinearGrads, LinearShape, MovingStats, SavedStats,
};
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
    let conv = Conv2dForward {
        shape: Conv2dShape {
            xs: a.in_shape,
            w_shape: c.w_shape,
            p: c.p,
        },
        w: &p[c.weight].value,
        bias: None,
        act: Activation::None,
        prepared: None,
    };
    be.conv2d(conv, input, &mut a.conv_out)?;
    let [gamma, beta, mean, var] = four(p, [c.gamma, c.beta, c.mean, c.var]);
    let act = if c.relu {
        Activation::Relu
    } else {
        Activation::None
    };
    let bn = BatchNormForward {
        xs: a.out_shape,
        gamma: &gamma.value,
        beta: &beta.value,
        act,
    };
    if frozen {
        let moving = MovingStats {
            mean: &mean.value,
            var: &var.value,
            eps: BN_EPS,
        };
        return be.batch_norm_frozen(bn, &a.conv_out, moving, &mut a.bn_out);
    }
    let stats = BatchStats {
        eps: BN_EPS,
        momentum: BN_MOMENTUM,
        moving_mean: &mut mean.value,
        moving_var: &mut var.value,
        saved_mean: &mut a.saved_mean,
        saved_invstd: &mut a.saved_invstd,
    };
    be.batch_norm_train(bn, &a.conv_out, stats, &mut a.bn_out)
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
        let bn = BatchNormBackward {
            xs: a.out_shape,
            x: &a.conv_out,
            dy,
            y_relu,
            gamma: &gamma.value,
        };
        let moving = MovingStats {
            mean: &mean.value,
            var: &var.value,
            eps: BN_EPS,
        };
        let grads = BatchNormGrads {
            dx: &mut *dconv,
            dgamma,
            dbeta: grad_of(beta),
        };
        be.batch_norm_frozen_backward(bn, moving, grads)?;
    } else {
        let [gamma, beta] = p
            .get_disjoint_mut([c.gamma, c.beta])
            .expect("distinct parameter indices");
        let y_relu = if c.relu { Some(&a.bn_out) } else { None };
        let dgamma = &mut gamma.train.as_mut().expect("gamma is trainable").0;
        let bn = BatchNormBackward {
            xs: a.out_shape,
            x: &a.conv_out,
            dy,
            y_relu,
            gamma: &gamma.value,
        };
        let saved = SavedStats {
            mean: &a.saved_mean,
            invstd: &a.saved_invstd,
        };
        let grads = BatchNormGrads {
            dx: &mut *dconv,
            dgamma,
            dbeta: grad_of(beta),
        };
        be.batch_norm_backward(bn, saved, grads)?;
    }
    let w = &mut p[c.weight];
    let dw = &mut w.train.as_mut().expect("conv weight is trainable").0;
    let conv = Conv2dShape {
        xs: a.in_shape,
        w_shape: c.w_shape,
        p: c.p,
    };
    be.conv2d_backward_filter(conv, input, dconv, a.out_shape, dw, false)?;
    if let Some(dx) = dx {
        be.conv2d_backward_data(conv, &w.value, dconv, a.out_shape, dx)?;
    }
    Ok(())
}

/// The shapes of Dense layer `d` on `n` rows.
fn linear_shape(d: &Dense, n: usize) -> LinearShape {
    LinearShape {
        n,
        in_features: d.in_features,
        out_features: d.out_features,
    }
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
    let f = LinearForward {
        shape: linear_shape(d, n),
        w: &p[d.weight].value,
        b: &p[d.bias].value,
        act,
    };
    be.linear(f, x, y)
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
    let grads = LinearGrads {
        dx,
        dw,
        db: grad_of(b),
    };
    be.linear_backward(linear_shape(d, n), x, &w.value, dy, grads)
}
