//! Safe wrappers of the training kernels of `senet_train_kernels.h` (`batch_norm_train.c`,
//! `backward_elementwise.c`): BatchNorm statistics and gradients, element-wise backwards, the
//! Momentum step; each checks slice lengths before calling its kernel; reductions return f64.

mod train_ffi {
    extern "C" {
        pub fn senet_sum_f64(x: *const f32, len: usize) -> f64;
        pub fn senet_sum_sq_dev_f64(x: *const f32, len: usize, mean: f64) -> f64;
        pub fn senet_bn_apply_f32(
            x: *const f32,
            len: usize,
            mean: f32,
            scale: f32,
            shift: f32,
            relu: i32,
            y: *mut f32,
        );
        pub fn senet_bn_bwd_reduce_f64(
            x: *const f32,
            dy: *const f32,
            mask: *const f32,
            len: usize,
            mean: f32,
            sums: *mut f64,
        );
        pub fn senet_bn_bwd_dx_f32(
            x: *const f32,
            dy: *const f32,
            mask: *const f32,
            len: usize,
            mean: f32,
            a: f32,
            b: f32,
            c: f32,
            dx: *mut f32,
        );
        pub fn senet_relu_backward_f32(y: *const f32, dy: *mut f32, len: usize);
        pub fn senet_sigmoid_backward_f32(s: *const f32, dy: *mut f32, len: usize);
        pub fn senet_se_scale_add_relu_backward_f32(
            x: *const f32,
            gate: f32,
            out: *const f32,
            dout: *const f32,
            len: usize,
            dx: *mut f32,
            dshortcut: *mut f32,
        ) -> f64;
        pub fn senet_momentum_f32(
            param: *mut f32,
            grad: *const f32,
            moment: *mut f32,
            len: usize,
            lr: f32,
            momentum: f32,
            wd_scaled: f32,
            inv_scale: f32,
            need_scale: i32,
            nesterov: i32,
        );
    }
}

/// Sum of `x` in f64 (fixed summation order: deterministic).
pub fn sum_f64(x: &[f32]) -> f64 {
    // SAFETY: the kernel reads exactly x.len() values.
    unsafe { train_ffi::senet_sum_f64(x.as_ptr(), x.len()) }
}

/// Sum of `(x - mean)^2` in f64 (fixed summation order).
pub fn sum_sq_dev_f64(x: &[f32], mean: f64) -> f64 {
    // SAFETY: the kernel reads exactly x.len() values.
    unsafe { train_ffi::senet_sum_sq_dev_f64(x.as_ptr(), x.len(), mean) }
}

/// `y = (x - mean) * scale + shift`, then ReLU if `relu`, over `x.len()` values.
pub fn bn_apply(x: &[f32], mean: f32, scale: f32, shift: f32, relu: bool, y: &mut [f32]) {
    assert!(y.len() >= x.len());
    // SAFETY: length checked above.
    unsafe {
        train_ffi::senet_bn_apply_f32(
            x.as_ptr(),
            x.len(),
            mean,
            scale,
            shift,
            relu as i32,
            y.as_mut_ptr(),
        )
    }
}

/// BatchNorm backward reductions over one plane, added to `sums` (f64): `sums[0] += Σ g`,
/// `sums[1] += Σ g * (x - mean)` with `g = dy`, or `dy` masked by `mask > 0` when given.
pub fn bn_bwd_reduce(x: &[f32], dy: &[f32], mask: Option<&[f32]>, mean: f32, sums: &mut [f64; 2]) {
    let len = x.len();
    assert!(dy.len() >= len && mask.is_none_or(|m| m.len() >= len));
    let mp = mask.map_or(std::ptr::null(), |m| m.as_ptr());
    // SAFETY: lengths checked above; a null mask is handled by the kernel.
    unsafe {
        train_ffi::senet_bn_bwd_reduce_f64(
            x.as_ptr(),
            dy.as_ptr(),
            mp,
            len,
            mean,
            sums.as_mut_ptr(),
        )
    }
}

