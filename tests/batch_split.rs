//! What splitting a batch must not change, on the CPU backend under training settings
//! (`set_fast_conv(false)`: forward 3x3 stride-1 convs by Winograd F(2x2, 3x3) unless
//! `set_winograd_training_forward(false)`, other forward convs direct, the data gradients of
//! 3x3 stride-1 convs by Winograd F(4x4, 3x3) unless `set_winograd_data_gradient(false)`): the
//! forward output and the data gradient of one image are the same bit for bit whatever batch it
//! is in and however many threads compute it, and so is each row of a dense layer's output (the
//! SE layers, the classifier); the filter gradient of a batch cut in two on two threads is the
//! sum of the halves'.
//! Data-parallel training relies on both (`tests/dist.rs`: 2 ranks of batch b against one
//! process of batch 2b on 2 threads).
use senet::backend::cpu::CpuBackend;
use senet::backend::{
    Activation, Backend, Conv2dForward, Conv2dParams, Conv2dShape, LinearForward, LinearShape,
    Shape4,
};

/// Uniform values in [-1, 1) from a linear congruential sequence.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A 3x3 stride-1 pad-1 conv of a batch of `n` images of `cin` x `h` x `w` to `cout` channels.
fn conv3x3(n: usize, cin: usize, cout: usize, (h, w): (usize, usize)) -> Conv2dShape {
    Conv2dShape {
        xs: Shape4::new(n, cin, h, w),
        w_shape: [cout, cin, 3, 3],
        p: Conv2dParams {
            stride: 1,
            padding: 1,
            groups: 1,
        },
    }
}

/// A backend on `threads` threads with a training step's conv settings, Winograd for the
/// forward and the data gradient of 3x3 stride-1 convs or neither.
fn training_backend(threads: usize, winograd: bool) -> CpuBackend {
    let mut be = CpuBackend::new(threads).unwrap();
    be.set_fast_conv(false);
    be.set_winograd_data_gradient(winograd);
    be.set_winograd_training_forward(winograd);
    be
}

/// The conv with the batch of `dy`'s first `n` images.
fn with_batch(c: Conv2dShape, n: usize) -> Conv2dShape {
    Conv2dShape {
        xs: Shape4::new(n, c.xs.c, c.xs.h, c.xs.w),
        ..c
    }
}

/// `run(part, its input, its output)` on `c`'s batch cut into parts of `images` images, `input`
/// holding `per_in` values and the output `per_out` per image; the outputs in order.
fn in_parts(
    c: Conv2dShape,
    input: &[f32],
    (per_in, per_out): (usize, usize),
    images: usize,
    run: impl Fn(Conv2dShape, &[f32], &mut Vec<f32>),
) -> Vec<f32> {
    let mut all = Vec::with_capacity(c.xs.n * per_out);
    for part_in in input[..c.xs.n * per_in].chunks(images * per_in) {
        let part = with_batch(c, part_in.len() / per_in);
        let mut out = vec![f32::NAN; part.xs.n * per_out];
        run(part, part_in, &mut out);
        all.extend(out);
    }
    all
}

/// dx of `c`'s batch from `dy` (its images in order), `images` at a time.
fn data_gradient(
    be: &CpuBackend,
    c: Conv2dShape,
    w: &[f32],
    dy: &[f32],
    images: usize,
) -> Vec<f32> {
    let (xi, yi) = (c.xs.image_len(), c.xs.image_len() / c.xs.c * c.w_shape[0]);
    in_parts(c, dy, (yi, xi), images, |part, dy_part, out| {
        let ys = Shape4::new(part.xs.n, c.w_shape[0], c.xs.h, c.xs.w);
        be.conv2d_backward_data(part, &w.to_vec(), &dy_part.to_vec(), ys, out)
            .unwrap();
    })
}

