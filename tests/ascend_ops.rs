//! Every op of the Ascend backend against the CPU backend on the CANN emulator
//! (`sys/emulator`), and the backend's buffers.
mod common;

use common::emu::{fp32, lock, values};
use senet::backend::ascend;
use senet::backend::cpu::CpuBackend;
use senet::backend::{
    Activation, Backend, BatchNormBackward, BatchNormForward, BatchNormGrads, BatchStats,
    Conv2dForward, Conv2dParams, Conv2dShape, CrossEntropyParams, LinearForward, LinearGrads,
    LinearShape, MaxPool2dParams, MomentumParams, MomentumSlot, MovingStats, SavedStats, SeGrads,
    Shape4,
};
use senet::Error;

// ---- every op against the CPU backend ----------------------------------------------------

/// Runs every op of the trait on small deterministic inputs and returns each result by name.
/// With `abs`, the inputs of the cube ops (convolutions, Dense) are replaced by their absolute
/// values and their activations dropped: run on the CPU, that gives each cube result's
/// magnitude `M = Σ |a_i| |b_i|` (the error bounds of [`every_op_matches_the_cpu_backend`]).
fn run_ops<B: Backend>(be: &B, abs: bool) -> Vec<(String, Vec<f32>)> {
    let values = |n: usize, seed: u64| {
        let mut v = values(n, seed);
        if abs {
            v.iter_mut().for_each(|x| *x = x.abs());
        }
        v
    };
    let act_of = |a: Activation| if abs { Activation::None } else { a };
    let mut out = Vec::new();
    let get = |b: &B::Buffer, n: usize| {
        let mut v = vec![0.0; n];
        be.download(b, &mut v).unwrap();
        v
    };
    // Convolutions: dense 3x3/2 with bias + ReLU, grouped 3x3 with Sigmoid, 1x1.
    let cases = [
        (
            Shape4::new(2, 4, 9, 8),
            [6, 4, 3, 3],
            2,
            1,
            1,
            Activation::Relu,
        ),
        (
            Shape4::new(2, 4, 7, 7),
            [8, 2, 3, 3],
            1,
            1,
            2,
            Activation::Sigmoid,
        ),
        (
            Shape4::new(1, 6, 5, 6),
            [3, 6, 1, 1],
            2,
            0,
            1,
            Activation::None,
        ),
        // The stem's geometry: 7x7, stride 2, padding 3.
        (
            Shape4::new(2, 3, 16, 16),
            [4, 3, 7, 7],
            2,
            3,
            1,
            Activation::Relu,
        ),
    ];
    for (i, &(xs, ws, stride, padding, groups, act)) in cases.iter().enumerate() {
        let p = Conv2dParams {
            stride,
            padding,
            groups,
        };
        let x = be.upload(&values(xs.numel(), 10 + i as u64)).unwrap();
        let w = be
            .upload(&values(ws.iter().product(), 20 + i as u64))
            .unwrap();
        let bias = be.upload(&values(ws[0], 30 + i as u64)).unwrap();
        let (oh, ow) = p.out_hw(xs.h, xs.w, ws[2], ws[3]);
        let ys = Shape4::new(xs.n, ws[0], oh, ow);
        let mut y = be.alloc(ys.numel()).unwrap();
        let conv = Conv2dShape { xs, w_shape: ws, p };
        let f = Conv2dForward {
            shape: conv,
            w: &w,
            bias: Some(&bias),
            act: act_of(act),
            prepared: None,
        };
        let got = be.conv2d(f, &x, &mut y).unwrap();
        assert_eq!(got, ys);
        out.push((format!("conv{i}"), get(&y, ys.numel())));
        let dy = be.upload(&values(ys.numel(), 40 + i as u64)).unwrap();
        let mut dx = be.alloc(xs.numel()).unwrap();
        be.conv2d_backward_data(conv, &w, &dy, ys, &mut dx).unwrap();
        out.push((format!("conv{i} dx"), get(&dx, xs.numel())));
        let wn: usize = ws.iter().product();
        let mut dw = be.upload(&values(wn, 50 + i as u64)).unwrap();
        be.conv2d_backward_filter(conv, &x, &dy, ys, &mut dw, i == 1)
            .unwrap();
        out.push((format!("conv{i} dw"), get(&dw, wn)));
    }
    // The stem's max pools (3x3, stride 2: MindCV's 'same', timm resnet.py's padding 1, timm
    // senet.py's ceil mode), even and odd planes, forward and backward (distinct values: no
    // ties).
    let pools = [
        ("same", MaxPool2dParams::same(3, 2)),
        ("pad1", MaxPool2dParams::symmetric(3, 2, 1, false)),
        ("ceil", MaxPool2dParams::symmetric(3, 2, 0, true)),
    ];
    for (i, xs) in [Shape4::new(2, 3, 8, 7), Shape4::new(1, 2, 5, 6)]
        .into_iter()
        .enumerate()
    {
        let xv: Vec<f32> = (0..xs.numel())
            .map(|j| ((j * 7919) % 1009) as f32 / 1009.0 - 0.3)
            .collect();
        let x = be.upload(&xv).unwrap();
        for (name, pool) in pools {
            let ys = pool.geometry(xs).unwrap().ys;
            let mut y = be.alloc(ys.numel()).unwrap();
            assert_eq!(be.max_pool2d(pool, &x, xs, &mut y).unwrap(), ys);
            out.push((format!("maxpool {name} {i}"), get(&y, ys.numel())));
            let dy = be.upload(&values(ys.numel(), 60 + i as u64)).unwrap();
            let mut dx = be.alloc(xs.numel()).unwrap();
            be.max_pool2d_backward(pool, &x, xs, &dy, &mut dx).unwrap();
            out.push((format!("maxpool {name} {i} dx"), get(&dx, xs.numel())));
        }
    }
    // Global average pool and its backward.
    let xs = Shape4::new(2, 5, 4, 3);
    let x = be.upload(&values(xs.numel(), 70)).unwrap();
    let mut y = be.alloc(10).unwrap();
    be.global_avg_pool(&x, xs, &mut y).unwrap();
    out.push(("gap".into(), get(&y, 10)));
    let dy = be.upload(&values(10, 71)).unwrap();
    let mut dx = be.alloc(xs.numel()).unwrap();
    be.global_avg_pool_backward(&dy, xs, &mut dx).unwrap();
    out.push(("gap dx".into(), get(&dx, xs.numel())));
    // Dense forward (each activation) and backward.
    let (n, fin, fout) = (3, 7, 5);
    let x = be.upload(&values(n * fin, 80)).unwrap();
    let w = be.upload(&values(fout * fin, 81)).unwrap();
    let b = be.upload(&values(fout, 82)).unwrap();
    let shape = LinearShape {
        n,
        in_features: fin,
        out_features: fout,
    };
    for act in [Activation::None, Activation::Relu, Activation::Sigmoid] {
        let mut y = be.alloc(n * fout).unwrap();
        let f = LinearForward {
            shape,
            w: &w,
            b: &b,
            act: act_of(act),
        };
        be.linear(f, &x, &mut y).unwrap();
        out.push((format!("linear {act:?}"), get(&y, n * fout)));
    }
    let dy = be.upload(&values(n * fout, 83)).unwrap();
    let (mut dx, mut dw, mut db) = (
        be.alloc(n * fin).unwrap(),
        be.alloc(fout * fin).unwrap(),
        be.alloc(fout).unwrap(),
    );
    let grads = LinearGrads {
        dx: Some(&mut dx),
        dw: &mut dw,
        db: &mut db,
    };
    be.linear_backward(shape, &x, &w, &dy, grads).unwrap();
    out.push(("linear dx".into(), get(&dx, n * fin)));
    out.push(("linear dw".into(), get(&dw, fout * fin)));
    out.push(("linear db".into(), get(&db, fout)));
    // SE scale + add + ReLU and its backward.
    let xs = Shape4::new(2, 3, 4, 5);
    let len = xs.numel();
    let xv = values(len, 90);
    let gate = be.upload(&values(6, 91)).unwrap();
    let sc = be.upload(&values(len, 92)).unwrap();
    let x = be.upload(&xv).unwrap();
    let mut o = be.upload(&xv).unwrap();
    be.se_scale_add_relu(&mut o, xs, &gate, &sc).unwrap();
    out.push(("se".into(), get(&o, len)));
    let mut o_into = be.alloc(len).unwrap();
    be.se_scale_add_relu_into(&x, xs, &gate, &sc, &mut o_into)
        .unwrap();
    out.push(("se into".into(), get(&o_into, len)));
    let dout = be.upload(&values(len, 93)).unwrap();
    let (mut dx, mut dg, mut ds) = (
        be.alloc(len).unwrap(),
        be.alloc(6).unwrap(),
        be.alloc(len).unwrap(),
    );
    be.se_scale_add_relu_backward(
        &x,
        xs,
        &gate,
        &o,
        &dout,
        SeGrads {
            dx: &mut dx,
            dgate: &mut dg,
            dshortcut: &mut ds,
        },
    )
    .unwrap();
    out.push(("se dx".into(), get(&dx, len)));
    out.push(("se dgate".into(), get(&dg, 6)));
    out.push(("se dshortcut".into(), get(&ds, len)));
    // BatchNorm train (with and without ReLU) and backward.
    let xs = Shape4::new(3, 4, 3, 5);
    let len = xs.numel();
    let x = be.upload(&values(len, 100)).unwrap();
    let gamma = be.upload(&values(4, 101)).unwrap();
    let beta = be.upload(&values(4, 102)).unwrap();
    for (i, act) in [Activation::None, Activation::Relu].into_iter().enumerate() {
        let mut mm = be.upload(&values(4, 103)).unwrap();
        let mut mv = be.upload(&[0.5, 1.0, 1.5, 2.0]).unwrap();
        let (mut sm, mut si, mut y) = (
            be.alloc(4).unwrap(),
            be.alloc(4).unwrap(),
            be.alloc(len).unwrap(),
        );
        be.batch_norm_train(
            BatchNormForward {
                xs,
                gamma: &gamma,
                beta: &beta,
                act,
            },
            &x,
            BatchStats {
                eps: 1e-5,
                momentum: 0.9,
                moving_mean: &mut mm,
                moving_var: &mut mv,
                saved_mean: &mut sm,
                saved_invstd: &mut si,
            },
            &mut y,
        )
        .unwrap();
        out.push((format!("bn{i} y"), get(&y, len)));
        out.push((format!("bn{i} moving"), [get(&mm, 4), get(&mv, 4)].concat()));
        // The second saved statistic is backend-defined (the CPU's invstd, aclnn's saveInvstd:
        // the variance on 910/A2/A3): it is compared through the backward below.
        out.push((format!("bn{i} saved mean"), get(&sm, 4)));
        let dy = be.upload(&values(len, 104)).unwrap();
        let (mut dx, mut dgm, mut dbt) = (
            be.alloc(len).unwrap(),
            be.alloc(4).unwrap(),
            be.alloc(4).unwrap(),
        );
        let y_relu = (act == Activation::Relu).then_some(&y);
        be.batch_norm_backward(
            BatchNormBackward {
                xs,
                x: &x,
                dy: &dy,
                y_relu,
                gamma: &gamma,
            },
            SavedStats {
                mean: &sm,
                invstd: &si,
            },
            BatchNormGrads {
                dx: &mut dx,
                dgamma: &mut dgm,
                dbeta: &mut dbt,
            },
        )
        .unwrap();
        out.push((format!("bn{i} dx"), get(&dx, len)));
        out.push((
            format!("bn{i} dgamma dbeta"),
            [get(&dgm, 4), get(&dbt, 4)].concat(),
        ));
    }
    // Frozen BatchNorm (moving statistics, MindSpore use_batch_statistics=False) and backward.
    let mm = be.upload(&values(4, 105)).unwrap();
    let mv = be.upload(&[0.5, 1.0, 1.5, 2.0]).unwrap();
    for (i, act) in [Activation::None, Activation::Relu].into_iter().enumerate() {
        let mut y = be.alloc(len).unwrap();
        be.batch_norm_frozen(
            BatchNormForward {
                xs,
                gamma: &gamma,
                beta: &beta,
                act,
            },
            &x,
            MovingStats {
                mean: &mm,
                var: &mv,
                eps: 1e-5,
            },
            &mut y,
        )
        .unwrap();
        out.push((format!("frozen bn{i} y"), get(&y, len)));
        out.push((
            format!("frozen bn{i} stats kept"),
            [get(&mm, 4), get(&mv, 4)].concat(),
        ));
        let dy = be.upload(&values(len, 106)).unwrap();
        let (mut dx, mut dgm, mut dbt) = (
            be.alloc(len).unwrap(),
            be.alloc(4).unwrap(),
            be.alloc(4).unwrap(),
        );
        let y_relu = (act == Activation::Relu).then_some(&y);
        be.batch_norm_frozen_backward(
            BatchNormBackward {
                xs,
                x: &x,
                dy: &dy,
                y_relu,
                gamma: &gamma,
            },
            MovingStats {
                mean: &mm,
                var: &mv,
                eps: 1e-5,
            },
            BatchNormGrads {
                dx: &mut dx,
                dgamma: &mut dgm,
                dbeta: &mut dbt,
            },
        )
        .unwrap();
        out.push((format!("frozen bn{i} dx"), get(&dx, len)));
        out.push((
            format!("frozen bn{i} dgamma dbeta"),
            [get(&dgm, 4), get(&dbt, 4)].concat(),
        ));
    }
    // ReLU / Sigmoid backward, add_assign, axpby, scale, copy, sum_squares.
    let len = 37;
    let yv: Vec<f32> = values(len, 110).iter().map(|v| v.max(0.0)).collect();
    let y = be.upload(&yv).unwrap();
    let mut dy = be.upload(&values(len, 111)).unwrap();
    be.relu_backward(&y, &mut dy, len).unwrap();
    out.push(("relu dy".into(), get(&dy, len)));
    let s = be
        .upload(
            &values(len, 112)
                .iter()
                .map(|v| 0.5 + 0.4 * v)
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let mut dy = be.upload(&values(len, 113)).unwrap();
    let mut dx_into = be.alloc(len).unwrap();
    be.sigmoid_backward_into(&s, &dy, &mut dx_into, len)
        .unwrap();
    out.push(("sigmoid into".into(), get(&dx_into, len)));
    be.sigmoid_backward(&s, &mut dy, len).unwrap();
    out.push(("sigmoid dy".into(), get(&dy, len)));
    let mut a = be.upload(&values(len, 114)).unwrap();
    let b = be.upload(&values(len, 115)).unwrap();
    be.add_assign(&mut a, &b, len).unwrap();
    out.push(("add_assign".into(), get(&a, len)));
    be.axpby(&mut a, &b, len, 0.75, -1.5).unwrap();
    out.push(("axpby".into(), get(&a, len)));
    be.scale(&mut a, len - 3, 3.0).unwrap();
    out.push(("scale".into(), get(&a, len)));
    let mut c = be.alloc(len).unwrap();
    be.copy(&a, &mut c, len - 1).unwrap();
    out.push(("copy".into(), get(&c, len)));
    let big = be.upload(&values(10_000, 116)).unwrap();
    let ss = be.sum_squares(&big, 9_999).unwrap();
    out.push(("sum_squares".into(), vec![ss as f32]));
    // Loss.
    let (n, classes) = (3, 6);
    let z = be.upload(&values(n * classes, 120)).unwrap();
    let mut dz = be.alloc(n * classes).unwrap();
    let loss = be
        .softmax_cross_entropy(
            CrossEntropyParams {
                n,
                classes,
                label_smoothing: 0.1,
                scale: 8.0,
            },
            &z,
            &[2, 0, 5],
            &mut dz,
        )
        .unwrap();
    out.push(("loss".into(), vec![loss as f32]));
    out.push(("dlogits".into(), get(&dz, n * classes)));
    // The same with the logits read back in the same transfer (Ascend: one read-back block).
    let mut host_z = vec![0.0; n * classes];
    let p = CrossEntropyParams {
        n,
        classes,
        label_smoothing: 0.1,
        scale: 8.0,
    };
    let loss2 = be
        .softmax_cross_entropy_and_logits(p, &z, &[2, 0, 5], &mut dz, &mut host_z)
        .unwrap();
    assert_eq!(
        host_z,
        get(&z, n * classes),
        "the logits read back are the logits"
    );
    assert!(matches!(
        be.softmax_cross_entropy_and_logits(p, &z, &[2, 0, 5], &mut dz, &mut host_z[1..]),
        Err(Error::Shape(_))
    ));
    out.push(("loss_and_logits".into(), vec![loss2 as f32]));
    out.push(("dlogits_and_logits".into(), get(&dz, n * classes)));
    // Momentum: plain, decay + loss scale, Nesterov.
    for (i, (wd, ls, nesterov)) in [(0.0, 1.0, false), (1e-2, 1024.0, false), (1e-3, 1.0, true)]
        .into_iter()
        .enumerate()
    {
        let mut p = be.upload(&values(len, 130)).unwrap();
        let g = be.upload(&values(len, 131)).unwrap();
        let mut m = be.upload(&values(len, 132)).unwrap();
        be.momentum_update(
            MomentumParams {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: wd,
                loss_scale: ls,
                nesterov,
            },
            &mut p,
            &g,
            &mut m,
            len,
        )
        .unwrap();
        out.push((
            format!("momentum{i}"),
            [get(&p, len), get(&m, len)].concat(),
        ));
    }
    out
}

/// Unit roundoff of FLOAT (`u = 2^-24`).
const U32: f64 = 1.0 / 16_777_216.0;
/// Unit roundoff of the cube's operands for a FLOAT convolution on the emulated A2: HFLOAT32
/// (11 mantissa bits, `u = 2^-12`), which A2/A3 compute FLOAT convolutions in (KEEP_DTYPE is
/// unsupported there, aclnnConvolution.md:436; torch_npu's default is USE_HF32).
const U_CONV: f64 = 1.0 / 4096.0;
/// Unit roundoff of the operands of a FLOAT matrix product on A2 (KEEP_DTYPE: FLOAT itself,
/// the products rounded to FLOAT, counted in `gamma`).
const U_MM: f64 = 0.0;
/// The longest dot product of any cube op above: the stem case's data gradient, 4 output
/// channels x 7 x 7 taps.
const K_MAX: f64 = 196.0;

/// `gamma_k = k u / (1 - k u)`: the bound on the relative error of a k-term dot product
/// accumulated in FLOAT (products and sums each rounded), `|fl(Σ a b) - Σ a b| <= gamma_k Σ|a b|`.
fn gamma(k: f64) -> f64 {
    k * U32 / (1.0 - k * U32)
}

/// The bound on |ascend - cpu| for element `j` of the op `name`, or `None` for the ops that are
/// not the cube's.
///
/// A cube op rounds both operands to its precision (relative error <= u each, so each product
/// is off by at most (2u + u^2)|a b|), multiplies exactly and accumulates in FLOAT: |error| <=
/// (2u + u^2 + gamma_k) M with M = Σ|a||b| (`mag`); the CPU backend's FLOAT sums add up to
/// gamma_k M of their own. The bias add and the activation (1-Lipschitz) round once more on
/// each side: 2 u32 |c| each.
fn cube_bound(name: &str, mag: f32, c: f32) -> Option<f64> {
    let u = if name.starts_with("conv") {
        U_CONV
    } else if name.starts_with("linear") {
        U_MM
    } else {
        return None;
    };
    Some((2.0 * u + u * u + 2.0 * gamma(K_MAX)) * f64::from(mag) + 4.0 * U32 * f64::from(c.abs()))
}

#[test]
fn every_op_matches_the_cpu_backend() {
    let _g = lock();
    let cpu_be = CpuBackend::new(1).unwrap();
    let cpu = run_ops(&cpu_be, false);
    let mag = run_ops(&cpu_be, true);
    let npu = run_ops(&fp32(), false);
    assert_eq!(cpu.len(), npu.len());
    for (((name, c), (name2, a)), (_, m)) in cpu.iter().zip(&npu).zip(&mag) {
        assert_eq!(name, name2);
        let scale = c.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (j, ((cv, av), mv)) in c.iter().zip(a).zip(m).enumerate() {
            let err = f64::from((av - cv).abs());
            // The other ops compute in FLOAT (or wider) on both sides; their longest chain
            // (BatchNorm's backward: a mean, a variance, a square root and 4 products over
            // reductions of at most 60 values) stays within ~gamma_60 + 20u = 80u of the
            // largest value; 2e-5 = 335u bounds that with room for the CPU's different
            // summation order.
            let bound = cube_bound(name, *mv, *cv).unwrap_or(2e-5 * f64::from(scale));
            assert!(
                err <= bound,
                "{name}[{j}]: |ascend - cpu| = {err:e} > bound {bound:e}\ncpu    {c:?}\nascend {a:?}"
            );
        }
    }
}

#[test]
fn buffers_keep_their_values_and_sizes() {
    let _g = lock();
    let be = fp32();
    let v = values(1000, 1);
    let mut b = be.upload(&v).unwrap();
    let mut back = vec![0.0; 1000];
    be.download(&b, &mut back).unwrap();
    assert_eq!(back, v);
    be.write(&mut b, &[1.0, 2.0]).unwrap();
    be.download(&b, &mut back[..3]).unwrap();
    assert_eq!(&back[..3], &[1.0, 2.0, v[2]]);
    let z = be.alloc(77).unwrap();
    let mut zz = vec![1.0; 77];
    be.download(&z, &mut zz).unwrap();
    assert!(zz.iter().all(|&x| x == 0.0));
    let err = be.download(&z, &mut vec![0.0; 78]).unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err}");
    // Device addresses are 64-byte aligned (cann.md §1.3).
    assert_eq!(z.device_ptr() as usize % 64, 0);
    // A buffer of another backend (another context and stream) is refused.
    let other = fp32();
    let mut foreign = other.upload(&[1.0; 8]).unwrap();
    let err = be.scale(&mut foreign, 8, 2.0).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    let err = be.download(&foreign, &mut [0.0; 8]).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    // Events time the stream's work.
    let (e0, e1) = (be.event().unwrap(), be.event().unwrap());
    be.record(&e0).unwrap();
    be.scale(&mut b, 1000, 2.0).unwrap();
    be.record(&e1).unwrap();
    e1.synchronize().unwrap();
    let ms = ascend::Event::elapsed_ms(&e0, &e1).unwrap();
    assert!(ms >= 0.0 && ms.is_finite(), "{ms}");
    // Another thread may use the backend (it makes the context current there).
    std::thread::scope(|s| {
        s.spawn(|| {
            let t = be.upload(&[3.0, 4.0]).unwrap();
            let mut o = [0.0; 2];
            be.download(&t, &mut o).unwrap();
            assert_eq!(o, [3.0, 4.0]);
        });
    });
}