/// The per-channel coefficients of the BatchNorm input gradient
/// `dx = a * g + b * (x - mean) + c`.
#[derive(Debug, Clone, Copy)]
pub struct BnDx {
    /// The mean the input is centred on.
    pub mean: f32,
    /// Factor of the (masked) output gradient.
    pub a: f32,
    /// Factor of the centred input.
    pub b: f32,
    /// Constant term.
    pub c: f32,
}

/// BatchNorm input gradient over one plane: `dx = a * g + b * (x - mean) + c` with the
/// coefficients `k` (`g` as in [`bn_bwd_reduce`]).
pub fn bn_bwd_dx(x: &[f32], dy: &[f32], mask: Option<&[f32]>, k: BnDx, dx: &mut [f32]) {
    let len = x.len();
    assert!(dy.len() >= len && dx.len() >= len && mask.is_none_or(|m| m.len() >= len));
    let mp = mask.map_or(std::ptr::null(), |m| m.as_ptr());
    // SAFETY: lengths checked above; a null mask is handled by the kernel.
    unsafe {
        train_ffi::senet_bn_bwd_dx_f32(
            x.as_ptr(),
            dy.as_ptr(),
            mp,
            len,
            k.mean,
            k.a,
            k.b,
            k.c,
            dx.as_mut_ptr(),
        )
    }
}

/// `dy *= (y > 0)` over `dy.len()` values.
pub fn relu_backward(y: &[f32], dy: &mut [f32]) {
    assert!(y.len() >= dy.len());
    // SAFETY: length checked above.
    unsafe { train_ffi::senet_relu_backward_f32(y.as_ptr(), dy.as_mut_ptr(), dy.len()) }
}

/// `dy *= s * (1 - s)` over `dy.len()` values.
pub fn sigmoid_backward(s: &[f32], dy: &mut [f32]) {
    assert!(s.len() >= dy.len());
    // SAFETY: length checked above.
    unsafe { train_ffi::senet_sigmoid_backward_f32(s.as_ptr(), dy.as_mut_ptr(), dy.len()) }
}

/// One plane of the backward of `out = relu(x * gate + shortcut)`: writes `dx` and `dshortcut`
/// over `x.len()` values, returns the gate gradient `Σ d * x` (f64).
pub fn se_scale_add_relu_backward(
    x: &[f32],
    gate: f32,
    out: &[f32],
    dout: &[f32],
    dx: &mut [f32],
    dshortcut: &mut [f32],
) -> f64 {
    let len = x.len();
    assert!(out.len() >= len && dout.len() >= len && dx.len() >= len && dshortcut.len() >= len);
    // SAFETY: lengths checked above.
    unsafe {
        train_ffi::senet_se_scale_add_relu_backward_f32(
            x.as_ptr(),
            gate,
            out.as_ptr(),
            dout.as_ptr(),
            len,
            dx.as_mut_ptr(),
            dshortcut.as_mut_ptr(),
        )
    }
}

/// Hyper-parameters of one Momentum step, already in the kernel's form.
#[derive(Debug, Clone, Copy)]
pub struct MomentumStep {
    /// Learning rate of this step.
    pub lr: f32,
    /// Momentum coefficient.
    pub momentum: f32,
    /// Weight decay multiplied by the loss scale (MindSpore pre-scales it); 0 = no decay.
    pub wd_scaled: f32,
    /// `1 / loss_scale` as f32.
    pub inv_scale: f32,
    /// Whether the gradient is multiplied by `inv_scale` (loss scale != 1).
    pub need_scale: bool,
    /// Nesterov update.
    pub nesterov: bool,
}

/// MindSpore `nn.Momentum` over `param.len()` values (see `senet_train_kernels.h`).
pub fn momentum(param: &mut [f32], grad: &[f32], moment: &mut [f32], s: MomentumStep) {
    let len = param.len();
    assert!(grad.len() >= len && moment.len() >= len);
    // SAFETY: lengths checked above.
    unsafe {
        train_ffi::senet_momentum_f32(
            param.as_mut_ptr(),
            grad.as_ptr(),
            moment.as_mut_ptr(),
            len,
            s.lr,
            s.momentum,
            s.wd_scaled,
            s.inv_scale,
            s.need_scale as i32,
            s.nesterov as i32,
        )
    }
}
