//! Device-lr mode of the Ascend group update (the learning rate in device memory, for a step
//! captured once and replayed; `Backend::set_device_lr` / `Backend::stage_lr`), on the CANN
//! emulator's A2 (`Ascend910B`): the same values as the per-parameter path, FusedSgd and the
//! CPU backend over several steps with a changing learning rate staged without any
//! synchronise or blocking copy, and its errors. The first-generation 910's refusal is in
//! `tests/ascend.rs` (`first_gen_910_has_no_device_lr`, a child process on that SoC).
mod common;

use common::emu::{control, fp32, lock, values};
use senet::backend::cpu::CpuBackend;
use senet::backend::{Backend, MomentumParams, MomentumSlot};
use senet::Error;

/// Parameter lengths: 50 parameters (two foreach chunks of at most 48) including an empty one.
fn lens() -> Vec<usize> {
    (0..50)
        .map(|i| if i == 7 { 0 } else { 1 + (i * 7) % 40 })
        .collect()
}

/// A cosine-like changing learning rate, one per step.
const LRS: [f32; 4] = [0.1, 0.0904508, 0.0654508, 0.0345492];

/// Per parameter: the exact (f64) value and moment, and the error bounds `E_θ`, `E_v`.
type Exact = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

/// The state of every parameter of one path: (value, moment) per parameter.
type State<B> = Vec<(<B as Backend>::Buffer, <B as Backend>::Buffer)>;

fn state<B: Backend>(be: &B, lens: &[usize]) -> State<B> {
    lens.iter()
        .enumerate()
        .map(|(i, &n)| {
            let seed = 500 + 10 * i as u64;
            (
                be.upload(&values(n, seed)).unwrap(),
                be.upload(&values(n, seed + 1)).unwrap(),
            )
        })
        .collect()
}

/// The gradients of step `k` (still carrying the loss scale `ls`), fresh buffers.
fn grads<B: Backend>(be: &B, lens: &[usize], k: usize, ls: f32) -> Vec<B::Buffer> {
    lens.iter()
        .enumerate()
        .map(|(i, &n)| {
            let g: Vec<f32> = values(n, 9000 + 100 * k as u64 + i as u64)
                .iter()
                .map(|v| v * ls)
                .collect();
            be.upload(&g).unwrap()
        })
        .collect()
}

fn group_step<B: Backend>(
    be: &B,
    p: MomentumParams,
    st: &mut State<B>,
    g: &mut [B::Buffer],
    lens: &[usize],
) {
    let mut slots: Vec<MomentumSlot<'_, B::Buffer>> = st
        .iter_mut()
        .zip(g.iter_mut())
        .zip(lens)
        .map(|(((param, moment), grad), &len)| MomentumSlot {
            param,
            grad,
            moment,
            len,
        })
        .collect();
    be.momentum_update_group(p, &mut slots).unwrap();
}

fn get<B: Backend>(be: &B, b: &B::Buffer, n: usize) -> Vec<f32> {
    let mut v = vec![0.0; n];
    be.download(b, &mut v).unwrap();
    v
}

