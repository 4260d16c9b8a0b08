//! Timings of the CPU backend's BatchNorm2d in training (forward with batch statistics, and its
//! backward with the fused ReLU mask) on seresnet50's activation shapes, batch 32 by default:
//! `cargo bench --bench norm [-- BATCH THREADS]`. Prints milliseconds and GB/s (the bytes each
//! pass must read and write: forward x twice + y; backward x, dy and the mask twice + dx).
use senet::backend::cpu::CpuBackend;
use senet::backend::{
    Activation, Backend, BatchNormBackward, BatchNormForward, BatchNormGrads, BatchStats,
    SavedStats, Shape4,
};
use std::time::Instant;

/// The median of 7 timed runs of `f` (after one warm-up), in seconds.
fn median_secs(mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..7)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[3]
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let batch: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(32);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let be = CpuBackend::new(threads).unwrap();
    // (channels, height = width) of seresnet50's BatchNorm inputs.
    let shapes = [
        (64, 112),
        (64, 56),
        (256, 56),
        (128, 28),
        (512, 28),
        (256, 14),
        (1024, 14),
        (512, 7),
        (2048, 7),
    ];
    for (c, h) in shapes {
        let xs = Shape4::new(batch, c, h, h);
        let n = xs.numel();
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.4)
            .collect();
        let x = be.upload(&x).unwrap();
        let dy: Vec<f32> = (0..n)
            .map(|i| ((i * 104729) % 997) as f32 * 1e-3 - 0.5)
            .collect();
        let dy = be.upload(&dy).unwrap();
        let gamma = be.upload(&vec![1.0; c]).unwrap();
        let beta = be.upload(&vec![0.1; c]).unwrap();
        let (mut mm, mut mv) = (
            be.upload(&vec![0.0; c]).unwrap(),
            be.upload(&vec![1.0; c]).unwrap(),
        );
        let (mut sm, mut si) = (be.alloc(c).unwrap(), be.alloc(c).unwrap());
        let mut y = be.alloc(n).unwrap();
        let bn = BatchNormForward {
            xs,
            gamma: &gamma,
            beta: &beta,
            act: Activation::Relu,
        };
        let fwd = median_secs(|| {
            let stats = BatchStats {
                eps: 1e-5,
                momentum: 0.9,
                moving_mean: &mut mm,
                moving_var: &mut mv,
                saved_mean: &mut sm,
                saved_invstd: &mut si,
            };
            be.batch_norm_train(bn, &x, stats, &mut y).unwrap();
        });
        let (mut dx, mut dg, mut db) = (
            be.alloc(n).unwrap(),
            be.alloc(c).unwrap(),
            be.alloc(c).unwrap(),
        );
        let bwd = median_secs(|| {
            let b = BatchNormBackward {
                xs,
                x: &x,
                dy: &dy,
                y_relu: Some(&y),
                gamma: &gamma,
            };
            let saved = SavedStats {
                mean: &sm,
                invstd: &si,
            };
            let grads = BatchNormGrads {
                dx: &mut dx,
                dgamma: &mut dg,
                dbeta: &mut db,
            };
            be.batch_norm_backward(b, saved, grads).unwrap();
        });
        let bytes = 4.0 * n as f64;
        println!(
            "bn {c:>4}x{h:<3}: forward {:>7.2} ms {:>5.1} GB/s   backward {:>7.2} ms {:>5.1} GB/s",
            fwd * 1e3,
            3.0 * bytes / fwd / 1e9,
            bwd * 1e3,
            7.0 * bytes / bwd / 1e9
        );
    }
}