// ---- the fused optimizer ---------------------------------------------------------------------

/// On the emulated A2 a parameter group is one `aclnnFusedSgd`; it must give the per-parameter
/// path's MindSpore Momentum (weight decay added to the scaled gradient, the loss scale divided
/// out, Nesterov) to FLOAT rounding, and leave the unscaled gradient behind.
///
/// Bound: each path computes `g' = g/s + wd θ`, `v' = μ v + g'`, `θ' = θ - lr (v' or g' + μ v')`
/// in at most 5 FLOAT roundings (s = 1024 is a power of two: `1/s` and `g/s` are exact), each off
/// by at most u = 2^-24 of the magnitude `M_v = |g|/s + wd |θ| + μ |v|` it rounds, so the two
/// paths' `v'` differ by at most 2 · 5u M_v and their `θ'` by 2 · 5u (|θ| + lr (1 + μ) M_v).
#[test]
fn fused_sgd_group_equals_the_per_parameter_momentum() {
    let _g = lock();
    let be = fp32();
    let fused_before = common::emu::control().calls("aclnnFusedSgd");
    let lens = [1usize, 37, 300];
    let (lr, mu) = (0.1f32, 0.9f32);
    let u = 1.0 / 16_777_216.0f64;
    for (case, (wd, ls, nesterov)) in [
        (0.0, 1.0, false),
        (1e-2, 1024.0, false),
        (1e-3, 1024.0, true),
    ]
    .into_iter()
    .enumerate()
    {
        let p = MomentumParams {
            lr,
            momentum: mu,
            weight_decay: wd,
            loss_scale: ls,
            nesterov,
        };
        let host: Vec<[Vec<f32>; 3]> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let seed = 200 + 10 * i as u64;
                let g: Vec<f32> = values(n, seed + 1).iter().map(|v| v * ls).collect();
                [values(n, seed), g, values(n, seed + 2)]
            })
            .collect();
        let upload = |h: &[Vec<f32>; 3]| -> [ascend::AscendBuffer; 3] {
            h.each_ref().map(|v| be.upload(v).unwrap())
        };
        let mut fused: Vec<_> = host.iter().map(upload).collect();
        let mut single: Vec<_> = host.iter().map(upload).collect();
        let mut group: Vec<MomentumSlot<'_, _>> = fused
            .iter_mut()
            .zip(lens)
            .map(|([param, grad, moment], len)| MomentumSlot {
                param,
                grad,
                moment,
                len,
            })
            .collect();
        be.momentum_update_group(p, &mut group).unwrap();
        for ([param, grad, moment], len) in single.iter_mut().zip(lens) {
            be.momentum_update(p, param, grad, moment, len).unwrap();
        }
        let get = |b: &ascend::AscendBuffer, n: usize| {
            let mut v = vec![0.0; n];
            be.download(b, &mut v).unwrap();
            v
        };
        for (i, ((f, s), h)) in fused.iter().zip(&single).zip(&host).enumerate() {
            let n = lens[i];
            let (tf, gf, vf) = (get(&f[0], n), get(&f[1], n), get(&f[2], n));
            let (ts, vs) = (get(&s[0], n), get(&s[2], n));
            for j in 0..n {
                let (t0, g0, v0) = (h[0][j] as f64, h[1][j] as f64, h[2][j] as f64);
                let m_v = g0.abs() / ls as f64 + wd as f64 * t0.abs() + mu as f64 * v0.abs();
                let bound_v = 10.0 * u * m_v;
                let bound_t = 10.0 * u * (t0.abs() + lr as f64 * (1.0 + mu as f64) * m_v);
                let (dv, dt) = ((vf[j] - vs[j]).abs() as f64, (tf[j] - ts[j]).abs() as f64);
                assert!(
                    dv <= bound_v,
                    "case {case} param {i}[{j}]: moment {} vs {}",
                    vf[j],
                    vs[j]
                );
                assert!(
                    dt <= bound_t,
                    "case {case} param {i}[{j}]: value {} vs {}",
                    tf[j],
                    ts[j]
                );
                // The gradient left behind is g/s (exact: s is a power of two) or g.
                assert_eq!(
                    gf[j] as f64,
                    g0 / ls as f64,
                    "case {case} param {i}[{j}]: gradient"
                );
            }
        }
    }
    // One launch per group on the A2.
    assert_eq!(
        common::emu::control().calls("aclnnFusedSgd") - fused_before,
        3
    );
}