/// Four steps of the device-lr group update, each step's learning rate staged through the
/// asynchronous path with no synchronise in between, against: the per-parameter Ascend path
/// (`momentum_update`, the same aclnn arithmetic in the same order: equal bit for bit), one
/// `aclnnFusedSgd` per step (an eager backend) and the CPU backend's per-parameter update
/// (both within the bound below), with and without weight decay, with loss scale 1024 and 1,
/// with and without Nesterov.
///
/// Bound, per element, derived from the arithmetic: one step of any of these paths computes
/// `g' = g/s + wd θ`, `v' = μ v + g'`, `θ' = θ - lr v'` (Nesterov `θ - lr (g' + μ v')`) in at
/// most 5 FLOAT roundings (s = 1024 is a power of two, so `1/s` and `g/s` are exact), each
/// off by at most u = 2^-24 of the magnitude it rounds; so two paths that start a step equal
/// differ after it by at most `R_v = 10 u M_v` in `v` and `R_θ = 10 u (|θ| + lr (1 + μ) M_v)`
/// in `θ`, `M_v = |g|/s + wd |θ| + μ |v|`. Differences carried into a step propagate through
/// the exact maps: `δv' = μ δv + wd δθ`, `δθ' = δθ + lr (wd δθ + δv')` at most (either form).
/// So `E_v(k+1) = μ E_v + wd E_θ + R_v`, `E_θ(k+1) = E_θ (1 + lr wd) + lr E_v(k+1) + R_θ`,
/// with the magnitudes taken from an f64 run of the exact recursion.
#[test]
fn device_lr_updates_equal_the_per_parameter_fused_and_cpu_updates() {
    let _g = lock();
    let dev = fp32();
    let eager = fp32();
    let cpu = CpuBackend::new(1).unwrap();
    dev.set_device_lr(true).unwrap();
    let lens = lens();
    let mu = 0.9f32;
    let u = 1.0 / 16_777_216.0f64;
    let ops = [
        "aclnnForeachAddList",
        "aclnnForeachAddListV2",
        "aclnnForeachMulScalarV2",
    ];
    for (case, (wd, ls, nesterov)) in [
        (0.0f32, 1.0f32, false),
        (1e-2, 1024.0, false),
        (1e-3, 1024.0, true),
    ]
    .into_iter()
    .enumerate()
    {
        let params = |lr: f32| MomentumParams {
            lr,
            momentum: mu,
            weight_decay: wd,
            loss_scale: ls,
            nesterov,
        };
        let mut on_dev = state(&dev, &lens);
        let mut per_param = state(&eager, &lens);
        let mut fused = state(&eager, &lens);
        let mut on_cpu = state(&cpu, &lens);
        let mut dev_grads: Vec<_> = (0..LRS.len()).map(|k| grads(&dev, &lens, k, ls)).collect();
        // The device-lr steps: nothing but the staged learning rates and the launches.
        let calls_before: Vec<u64> = ops.iter().map(|o| control().calls(o)).collect();
        let before = dev.counters().unwrap();
        for (k, &lr) in LRS.iter().enumerate() {
            dev.stage_lr(lr, mu).unwrap();
            group_step(&dev, params(lr), &mut on_dev, &mut dev_grads[k], &lens);
        }
        let c = dev.counters().unwrap().since(&before);
        assert_eq!(c.synchronizes, 0, "case {case}: {c:?}");
        assert_eq!(c.blocking_copies, 0, "case {case}: {c:?}");
        assert_eq!(c.allocations, 0, "case {case}: {c:?}");
        assert_eq!(
            c.h2d_bytes,
            64 * LRS.len() as u64,
            "case {case}: one staged block a step"
        );
        // Per chunk (48 + 1 live parameters): MulScalarV2 and AddListV2 for the moment, one
        // AddList (two with Nesterov), AddListV2 for the weight decay, MulScalarV2 for 1/s.
        let chunks = 2u64;
        let steps = LRS.len() as u64;
        let want = [
            (1 + nesterov as u64) * chunks * steps,
            (1 + (wd != 0.0) as u64) * chunks * steps,
            (1 + (ls != 1.0) as u64) * chunks * steps,
        ];
        for ((o, b), w) in ops.iter().zip(&calls_before).zip(want) {
            assert_eq!(control().calls(o) - b, w, "case {case}: {o}");
        }
        assert_eq!(c.launches, want.iter().sum::<u64>(), "case {case}");
        // The references, step by step.
        let mut bound_state: Vec<Exact> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let seed = 500 + 10 * i as u64;
                let to64 = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
                (
                    to64(values(n, seed)),
                    to64(values(n, seed + 1)),
                    vec![0.0; n],
                    vec![0.0; n],
                )
            })
            .collect();
        for (k, &lr) in LRS.iter().enumerate() {
            let p = params(lr);
            let mut g = grads(&eager, &lens, k, ls);
            for (((param, moment), grad), &n) in per_param.iter_mut().zip(&g).zip(&lens) {
                eager.momentum_update(p, param, grad, moment, n).unwrap();
            }
            group_step(&eager, p, &mut fused, &mut g, &lens);
            let mut gc = grads(&cpu, &lens, k, ls);
            group_step(&cpu, p, &mut on_cpu, &mut gc, &lens);
            // The error recursion on the exact (f64) trajectory.
            for (i, (theta, v, e_t, e_v)) in bound_state.iter_mut().enumerate() {
                let gh = values(lens[i], 9000 + 100 * k as u64 + i as u64);
                for j in 0..lens[i] {
                    let (lr, mu, wd) = (lr as f64, mu as f64, wd as f64);
                    let g1 = gh[j] as f64 + wd * theta[j];
                    let m_v = (gh[j] as f64).abs() + wd * theta[j].abs() + mu * v[j].abs();
                    let v1 = mu * v[j] + g1;
                    let t1 = theta[j] - lr * if nesterov { g1 + mu * v1 } else { v1 };
                    let r_v = 10.0 * u * m_v;
                    let r_t = 10.0 * u * (theta[j].abs() + lr * (1.0 + mu) * m_v);
                    let ev1 = mu * e_v[j] + wd * e_t[j] + r_v;
                    e_t[j] = e_t[j] * (1.0 + lr * wd) + lr * ev1 + r_t;
                    e_v[j] = ev1;
                    (theta[j], v[j]) = (t1, v1);
                }
            }
        }
        for (i, &n) in lens.iter().enumerate() {
            let (td, vd) = (get(&dev, &on_dev[i].0, n), get(&dev, &on_dev[i].1, n));
            assert_eq!(td, get(&eager, &per_param[i].0, n), "case {case} param {i}");
            assert_eq!(vd, get(&eager, &per_param[i].1, n), "case {case} param {i}");
            let (_, _, e_t, e_v) = &bound_state[i];
            for (name, (t, v)) in [
                (
                    "FusedSgd",
                    (get(&eager, &fused[i].0, n), get(&eager, &fused[i].1, n)),
                ),
                (
                    "CPU",
                    (get(&cpu, &on_cpu[i].0, n), get(&cpu, &on_cpu[i].1, n)),
                ),
            ] {
                for j in 0..n {
                    let (dt, dv) = ((td[j] - t[j]).abs() as f64, (vd[j] - v[j]).abs() as f64);
                    assert!(
                        dt <= e_t[j] && dv <= e_v[j],
                        "case {case} param {i}[{j}] vs {name}: value {} vs {} (bound {}), \
                         moment {} vs {} (bound {})",
                        td[j],
                        t[j],
                        e_t[j],
                        vd[j],
                        v[j],
                        e_v[j]
                    );
                }
            }
        }
    }
}