/// The forward y of `c`'s batch from `x` (its images in order), `images` at a time, as a
/// training step runs it (no bias, no activation: BatchNorm follows).
fn forward(be: &CpuBackend, c: Conv2dShape, w: &[f32], x: &[f32], images: usize) -> Vec<f32> {
    let (xi, yi) = (c.xs.image_len(), c.xs.image_len() / c.xs.c * c.w_shape[0]);
    in_parts(c, x, (xi, yi), images, |part, x_part, out| {
        let f = Conv2dForward {
            shape: part,
            w: &w.to_vec(),
            bias: None,
            act: Activation::None,
            prepared: None,
        };
        be.conv2d(f, &x_part.to_vec(), out).unwrap();
    })
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// seresnet18's 3x3 stride-1 planes on 32x32 (8x8 down to 1x1: one image is 4 Winograd
/// F(4x4) tiles or fewer) and 224x224 inputs (one 28x28 image has 49 tiles, enough for the
/// three-phase single-image split), and odd ones (partial tiles, channel counts that are not
/// multiples of 16), batches of 6.
fn conv3x3_cases() -> [Conv2dShape; 7] {
    [
        conv3x3(6, 64, 64, (8, 8)),
        conv3x3(6, 128, 128, (4, 4)),
        conv3x3(6, 256, 256, (2, 2)),
        conv3x3(6, 512, 512, (1, 1)),
        conv3x3(6, 32, 32, (28, 28)),
        conv3x3(6, 24, 40, (9, 11)),
        conv3x3(6, 17, 33, (14, 13)),
    ]
}

/// For each of [`conv3x3_cases`], `run(backend, conv, weight, input, images at a time)` gives
/// each image the same bits alone on one thread as in a batch of 6 or in two batches of 3 on
/// 1, 2 or 3 threads, with Winograd and with direct sums; and the Winograd result is not the
/// direct one (the path was taken). `input_len(conv)`: the input's length.
fn same_bits_in_any_batch(
    what: &str,
    input_len: impl Fn(Conv2dShape) -> usize,
    run: impl Fn(&CpuBackend, Conv2dShape, &[f32], &[f32], usize) -> Vec<f32>,
) {
    for (i, c) in conv3x3_cases().into_iter().enumerate() {
        let w = values(c.w_shape.iter().product(), 2 * i as u64 + 1);
        let input = values(input_len(c), 2 * i as u64 + 2);
        let mut direct = Vec::new();
        for winograd in [false, true] {
            let alone = run(&training_backend(1, winograd), c, &w, &input, 1);
            for threads in [1, 2, 3] {
                let be = training_backend(threads, winograd);
                for images in [1, 3, 6] {
                    assert!(
                        same_bits(&run(&be, c, &w, &input, images), &alone),
                        "{what} {c:?}, Winograd {winograd}: {images} images at a time on \
                         {threads} threads differ from one at a time on one thread"
                    );
                }
            }
            if winograd {
                assert!(
                    !same_bits(&alone, &direct),
                    "{what} {c:?}: Winograd not taken"
                );
            } else {
                direct = alone;
            }
        }
    }
}

/// The data gradient of a 3x3 stride-1 conv (Winograd F(4x4, 3x3)): [`same_bits_in_any_batch`].
#[test]
fn an_image_data_gradient_does_not_depend_on_its_batch_or_threads() {
    let dy_len = |c: Conv2dShape| c.xs.n * c.w_shape[0] * c.xs.h * c.xs.w;
    same_bits_in_any_batch("data gradient", dy_len, data_gradient);
}

/// The training forward of a 3x3 stride-1 conv (Winograd F(2x2, 3x3)):
/// [`same_bits_in_any_batch`].
#[test]
fn an_image_training_forward_does_not_depend_on_its_batch_or_threads() {
    same_bits_in_any_batch("forward", |c| c.xs.numel(), forward);
}

/// The filter gradient of a batch of 2b on two threads (one run of b images per thread, the
/// second added to the first) is, bit for bit, the sum of those of its halves on one thread
/// each, as two data-parallel ranks compute and all-reduce them; for 3x3 stride-1 and stride-2
/// convs and a strided 1x1 (the downsample).
#[test]
fn a_filter_gradient_on_two_threads_is_the_sum_of_its_halves() {
    let stride = |c: Conv2dShape, s: usize, k: usize, p: usize| Conv2dShape {
        w_shape: [c.w_shape[0], c.w_shape[1], k, k],
        p: Conv2dParams {
            stride: s,
            padding: p,
            groups: 1,
        },
        ..c
    };
    let cases = [
        conv3x3(8, 64, 64, (8, 8)),
        stride(conv3x3(8, 64, 128, (8, 8)), 2, 3, 1),
        stride(conv3x3(8, 64, 128, (8, 8)), 2, 1, 0),
        conv3x3(6, 24, 40, (9, 11)),
    ];
    for (i, c) in cases.into_iter().enumerate() {
        let ys = |n: usize| {
            let (oh, ow) = c.p.out_hw(c.xs.h, c.xs.w, c.w_shape[2], c.w_shape[3]);
            Shape4::new(n, c.w_shape[0], oh, ow)
        };
        let x = values(c.xs.numel(), 3 * i as u64 + 1);
        let dy = values(ys(c.xs.n).numel(), 3 * i as u64 + 2);
        let wl: usize = c.w_shape.iter().product();
        let filter = |be: &CpuBackend, lo: usize, hi: usize| {
            let part = with_batch(c, hi - lo);
            let (xi, yi) = (c.xs.image_len(), ys(1).numel());
            let mut dw = vec![f32::NAN; wl];
            be.conv2d_backward_filter(
                part,
                &x[lo * xi..hi * xi].to_vec(),
                &dy[lo * yi..hi * yi].to_vec(),
                ys(hi - lo),
                &mut dw,
                false,
            )
            .unwrap();
            dw
        };
        let (n, half) = (c.xs.n, c.xs.n / 2);
        let whole = filter(&training_backend(2, true), 0, n);
        let one = training_backend(1, true);
        let (a, b) = (filter(&one, 0, half), filter(&one, half, n));
        let sum: Vec<f32> = a.iter().zip(&b).map(|(p, q)| p + q).collect();
        assert!(same_bits(&whole, &sum), "{c:?}");
    }
}

/// A dense layer under training settings: each row of `relu(x · wᵀ + b)` the same bits in a
/// batch of 8 on 2 threads as in batches of 4 or 1 on 1 or 2 threads, for the SE layers of
/// seresnet18 (64 -> 8 -> 64 to 512 -> 32 -> 512) and a 10-class classifier. (At 8 inputs the
/// `gemm` crate's product of 4 rows rounded differently from that of 8: tests/dist.rs's
/// 2 ranks of batch 4 then started one ulp apart from one process of batch 8.)
#[test]
fn a_dense_row_does_not_depend_on_its_batch_or_threads() {
    for (i, (inf, outf)) in [(64, 8), (8, 64), (128, 8), (512, 32), (32, 512), (512, 10)]
        .into_iter()
        .enumerate()
    {
        let n = 8;
        let w = values(outf * inf, 4 * i as u64 + 1);
        let b = values(outf, 4 * i as u64 + 2);
        let x = values(n * inf, 4 * i as u64 + 3);
        let forward = |be: &CpuBackend, rows: usize| {
            let mut y = Vec::new();
            for xr in x.chunks(rows * inf) {
                let shape = LinearShape {
                    n: xr.len() / inf,
                    in_features: inf,
                    out_features: outf,
                };
                let f = LinearForward {
                    shape,
                    w: &w,
                    b: &b,
                    act: Activation::Relu,
                };
                let mut yr = vec![f32::NAN; shape.n * outf];
                be.linear(f, &xr.to_vec(), &mut yr).unwrap();
                y.extend(yr);
            }
            y
        };
        let whole = forward(&training_backend(2, true), n);
        for threads in [1, 2] {
            for rows in [1, 4] {
                let got = forward(&training_backend(threads, true), rows);
                assert!(
                    same_bits(&got, &whole),
                    "{inf} -> {outf}: {rows} rows at a time on {threads} threads"
                );
            }
        }
    }
}
