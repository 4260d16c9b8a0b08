//! Train-mode BatchNorm2d with `aclnnBatchNorm` / `aclnnBatchNormBackward` (cann.md §2.3),
//! always in fp32 (MindSpore O2 keeps BatchNorm in fp32: an fp16 input is cast up, the output
//! cast back to fp16), the fused ReLU with `aclnnInplaceRelu` and its backward with
//! `aclnnThresholdBackward`.
use super::buffer::{cast_into, check, out_view, read_as, temp, Arg, AscendBuffer};
use super::op::aclnn;
use super::tensor::{DType, ScalarValue};
use super::AscendBackend;
use crate::backend::{Activation, Shape4};
use crate::{Error, Result};

/// The BatchNorm epsilon the backward passes to aclnn (MindSpore `nn.BatchNorm2d`'s 1e-5); the
/// trait's backward takes `invstd`, which already includes the forward's epsilon, so this value
/// only matters to an implementation that recomputes it.
const BN_EPS: f64 = 1e-5;

fn values_per_channel(what: &str, xs: Shape4) -> Result<usize> {
    let m = xs.n * xs.h * xs.w;
    if xs.c == 0 || m < 2 {
        return Err(Error::Shape(format!(
            "{what}: input {xs:?} has {m} value(s) per channel, training BatchNorm needs >= 2"
        )));
    }
    Ok(m)
}

fn dims4(s: Shape4) -> [usize; 4] {
    [s.n, s.c, s.h, s.w]
}