/// Device-lr mode refuses an update whose learning rate is not the staged one, and a staging
/// call while it is off; turned off, the group update is FusedSgd again.
#[test]
fn device_lr_mode_checks_what_it_reads() {
    let _g = lock();
    let be = fp32();
    let lens = [3usize];
    let p = MomentumParams {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
        loss_scale: 1.0,
        nesterov: false,
    };
    let err = be.stage_lr(0.1, 0.9).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(m) if m.contains("set_device_lr(true)")),
        "{err}"
    );
    be.set_device_lr(true).unwrap();
    let mut st = state(&be, &lens);
    let mut g = grads(&be, &lens, 0, 1.0);
    let (param, moment) = &mut st[0];
    let mut slots = vec![MomentumSlot {
        param,
        grad: &mut g[0],
        moment,
        len: 3,
    }];
    let err = be.momentum_update_group(p, &mut slots).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(m) if m.contains("nothing staged")),
        "{err}"
    );
    be.stage_lr(0.05, 0.9).unwrap();
    let err = be.momentum_update_group(p, &mut slots).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(m) if m.contains("lr 0.1") && m.contains("lr 0.05")),
        "{err}"
    );
    be.set_device_lr(false).unwrap();
    let fused_before = control().calls("aclnnFusedSgd");
    be.momentum_update_group(p, &mut slots).unwrap();
    assert_eq!(control().calls("aclnnFusedSgd") - fused_before, 1);
}
