//! Optimizer steps: the fused SGD of `aclnnFusedSgd` (PyTorch's `torch.optim.SGD` semantics).
//!
//! Formula (`hicann/ops-nn@e5c3fa9327ea:optim/fused_sgd/docs/aclnnFusedSgd.md:29-58`), for one
//! parameter θ with gradient g, optional momentum buffer v and optional gradient scale s:
//!
//! ```text
//! g̃ = g / s (s given) else g          ĝ = -g̃ (maximize) else g̃
//! ḡ = ĝ + weightDecay·θ
//! v' = ḡ (first step) else μ·v + (1 - dampening)·ḡ           (with a buffer)
//! g_final = ḡ + μ·v' (nesterov) else v' (with a buffer) else ḡ
//! θ' = θ - lr·g_final                  and the gradient is overwritten with g̃
//! ```
//!
//! Arithmetic follows the vendor kernel (`optim/fused_sgd/op_kernel/fused_sgd_f32.h`,
//! `fused_sgd_f16_bf16.h`): everything in `f32` (FLOAT16/BFLOAT16 tensors are widened first and
//! rounded on the way out), the scale applied as a multiplication by `1/s`, one operation per
//! step in the order above.

/// The hyper-parameters of one `aclnnFusedSgd` call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdParams {
    /// L2 weight decay.
    pub weight_decay: f32,
    /// Momentum μ.
    pub momentum: f32,
    /// Learning rate.
    pub lr: f32,
    /// Dampening of the gradient in the momentum update.
    pub dampening: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// First step: the momentum buffer is set to the gradient.
    pub first_step: bool,
}

/// One fused SGD step over a parameter (in place): `param`, `grad` (overwritten with the unscaled
/// gradient when `scale` is given) and the momentum buffer `buf` (when given), all of one length.
pub fn fused_sgd(
    param: &mut [f32],
    grad: &mut [f32],
    mut buf: Option<&mut [f32]>,
    scale: Option<f32>,
    p: SgdParams,
) -> Result<(), String> {
    let n = param.len();
    if grad.len() != n || buf.as_ref().is_some_and(|b| b.len() != n) {
        return Err(format!(
            "fused_sgd: param has {n} elements, grad {}, buffer {:?}",
            grad.len(),
            buf.as_ref().map(|b| b.len())
        ));
    }
    let inv = scale.map(|s| 1.0f32 / s);
    for i in 0..n {
        let mut g = grad[i];
        if let Some(inv) = inv {
            g *= inv;
            grad[i] = g;
        }
        if p.maximize {
            g = -g;
        }
        if p.weight_decay != 0.0 {
            g += p.weight_decay * param[i];
        }
        if let Some(b) = buf.as_deref_mut() {
            let v = if p.first_step {
                g
            } else {
                p.momentum * b[i] + (1.0 - p.dampening) * g
            };
            b[i] = v;
            g = if p.nesterov { g + p.momentum * v } else { v };
        }
        param[i] -= p.lr * g;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SgdParams {
        SgdParams {
            weight_decay: 0.0,
            momentum: 0.0,
            lr: 0.5,
            dampening: 0.0,
            nesterov: false,
            maximize: false,
            first_step: false,
        }
    }

    #[test]
    fn plain_sgd_and_scale() {
        let (mut w, mut g) = ([1.0f32, 2.0], [4.0f32, -8.0]);
        fused_sgd(&mut w, &mut g, None, Some(4.0), params()).unwrap();
        assert_eq!(g, [1.0, -2.0], "the gradient is overwritten unscaled");
        assert_eq!(w, [0.5, 3.0]);
        assert!(fused_sgd(&mut w, &mut [1.0], None, None, params()).is_err());
    }

    #[test]
    fn momentum_weight_decay_nesterov_maximize() {
        let p = SgdParams {
            weight_decay: 0.1,
            momentum: 0.9,
            lr: 0.1,
            dampening: 0.5,
            ..params()
        };
        // First step: v = g + wd*w = 1 + 0.2 = 1.2; w = 2 - 0.1*1.2 = 1.88.
        let (mut w, mut g, mut v) = ([2.0f32], [1.0f32], [7.0f32]);
        fused_sgd(
            &mut w,
            &mut g,
            Some(&mut v),
            None,
            SgdParams {
                first_step: true,
                ..p
            },
        )
        .unwrap();
        assert_eq!((w[0], v[0]), (1.88, 1.2));
        // Next: ḡ = 1 + 0.188 = 1.188; v = 0.9*1.2 + 0.5*1.188 = 1.674; w = 1.88 - 0.1674.
        fused_sgd(&mut w, &mut g, Some(&mut v), None, p).unwrap();
        assert!((v[0] - 1.674).abs() < 1e-6 && (w[0] - 1.7126).abs() < 1e-6);
        // Nesterov, no dampening, maximize: ĝ = -1, ḡ = -1 + 0.1*1 = -0.9, v = 0.9*1 - 0.9 = 0,
        // g_final = ḡ + 0.9*v = -0.9, w = 1 + 0.09.
        let q = SgdParams {
            nesterov: true,
            maximize: true,
            dampening: 0.0,
            ..p
        };
        let (mut w, mut g, mut v) = ([1.0f32], [1.0f32], [1.0f32]);
        fused_sgd(&mut w, &mut g, Some(&mut v), None, q).unwrap();
        assert!(
            v[0].abs() < 1e-7 && (w[0] - 1.09).abs() < 1e-6,
            "{v:?} {w:?}"
        );
    }
}
