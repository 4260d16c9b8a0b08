//! Per-layer timings of the CPU backend's conv2d on seresnet50's shapes (batch 32 by default):
//! `cargo bench --bench layers [-- BATCH THREADS [forward|filter [LAYER]|train-forward|train]]`
//! (`forward`: no gradients; `filter`: only the filter gradients, see [`filter`];
//! `train-forward`: training's forward of the 3x3 stride-1 convs, see [`train_forward`];
//! `train`: the training step's ops around the convs, see [`train_ops`]).
//! Prints GFLOP/s per layer shape; used to find
//! the layers where the CPU backend falls short of the GEMM's speed. Then the same shapes'
//! gradients: the data gradient as a training step runs it, by the legacy im2col + col2im and
//! with Winograd allowed, timed alternately in the same run, and the filter gradient.
//!
//! Where the backend prepares a conv's weights (`Backend::prepare_conv2d`: at batch 1 the 7x7
//! and 14x14 layers), the forward is timed both ways, alternately: with the prepared weights
//! (the batch-1 product) and without (the GEMM path of before). The stem's max pool is timed
//! last; `SENET_CPU_B1=old` gives the scalar pool (and no prepared weights) for an A/B of it.
//! Then the Dense layers (the SE modules and the classifier; `SENET_CPU_B1=nolocal` for an A/B
//! of batch 1 on the calling thread). `-- BATCH THREADS model [ARCH]` times whole forward passes
//! instead, inside one pool hand-over and op by op, alternately (see [`model`]).
use senet::backend::cpu::CpuBackend;
use senet::backend::{
    Activation, Backend, Conv2dForward, Conv2dParams, Conv2dShape, LinearForward, LinearShape,
    MaxPool2dParams, Shape4,
};