impl AscendBackend {
    /// [`Backend::batch_norm_train`](crate::backend::Backend::batch_norm_train):
    /// `aclnnBatchNorm(training = true, momentum = 1 - momentum)` (PyTorch's convention for the
    /// running statistics; the running variance takes the unbiased batch variance, as MindSpore
    /// does), then `aclnnInplaceRelu` when `act` is ReLU. `y` is fp32, or fp16 in O2.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn bn_forward(
        &self,
        x: &AscendBuffer,
        xs: Shape4,
        gamma: &AscendBuffer,
        beta: &AscendBuffer,
        eps: f32,
        momentum: f32,
        moving_mean: &mut AscendBuffer,
        moving_var: &mut AscendBuffer,
        saved_mean: &mut AscendBuffer,
        saved_invstd: &mut AscendBuffer,
        act: Activation,
        y: &mut AscendBuffer,
    ) -> Result<()> {
        values_per_channel("batch_norm_train", xs)?;
        let c = xs.c;
        check("batch_norm_train x", x, xs.numel())?;
        check("batch_norm_train y", y, xs.numel())?;
        for (what, b) in [
            ("gamma", gamma),
            ("beta", beta),
            ("moving_mean", &*moving_mean),
            ("moving_var", &*moving_var),
            ("saved_mean", &*saved_mean),
            ("saved_invstd", &*saved_invstd),
        ] {
            check(&format!("batch_norm_train {what}"), b, c)?;
        }
        let f32 = DType::F32;
        let out_dtype = self.cd();
        let mut ctx = self.dev.enter()?;
        let xa = read_as(&mut ctx, x, &dims4(xs), f32)?;
        let ga = read_as(&mut ctx, gamma, &[c], f32)?;
        let ba = read_as(&mut ctx, beta, &[c], f32)?;
        let rm = read_as(&mut ctx, moving_mean, &[c], f32)?;
        let rv = read_as(&mut ctx, moving_var, &[c], f32)?;
        let sm = out_view(&mut ctx, saved_mean, &[c], f32)?;
        let si = out_view(&mut ctx, saved_invstd, &[c], f32)?;
        let yt = out_view(&mut ctx, y, &dims4(xs), out_dtype)?;
        let y32 = if out_dtype == f32 {
            Arg { t: yt, tmp: None }
        } else {
            temp(&mut ctx, &dims4(xs), f32)?
        };
        // The running statistics are updated in place: they must be the buffers themselves.
        if rm.tmp.is_some() || rv.tmp.is_some() {
            return Err(Error::Invalid(
                "batch_norm_train: moving statistics must hold fp32".into(),
            ));
        }
        aclnn!(
            ctx,
            aclnnBatchNorm,
            aclnnBatchNormGetWorkspaceSize,
            xa.t,
            ga.t,
            ba.t,
            rm.t,
            rv.t,
            true,
            1.0 - momentum as f64,
            eps as f64,
            y32.t,
            sm,
            si
        )?;
        if act == Activation::Relu {
            aclnn!(
                ctx,
                aclnnInplaceRelu,
                aclnnInplaceReluGetWorkspaceSize,
                y32.t
            )?;
        }
        if out_dtype != f32 {
            cast_into(&mut ctx, y32.t, out_dtype, yt)?;
        }
        y.dtype = out_dtype;
        saved_mean.dtype = f32;
        saved_invstd.dtype = f32;
        Ok(())
    }

    /// [`Backend::batch_norm_backward`](crate::backend::Backend::batch_norm_backward): the ReLU
    /// mask first when fused (`aclnnThresholdBackward(dy, y, 0)`: dy where y > 0), then
    /// `aclnnBatchNormBackward(training = true, outputMask = {input, weight, bias})` with the
    /// saved mean and invstd (running statistics are not used in training mode and are passed
    /// as NULL). Everything in fp32; `dx` is cast to fp16 in O2.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn bn_grad(
        &self,
        x: &AscendBuffer,
        xs: Shape4,
        dy: &AscendBuffer,
        y_relu: Option<&AscendBuffer>,
        gamma: &AscendBuffer,
        saved_mean: &AscendBuffer,
        saved_invstd: &AscendBuffer,
        dx: &mut AscendBuffer,
        dgamma: &mut AscendBuffer,
        dbeta: &mut AscendBuffer,
    ) -> Result<()> {
        values_per_channel("batch_norm_backward", xs)?;
        let c = xs.c;
        let len = xs.numel();
        check("batch_norm_backward x", x, len)?;
        check("batch_norm_backward dy", dy, len)?;
        check("batch_norm_backward dx", dx, len)?;
        if let Some(y) = y_relu {
            check("batch_norm_backward y", y, len)?;
        }
        for (what, b) in [
            ("gamma", gamma),
            ("saved_mean", saved_mean),
            ("saved_invstd", saved_invstd),
            ("dgamma", &*dgamma),
            ("dbeta", &*dbeta),
        ] {
            check(&format!("batch_norm_backward {what}"), b, c)?;
        }
        let f32 = DType::F32;
        let out_dtype = self.cd();
        let d = dims4(xs);
        let mut ctx = self.dev.enter()?;
        let xa = read_as(&mut ctx, x, &d, f32)?;
        let dya = read_as(&mut ctx, dy, &d, f32)?;
        let g = match y_relu {
            Some(y) => {
                let ya = read_as(&mut ctx, y, &d, f32)?;
                let masked = temp(&mut ctx, &d, f32)?;
                let zero = ctx.scalar(ScalarValue::F32(0.0))?;
                aclnn!(
                    ctx,
                    aclnnThresholdBackward,
                    aclnnThresholdBackwardGetWorkspaceSize,
                    dya.t,
                    ya.t,
                    zero,
                    masked.t
                )?;
                masked
            }
            None => dya,
        };
        let ga = read_as(&mut ctx, gamma, &[c], f32)?;
        let sm = read_as(&mut ctx, saved_mean, &[c], f32)?;
        let si = read_as(&mut ctx, saved_invstd, &[c], f32)?;
        let dxt = out_view(&mut ctx, dx, &d, out_dtype)?;
        let dx32 = if out_dtype == f32 {
            Arg { t: dxt, tmp: None }
        } else {
            temp(&mut ctx, &d, f32)?
        };
        let dgt = out_view(&mut ctx, dgamma, &[c], f32)?;
        let dbt = out_view(&mut ctx, dbeta, &[c], f32)?;
        let mask = ctx.bool_array(&[true, true, true])?;
        aclnn!(
            ctx,
            aclnnBatchNormBackward,
            aclnnBatchNormBackwardGetWorkspaceSize,
            g.t,
            xa.t,
            ga.t,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            sm.t,
            si.t,
            true,
            BN_EPS,
            mask,
            dx32.t,
            dgt,
            dbt
        )?;
        if out_dtype != f32 {
            cast_into(&mut ctx, dx32.t, out_dtype, dxt)?;
        }
        dx.dtype = out_dtype;
        dgamma.dtype = f32;
        dbeta.dtype = f32;
        Ok(())
    }
}
