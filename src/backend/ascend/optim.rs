//! MindSpore's `nn.Momentum` (`ApplyMomentum`) composed from aclnn's arithmetic (cann.md §2.3):
//! CANN has no aclnn ApplyMomentum, so each step of MindSpore's order of operations is one op on
//! the whole tensor.
use super::buffer::{read_as, temp, view, Arg, AscendBuffer};
use super::op::aclnn;
use super::tensor::{DType, ScalarValue};
use super::AscendBackend;
use crate::backend::MomentumParams;
use crate::{Error, Result};

/// [`Backend::momentum_update`](crate::backend::Backend::momentum_update) in MindSpore's order,
/// each step one aclnn op on the whole tensor:
/// `g = Add(grad, param, alpha = wd*ls)` (when `wd != 0`), `g *= 1/ls` (`InplaceMuls`, when
/// `ls != 1`), `moment *= momentum` (`InplaceMuls`), `moment += g` (`InplaceAdd`), then
/// `param += -lr * moment` (`InplaceAdd` with alpha), or with Nesterov `param += -lr * g`
/// and `param += -(momentum*lr) * moment`. All fp32.
pub(super) fn momentum_update(
    be: &AscendBackend,
    p: MomentumParams,
    param: &mut AscendBuffer,
    grad: &AscendBuffer,
    moment: &mut AscendBuffer,
    len: usize,
) -> Result<()> {
    p.check(param, grad, moment, len)?;
    let (lr, momentum, nesterov) = (p.lr, p.momentum, p.nesterov);
    if param.dtype != DType::F32 || moment.dtype != DType::F32 {
        return Err(Error::Invalid(
            "momentum_update: parameters and moments must hold fp32".into(),
        ));
    }
    if len == 0 {
        return Ok(());
    }
    let f32 = DType::F32;
    let wd_scaled = p.scaled_weight_decay();
    let inv_scale = p.inverse_loss_scale();
    let need_scale = p.unscales();
    let mut ctx = be.dev.enter()?;
    let pt = view(&mut ctx, param, &[len])?;
    let mt = view(&mut ctx, moment, &[len])?;
    let ga = read_as(&mut ctx, grad, &[len], f32)?;
    // g: the gradient itself when nothing modifies it, else a temporary.
    let g: Arg = if wd_scaled != 0.0 {
        let g = temp(&mut ctx, &[len], f32)?;
        let wd = ctx.scalar(ScalarValue::F32(wd_scaled))?;
        aclnn!(ctx, aclnnAdd, aclnnAddGetWorkspaceSize, ga.t, pt, wd, g.t)?;
        g
    } else if need_scale {
        let g = temp(&mut ctx, &[len], f32)?;
        aclnn!(
            ctx,
            aclnnInplaceCopy,
            aclnnInplaceCopyGetWorkspaceSize,
            g.t,
            ga.t
        )?;
        g
    } else {
        ga
    };
    if need_scale {
        let inv = ctx.scalar(ScalarValue::F32(inv_scale))?;
        aclnn!(
            ctx,
            aclnnInplaceMuls,
            aclnnInplaceMulsGetWorkspaceSize,
            g.t,
            inv
        )?;
    }
    let mu = ctx.scalar(ScalarValue::F32(momentum))?;
    aclnn!(
        ctx,
        aclnnInplaceMuls,
        aclnnInplaceMulsGetWorkspaceSize,
        mt,
        mu
    )?;
    let one = ctx.scalar(ScalarValue::F32(1.0))?;
    aclnn!(
        ctx,
        aclnnInplaceAdd,
        aclnnInplaceAddGetWorkspaceSize,
        mt,
        g.t,
        one
    )?;
    if nesterov {
        let a = ctx.scalar(ScalarValue::F32(-lr))?;
        aclnn!(
            ctx,
            aclnnInplaceAdd,
            aclnnInplaceAddGetWorkspaceSize,
            pt,
            g.t,
            a
        )?;
        let b = ctx.scalar(ScalarValue::F32(-(momentum * lr)))?;
        aclnn!(
            ctx,
            aclnnInplaceAdd,
            aclnnInplaceAddGetWorkspaceSize,
            pt,
            mt,
            b
        )
    } else {
        let a = ctx.scalar(ScalarValue::F32(-lr))?;
        aclnn!(
            ctx,
            aclnnInplaceAdd,
            aclnnInplaceAddGetWorkspaceSize,
            pt,
            mt,
            a
        )
    }
}