/// (cin, h, cout, k, stride, pad, groups) of one conv.
type Layer = (usize, usize, usize, usize, usize, usize, usize);
use senet::model::{formula_input, Arch, InferenceNet, SeNet};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let batch: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(32);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let be = CpuBackend::new(threads).unwrap();
    // (cin, h, cout, k, stride, pad, groups): the distinct conv shapes of seresnet50, then the
    // grouped 3x3 of seresnext50_32x4d (`SENET_CPU_GROUPED=gemm` times them on the GEMM paths).
    let layers = [
        (3, 224, 64, 7, 2, 3, 1),
        (64, 56, 64, 1, 1, 0, 1),
        (64, 56, 64, 3, 1, 1, 1),
        (64, 56, 256, 1, 1, 0, 1),
        (256, 56, 64, 1, 1, 0, 1),
        (128, 56, 128, 3, 2, 1, 1),
        (128, 28, 128, 3, 1, 1, 1),
        (256, 14, 256, 3, 1, 1, 1),
        (512, 7, 512, 3, 1, 1, 1),
        (1024, 14, 256, 1, 1, 0, 1),
        (512, 7, 2048, 1, 1, 0, 1),
        (2048, 7, 512, 1, 1, 0, 1),
        (1024, 14, 2048, 1, 2, 0, 1),
        (128, 56, 128, 3, 1, 1, 32),
        (256, 56, 256, 3, 2, 1, 32),
        (256, 28, 256, 3, 1, 1, 32),
        (512, 28, 512, 3, 2, 1, 32),
        (512, 14, 512, 3, 1, 1, 32),
        (1024, 14, 1024, 3, 2, 1, 32),
        (1024, 7, 1024, 3, 1, 1, 32),
    ];
    match args.get(3).map(String::as_str) {
        Some("filter") => return filter(&layers, batch, threads, args.get(4).map(String::as_str)),
        Some("model") => return model(args.get(4).map_or("seresnet50", |s| s), batch, threads),
        _ => {}
    }
    if args.get(3).map(String::as_str) == Some("train-forward") {
        return train_forward(&layers, batch, threads);
    }
    if args.get(3).map(String::as_str) == Some("train") {
        return train_ops(batch, threads);
    }
    for &(cin, h, cout, k, s, p, g) in &layers {
        let xs = Shape4::new(batch, cin, h, h);
        let params = Conv2dParams {
            stride: s,
            padding: p,
            groups: g,
        };
        let (oh, ow) = params.out_hw(h, h, k, k);
        let ys = Shape4::new(batch, cout, oh, ow);
        let x = be.upload(&vec![0.5; xs.numel()]).unwrap();
        let w = be.upload(&vec![0.01; cout * cin / g * k * k]).unwrap();
        let b = be.upload(&vec![0.1; cout]).unwrap();
        let mut y = be.alloc(ys.numel()).unwrap();
        let f = Conv2dForward {
            shape: Conv2dShape {
                xs,
                w_shape: [cout, cin / g, k, k],
                p: params,
            },
            w: &w,
            bias: Some(&b),
            act: Activation::Relu,
            prepared: None,
        };
        let prepared = be.prepare_conv2d(f).unwrap();
        let fp = Conv2dForward {
            prepared: prepared.as_ref(),
            ..f
        };
        let flops = 2.0 * (ys.numel() * cin / g * k * k) as f64;
        let figure =
            |secs: f64| format!("{:>7.2} ms {:>5.0} GFLOP/s", secs * 1e3, flops / secs / 1e9);
        let label = format!("conv {cin:>4}x{h:<3} -> {cout:>4} k{k} s{s} g{g:<2}");
        if prepared.is_none() {
            let secs = median_secs(|| {
                be.conv2d(f, &x, &mut y).unwrap();
            });
            println!("{label}: {}", figure(secs));
            continue;
        }
        // Alternately with and without the prepared weights, 5 rounds each.
        let (mut new, mut old) = (Vec::new(), Vec::new());
        be.conv2d(fp, &x, &mut y).unwrap();
        be.conv2d(f, &x, &mut y).unwrap();
        for _ in 0..5 {
            for (op, times) in [(fp, &mut new), (f, &mut old)] {
                let t0 = Instant::now();
                be.conv2d(op, &x, &mut y).unwrap();
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        let median = |t: &mut Vec<f64>| {
            t.sort_by(f64::total_cmp);
            t[2]
        };
        println!(
            "{label}: {}  (without prepared weights {})",
            figure(median(&mut new)),
            figure(median(&mut old))
        );
    }
    // The stem's max pool (3x3, stride 2, MindCV's "same") on the 7x7 conv's output.
    let pool = MaxPool2dParams::same(3, 2);
    let xs = Shape4::new(batch, 64, 112, 112);
    let x = be.upload(&distinct_values(xs.numel())).unwrap();
    let mut y = be.alloc(xs.numel()).unwrap();
    let secs = median_secs(|| {
        be.max_pool2d(pool, &x, xs, &mut y).unwrap();
    });
    println!("max_pool2d 64x112 3x3 s2 same: {:>7.3} ms", secs * 1e3);
    dense(&be, batch);
    if args.get(3).map(String::as_str) != Some("forward") {
        backward(&layers, batch, threads);
    }
}

/// The Dense layers of seresnet50 (the SE modules' reduce and expand of stages 1-4, the
/// classifier) at `batch`: microseconds per call, median of 5 (after one untimed). `SENET_CPU_B1=nolocal`
/// keeps batch 1 on the pool (A/B runs).
fn dense(be: &CpuBackend, batch: usize) {
    let shapes = [
        (256, 16),
        (16, 256),
        (512, 32),
        (32, 512),
        (1024, 64),
        (64, 1024),
        (2048, 128),
        (128, 2048),
        (2048, 1000),
    ];
    for (inf, outf) in shapes {
        let x = be.upload(&distinct_values(batch * inf)).unwrap();
        let w = be.upload(&distinct_values(outf * inf)).unwrap();
        let b = be.upload(&vec![0.1; outf]).unwrap();
        let mut y = be.alloc(batch * outf).unwrap();
        let f = LinearForward {
            shape: LinearShape {
                n: batch,
                in_features: inf,
                out_features: outf,
            },
            w: &w,
            b: &b,
            act: Activation::Relu,
        };
        let secs = median_secs(|| be.linear(f, &x, &mut y).unwrap());
        println!("linear {inf:>4} -> {outf:>4}: {:>8.1} us", secs * 1e6);
    }
}

/// `n` distinct values in [-1, 1) (a max pool of constants would be a benchmark of one case).
/// The conv of `layer` (cin, h, cout, k, stride, padding, groups) on a batch of `batch` h x h
/// images.
fn conv_shape(batch: usize, (cin, h, cout, k, s, p, g): Layer) -> Conv2dShape {
    Conv2dShape {
        xs: Shape4::new(batch, cin, h, h),
        w_shape: [cout, cin / g, k, k],
        p: Conv2dParams {
            stride: s,
            padding: p,
            groups: g,
        },
    }
}

fn distinct_values(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 2003) as f32 / 1001.5 - 1.0)
        .collect()
}