/// O2 keeps the fp16 copy of an f32 buffer read as fp16 (a weight) until the buffer is
/// written: a second Dense forward on unchanged buffers casts nothing, and after `write` the
/// new weights are cast again and give what a fresh buffer holding them gives, bit for bit.
#[test]
fn an_fp16_weight_copy_lasts_until_the_weight_is_written() {
    let _g = lock();
    let be = ascend::AscendBackend::new(0, ascend::Precision::Fp16).unwrap();
    let (n, fin, fout) = (3usize, 8usize, 5usize);
    let shape = LinearShape {
        n,
        in_features: fin,
        out_features: fout,
    };
    let x = be.upload(&values(n * fin, 300)).unwrap();
    let mut w = be.upload(&values(fout * fin, 301)).unwrap();
    let b = be.upload(&values(fout, 302)).unwrap();
    let run = |w: &ascend::AscendBuffer| {
        let mut y = be.alloc(n * fout).unwrap();
        let f = LinearForward {
            shape,
            w,
            b: &b,
            act: Activation::None,
        };
        be.linear(f, &x, &mut y).unwrap();
        let mut out = vec![0.0; n * fout];
        be.download(&y, &mut out).unwrap();
        out
    };
    let casts = || common::emu::control().calls("aclnnCast");
    let first = run(&w);
    let before = casts();
    assert_eq!(run(&w), first);
    assert_eq!(casts(), before, "unchanged buffers are not cast again");
    let new_w = values(fout * fin, 303);
    be.write(&mut w, &new_w).unwrap();
    let written = run(&w);
    assert_eq!(casts(), before + 1, "only the written weight is cast again");
    let fresh = be.upload(&new_w).unwrap();
    assert_eq!(written, run(&fresh));
    assert_ne!(written, first);
}