/// The median of 5 timed runs of `f` (after one untimed), in seconds.
fn median_secs(mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

/// Whole forward passes of `arch` (random weights, 224x224 images) at `batch` on two networks,
/// each on its own backend: one running the pass inside one pool hand-over
/// (`Backend::run_ops`), one issuing it op by op from this thread
/// (`CpuBackend::set_ops_in_pool(false)`, the path before). Six rounds of 5 passes of either,
/// interleaved pass by pass: medians and fastest passes; the logits of the two must be the same
/// bits.
fn model(arch: &str, batch: usize, threads: usize) {
    let net = SeNet::new(Arch::from_name(arch).unwrap(), 1000, 0).unwrap();
    let infer = |in_pool: bool| {
        let mut be = CpuBackend::new(threads).unwrap();
        be.set_ops_in_pool(in_pool);
        InferenceNet::new(&net, be).unwrap()
    };
    let (mut new, mut old) = (infer(true), infer(false));
    let x = formula_input("x", &[batch, 3, 224, 224]);
    let bits = |t: &senet::Tensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&new.forward(&x).unwrap()),
        bits(&old.forward(&x).unwrap())
    );
    for round in 1..=6 {
        // Five passes of either, interleaved one by one.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            for (inf, times) in [(&mut new, &mut a), (&mut old, &mut b)] {
                let t0 = Instant::now();
                inf.forward(&x).unwrap();
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        println!(
            "{arch} batch {batch} round {round}: one hand-over {:>8.2} ms (fastest {:>8.2}), \
             op by op {:>8.2} ms (fastest {:>8.2}): {:.3}x",
            a[2],
            a[0],
            b[2],
            b[0],
            b[2] / a[2]
        );
    }
}

/// The filter gradients of seresnet18's distinct convs, then of `layers` and of seresnet50's other
/// 1x1 expansions, three ways timed alternately: on senet's GEMM (`conv/wgrad.rs`), the same with
/// the gather of before (`CpuBackend::set_legacy_filter_gather`: each image's columns gathered,
/// then copied beside the others) and on the `gemm` crate (`set_legacy_filter_gradient`); two
/// rounds of medians per layer, the faster round of each kept. `only` (the argument after
/// `filter`) keeps the layers whose label, as printed (`256x14 -> 256 k3 s1`, spaces
/// collapsed), contains it.
fn filter(layers: &[Layer], batch: usize, threads: usize, only: Option<&str>) {
    let resnet18: [Layer; 10] = [
        (3, 224, 64, 7, 2, 3, 1),
        (64, 56, 64, 3, 1, 1, 1),
        (64, 56, 128, 3, 2, 1, 1),
        (64, 56, 128, 1, 2, 0, 1),
        (128, 28, 128, 3, 1, 1, 1),
        (128, 28, 256, 3, 2, 1, 1),
        (256, 14, 256, 3, 1, 1, 1),
        (256, 14, 512, 3, 2, 1, 1),
        (256, 14, 512, 1, 2, 0, 1),
        (512, 7, 512, 3, 1, 1, 1),
    ];
    let expansions: [Layer; 4] = [
        (128, 28, 512, 1, 1, 0, 1),
        (256, 14, 1024, 1, 1, 0, 1),
        (256, 56, 512, 1, 2, 0, 1),
        (512, 28, 1024, 1, 2, 0, 1),
    ];
    let bes = [(false, false), (false, true), (true, false)].map(|(legacy, copy)| {
        let mut be = CpuBackend::new(threads).unwrap();
        be.set_legacy_filter_gradient(legacy);
        be.set_legacy_filter_gather(copy);
        be
    });
    for &layer in resnet18.iter().chain(layers).chain(&expansions) {
        let conv = conv_shape(batch, layer);
        let (cin, h, cout, k, s, _, g) = layer;
        if only.is_some_and(|o| !format!("{cin}x{h} -> {cout} k{k} s{s} g{g}").contains(o)) {
            continue;
        }
        let ys = conv.out_shape().unwrap();
        let x = distinct_values(conv.xs.numel());
        let dy = distinct_values(ys.numel());
        let mut dw = vec![0.0; conv.w_len()];
        let mut best = [f64::INFINITY; 3];
        for _ in 0..2 {
            for (b, t) in bes.iter().zip(best.iter_mut()) {
                let secs = median_secs(|| {
                    b.conv2d_backward_filter(conv, &x, &dy, ys, &mut dw, false)
                        .unwrap()
                });
                *t = t.min(secs);
            }
        }
        let gflops = |secs: f64| 2.0 * (ys.numel() * cin / g * k * k) as f64 / secs / 1e9;
        let figure = |secs: f64| format!("{:>7.2} ms {:>4.0} GFLOP/s", secs * 1e3, gflops(secs));
        println!(
            "filter {cin:>4}x{h:<3} -> {cout:>4} k{k} s{s} g{g:<2}: sgemm {}, gather+copy {} \
             ({:.2}x), gemm crate {} ({:.2}x)",
            figure(best[0]),
            figure(best[1]),
            best[1] / best[0],
            figure(best[2]),
            best[2] / best[0]
        );
    }
}

/// Data and filter gradients of `layers` at `batch` on `threads` threads, in GFLOP/s (each is as
/// many multiply-adds as the forward). The data gradient three ways, alternately per layer: as
/// a training step runs it (`set_fast_conv(false)`: a forward conv for stride-1 convs), by the
/// legacy im2col + col2im (`set_legacy_conv_backward`), and with `set_fast_conv(true)` (3x3
/// stride-1 ones by Winograd: what a training step would gain if it allowed Winograd there).
fn backward(layers: &[Layer], batch: usize, threads: usize) {
    let backend = |fast: bool, legacy: bool| {
        let mut be = CpuBackend::new(threads).unwrap();
        be.set_fast_conv(fast);
        be.set_legacy_conv_backward(legacy);
        be
    };
    let bes = [
        backend(false, false),
        backend(false, true),
        backend(true, false),
    ];
    for &layer in layers {
        let conv = conv_shape(batch, layer);
        let (cin, h, cout, k, s, _, g) = layer;
        let ys = conv.out_shape().unwrap();
        let x = vec![0.5; conv.xs.numel()];
        let w = vec![0.01; conv.w_len()];
        let dy = vec![0.02; ys.numel()];
        let (mut dx, mut dw) = (vec![0.0; conv.xs.numel()], vec![0.0; conv.w_len()]);
        let gflops = |secs: f64| 2.0 * (ys.numel() * cin / g * k * k) as f64 / secs / 1e9;
        let data: Vec<f64> = bes
            .iter()
            .map(|b| median_secs(|| b.conv2d_backward_data(conv, &w, &dy, ys, &mut dx).unwrap()))
            .collect();
        let filter = median_secs(|| {
            bes[0]
                .conv2d_backward_filter(conv, &x, &dy, ys, &mut dw, false)
                .unwrap()
        });
        let figure = |secs: f64| format!("{:>7.2} ms {:>4.0}", secs * 1e3, gflops(secs));
        println!(
            "grad {cin:>4}x{h:<3} -> {cout:>4} k{k} s{s} g{g:<2}: data {} GFLOP/s (legacy {}, \
             fast_conv {})  filter {} GFLOP/s",
            figure(data[0]),
            figure(data[1]),
            figure(data[2]),
            figure(filter)
        );
    }
}

/// Training's forward (`set_fast_conv(false)`, no bias, no activation: BatchNorm follows) of the
/// dense 3x3 stride-1 `layers`: Winograd F(2x2, 3x3) and the direct conv alternately, 5 rounds
/// each, medians in ms and direct-conv GFLOP/s.
fn train_forward(layers: &[Layer], batch: usize, threads: usize) {
    let backend = |f2: bool| {
        let mut be = CpuBackend::new(threads).unwrap();
        be.set_fast_conv(false);
        be.set_winograd_training_forward(f2);
        be
    };
    let (f2, direct) = (backend(true), backend(false));
    for &layer in layers.iter().filter(|l| l.3 == 3 && l.4 == 1 && l.6 == 1) {
        let shape = conv_shape(batch, layer);
        let ys = shape.out_shape().unwrap();
        let x = distinct_values(shape.xs.numel());
        let w = distinct_values(shape.w_shape.iter().product());
        let mut y = vec![0.0; ys.numel()];
        let f = Conv2dForward {
            shape,
            w: &w,
            bias: None,
            act: Activation::None,
            prepared: None,
        };
        let mut times = [Vec::new(), Vec::new()];
        for round in 0..6 {
            for (be, t) in [&f2, &direct].into_iter().zip(times.iter_mut()) {
                let t0 = Instant::now();
                be.conv2d(f, &x, &mut y).unwrap();
                if round > 0 {
                    t.push(t0.elapsed().as_secs_f64());
                }
            }
        }
        let flops = 2.0 * (ys.numel() * shape.w_shape[1] * 9) as f64;
        let [a, b] = times.map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[2]
        });
        let (cin, h, cout, ..) = layer;
        println!(
            "train forward {cin:>4}x{h:<3} -> {cout:>4} 3x3: F(2x2,3x3) {:>7.2} ms {:>5.0} GFLOP/s, \
             direct {:>7.2} ms {:>5.0} GFLOP/s ({:.2}x)",
            a * 1e3,
            flops / a / 1e9,
            b * 1e3,
            flops / b / 1e9,
            b / a
        );
    }
}

/// The training step's ops around the convs that `CpuBackend::set_legacy_train_kernels` switches
/// (the current kernels against the previous ones, the same results bit for bit), on
/// seresnet18's shapes at `batch`: the stem's max-pool backward (64x112x112, 3x3 stride 2,
/// MindCV's "same"), and per stage the SE block's end into the block output
/// (`se_scale_add_relu_into`) and the SE squeeze's gradient added into the scale's
/// (`global_avg_pool_backward_add`). Timed alternately: two rounds of (new, legacy) medians of
/// 5, the faster round of each kept; milliseconds.
fn train_ops(batch: usize, threads: usize) {
    let bes = [false, true].map(|legacy| {
        let mut be = CpuBackend::new(threads).unwrap();
        be.set_legacy_train_kernels(legacy);
        be
    });
    let report = |label: &str, op: &mut dyn FnMut(&CpuBackend)| {
        let mut best = [f64::INFINITY; 2];
        for _ in 0..2 {
            for (b, t) in bes.iter().zip(best.iter_mut()) {
                *t = t.min(median_secs(|| op(b)));
            }
        }
        println!(
            "{label}: new {:>8.3} ms, legacy {:>8.3} ms, {:.2}x",
            best[0] * 1e3,
            best[1] * 1e3,
            best[1] / best[0]
        );
    };
    let pool = MaxPool2dParams::same(3, 2);
    let xs = Shape4::new(batch, 64, 112, 112);
    let ys = pool.geometry(xs).unwrap().ys;
    let x = distinct_values(xs.numel());
    let dy = distinct_values(ys.numel());
    let mut dx = vec![0.0; xs.numel()];
    report("max_pool2d_backward 64x112 3x3 s2 same", &mut |b| {
        b.max_pool2d_backward(pool, &x, xs, &dy, &mut dx).unwrap()
    });
    for (c, h) in [(64, 56), (128, 28), (256, 14), (512, 7)] {
        let xs = Shape4::new(batch, c, h, h);
        let x = distinct_values(xs.numel());
        let shortcut: Vec<f32> = x.iter().rev().copied().collect();
        let gate = distinct_values(batch * c);
        let mut out = vec![0.0; xs.numel()];
        report(&format!("se_scale_add_relu_into {c:>3}x{h:<3}"), &mut |b| {
            b.se_scale_add_relu_into(&x, xs, &gate, &shortcut, &mut out)
                .unwrap()
        });
        let mut scratch = vec![0.0; xs.numel()];
        report(
            &format!("global_avg_pool_backward_add {c:>3}x{h:<3}"),
            &mut |b| {
                b.global_avg_pool_backward_add(&gate, xs, &mut out, &mut scratch)
                    .unwrap()
            },
        );
    }
}
