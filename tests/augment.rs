//! MindCV train transforms (senet::data::TrainTransform): per-sample determinism, the
//! RandomResizedCrop geometry and fallback, flips, colour adjustments, and the loader with
//! per-sample randomness. Real photos from shared/datasets/imagenet-sample.
mod common;

use std::path::{Path, PathBuf};

use senet::data::{adjust_brightness, adjust_contrast, adjust_saturation, luma};
use senet::data::{
    decode_file, flip_horizontal, flip_vertical, resize_u8, CropBox, ImageFolder, Interpolation,
    Loader, RgbImage, SampleRng, TrainTransform, IMAGENET_MEAN, IMAGENET_STD,
};

fn samples() -> Vec<(PathBuf, usize)> {
    let dir = common::shared().join("datasets/imagenet-sample");
    ImageFolder::open(&dir, "val", None).unwrap().samples
}

fn photo() -> RgbImage {
    decode_file(&samples()[3].0).unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A transform whose crop is always the whole `img`: scale [1, 1], ratio = its aspect.
fn whole_image(img: &RgbImage, size: usize) -> TrainTransform {
    let r = img.width as f64 / img.height as f64;
    TrainTransform {
        image_resize: size,
        scale: [1.0, 1.0],
        ratio: [r, r],
        hflip: 0.0,
        vflip: 0.0,
        color_jitter: [0.0; 3],
        ..TrainTransform::default()
    }
}

fn normalize_chw(img: &RgbImage) -> Vec<f32> {
    let plane = img.width * img.height;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    out
}

fn constant(w: usize, h: usize, rgb: [u8; 3]) -> RgbImage {
    RgbImage::from_raw(w, h, rgb.repeat(w * h)).unwrap()
}

#[test]
fn same_key_is_bit_identical_and_other_keys_differ() {
    let img = photo();
    let t = TrainTransform::default();
    assert_eq!(t.output_shape(), [3, 224, 224]);
    let run = |s, e, i| t.apply(&img, &mut SampleRng::for_sample(s, e, i)).unwrap();
    let a = run(42, 3, 17);
    assert_eq!(a.len(), 3 * 224 * 224);
    assert_eq!(bits(&a), bits(&run(42, 3, 17)));
    assert_ne!(bits(&a), bits(&run(42, 3, 18)));
    assert_ne!(bits(&a), bits(&run(42, 4, 17)));
    assert_ne!(bits(&a), bits(&run(43, 3, 17)));

    // Different indices draw different crops (all 50 distinct on a 500x375-ish photo).
    let boxes: std::collections::HashSet<_> = (0..50)
        .map(|i| {
            let b = t.random_crop_box(img.width, img.height, &mut SampleRng::for_sample(42, 0, i));
            (b.x, b.y, b.width, b.height)
        })
        .collect();
    assert_eq!(boxes.len(), 50);
}

#[test]
fn loader_output_does_not_depend_on_worker_count() {
    let samples: Vec<_> = samples().into_iter().take(10).collect();
    let t = TrainTransform {
        image_resize: 96,
        ..TrainTransform::default()
    };
    let (seed, epoch) = (7u64, 2u64);
    let run = |workers: usize| -> Vec<Vec<u32>> {
        let t = t.clone();
        let loader = Loader::with_indexed_transform(
            samples.clone(),
            t.output_shape(),
            move |i: usize, p: &Path| {
                t.apply_path(p, &mut SampleRng::for_sample(seed, epoch, i as u64))
            },
            4,
            workers,
            2,
        )
        .unwrap();
        assert_eq!(loader.num_batches(), 3);
        loader
            .map(|b| {
                let b = b.unwrap();
                assert_eq!(b.images.shape[1..], [3, 96, 96]);
                bits(&b.images.data)
            })
            .collect()
    };
    let one = run(1);
    assert_eq!(one, run(3));
    // And each image is the direct transform keyed by its position.
    let per = 3 * 96 * 96;
    let flat: Vec<u32> = one.concat();
    for (i, (path, _)) in samples.iter().enumerate() {
        let direct = t
            .apply_path(path, &mut SampleRng::for_sample(seed, epoch, i as u64))
            .unwrap();
        assert_eq!(
            &flat[i * per..(i + 1) * per],
            bits(&direct).as_slice(),
            "{i}"
        );
    }
}

#[test]
fn random_resized_crop_geometry() {
    let (w, h) = (500usize, 375usize);
    let area = (w * h) as f64;
    let t = TrainTransform::default(); // scale [0.08, 1], ratio [0.75, 1.333]
    let (mut min_s, mut max_s, mut min_r, mut max_r) = (f64::MAX, 0f64, f64::MAX, 0f64);
    let mut xs = std::collections::HashSet::new();
    for i in 0..3000 {
        let b = t.random_crop_box(w, h, &mut SampleRng::for_sample(1, 0, i));
        assert!(b.width >= 1 && b.height >= 1);
        assert!(b.x + b.width <= w && b.y + b.height <= h, "{b:?}");
        let (bw, bh) = (b.width as f64, b.height as f64);
        // w = round(sqrt(A s a)), h = round(w / a): each side within 1.5 px of the exact one.
        assert!((bw + 1.5) * (bh + 1.5) >= 0.08 * area, "{b:?}");
        assert!((bw - 1.5) * (bh - 1.5) <= 1.0 * area, "{b:?}");
        assert!((bw + 1.5) / (bh - 1.5) >= 0.75, "{b:?}");
        assert!((bw - 1.5) / (bh + 1.5) <= 1.333, "{b:?}");
        min_s = min_s.min(bw * bh / area);
        max_s = max_s.max(bw * bh / area);
        min_r = min_r.min(bw / bh);
        max_r = max_r.max(bw / bh);
        xs.insert(b.x);
    }
    // The draws cover the ranges.
    assert!(min_s < 0.1 && max_s > 0.9, "{min_s} {max_s}");
    assert!(min_r < 0.77 && max_r > 1.3, "{min_r} {max_r}");
    assert!(xs.len() > 200, "{}", xs.len());
}

#[test]
fn crop_fallback_is_the_documented_centre_crop() {
    let t = TrainTransform {
        image_resize: 32,
        scale: [0.99, 1.0],
        ..TrainTransform::default()
    };
    for i in 0..20 {
        let mut rng = SampleRng::for_sample(0, 0, i);
        // Wide: W/H = 100 > 1.333 -> h = 10, w = round(10 * 1.333) = 13, x = round(987 / 2).
        let b = t.random_crop_box(1000, 10, &mut rng);
        let want = CropBox {
            x: 494,
            y: 0,
            width: 13,
            height: 10,
        };
        assert_eq!(b, want);
        // Tall: W/H = 0.01 < 0.75 -> w = 10, h = round(10 / 0.75) = 13, y = round(987 / 2).
        let b = t.random_crop_box(10, 1000, &mut rng);
        let want = CropBox {
            x: 0,
            y: 494,
            width: 10,
            height: 13,
        };
        assert_eq!(b, want);
    }
    // Aspect within ratio but no attempt fits (scale > 1): the whole image.
    let big = TrainTransform {
        scale: [1.5, 2.0],
        ..t.clone()
    };
    let b = big.random_crop_box(300, 300, &mut SampleRng::for_sample(0, 0, 0));
    assert_eq!(
        b,
        CropBox {
            x: 0,
            y: 0,
            width: 300,
            height: 300
        }
    );

    // The fallback output is that crop resized: compare with resize_u8 of the crop itself.
    let data: Vec<u8> = (0..1000 * 10 * 3).map(|i| (i * 31 % 256) as u8).collect();
    let wide = RgbImage::from_raw(1000, 10, data).unwrap();
    let plain = TrainTransform {
        hflip: 0.0,
        color_jitter: [0.0; 3],
        ..t
    };
    let out = plain
        .augment(&wide, &mut SampleRng::for_sample(0, 0, 5))
        .unwrap();
    let mut crop = Vec::new();
    for y in 0..10 {
        crop.extend_from_slice(&wide.data[(y * 1000 + 494) * 3..(y * 1000 + 494 + 13) * 3]);
    }
    let want = resize_u8(&crop, 13, 10, 3, 32, 32, Interpolation::Bicubic).unwrap();
    assert_eq!((out.width, out.height), (32, 32));
    assert_eq!(out.data, want);
}

#[test]
fn output_size_is_always_image_resize() {
    let t = TrainTransform {
        image_resize: 40,
        ..TrainTransform::default()
    };
    for (i, (w, h)) in [(1, 1), (3, 500), (500, 3), (37, 41), (640, 480)]
        .into_iter()
        .enumerate()
    {
        let img = constant(w, h, [10, 200, 30]);
        for k in 0..5 {
            let mut rng = SampleRng::for_sample(9, i as u64, k);
            let out = t.apply(&img, &mut rng).unwrap();
            assert_eq!(out.len(), 3 * 40 * 40, "{w}x{h}");
        }
    }
    assert!(t
        .apply(&RgbImage::default(), &mut SampleRng::for_sample(0, 0, 0))
        .is_err());
}

#[test]
fn flips_mirror_the_same_crop() {
    let img = photo();
    let base = TrainTransform {
        color_jitter: [0.4; 3], // colour ops commute with flips; the draws stay aligned
        ..whole_image(&img, 128)
    };
    for i in 0..4 {
        let key = || SampleRng::for_sample(5, 1, i);
        let b = base.random_crop_box(img.width, img.height, &mut key());
        assert_eq!((b.x, b.y, b.width, b.height), (0, 0, img.width, img.height));
        let plain = base.augment(&img, &mut key()).unwrap();
        let h = TrainTransform {
            hflip: 1.0,
            ..base.clone()
        }
        .augment(&img, &mut key())
        .unwrap();
        let v = TrainTransform {
            vflip: 1.0,
            ..base.clone()
        }
        .augment(&img, &mut key())
        .unwrap();
        let hv = TrainTransform {
            hflip: 1.0,
            vflip: 1.0,
            ..base.clone()
        }
        .augment(&img, &mut key())
        .unwrap();
        for y in 0..128 {
            for x in 0..128 {
                let p = plain.pixel(x, y);
                assert_eq!(h.pixel(127 - x, y), p);
                assert_eq!(v.pixel(x, 127 - y), p);
                assert_eq!(hv.pixel(127 - x, 127 - y), p);
            }
        }
        assert_ne!(h, plain);
    }
}

#[test]
fn flip_probability_is_respected() {
    let img = photo();
    let t = TrainTransform {
        hflip: 0.5,
        ..whole_image(&img, 16)
    };
    let plain = whole_image(&img, 16)
        .augment(&img, &mut SampleRng::for_sample(0, 0, 0))
        .unwrap();
    let mut mirrored = plain.clone();
    flip_horizontal(&mut mirrored);
    let mut flipped = 0;
    for i in 0..400 {
        let out = t
            .augment(&img, &mut SampleRng::for_sample(3, 0, i))
            .unwrap();
        if out == mirrored {
            flipped += 1;
        } else {
            assert_eq!(out, plain);
        }
    }
    assert!((160..240).contains(&flipped), "{flipped}");
}

#[test]
fn brightness_scales_a_constant_image() {
    for (v, f, want) in [
        (100u8, 1.3f32, 130u8),
        (37, 0.6, 22),    // 22.2
        (200, 1.4, 255),  // 280 saturates
        (255, 0.75, 191), // 191.25
        (9, 0.5, 4),      // 4.5 -> 4 (half to even, cvRound)
        (11, 0.5, 6),     // 5.5 -> 6
        (0, 1.4, 0),
    ] {
        let mut img = constant(7, 5, [v, v, v]);
        adjust_brightness(&mut img, f);
        assert!(img.data.iter().all(|&x| x == want), "{v} * {f}");
    }
    // Per channel on a coloured constant image.
    let mut img = constant(4, 4, [10, 100, 250]);
    adjust_brightness(&mut img, 1.2);
    assert!(img.data.chunks(3).all(|p| p == [12, 120, 255]));
}

#[test]
fn contrast_on_a_constant_grey_image_is_the_identity() {
    for v in [0u8, 1, 77, 128, 254, 255] {
        for f in [0.0f32, 0.6, 0.93, 1.0, 1.4] {
            let mut img = constant(6, 3, [v, v, v]);
            adjust_contrast(&mut img, f);
            assert_eq!(img, constant(6, 3, [v, v, v]), "{v} {f}");
        }
    }
    // Contrast 0 on a real image: the uniform mean grey level (rounded half up).
    let img = photo();
    let mut flat = img.clone();
    adjust_contrast(&mut flat, 0.0);
    let n = (img.width * img.height) as f64;
    let mean = img
        .data
        .chunks(3)
        .map(|p| luma(p[0], p[1], p[2]) as f64)
        .sum::<f64>()
        / n;
    let m = (mean + 0.5).floor() as u8;
    assert!(flat.data.iter().all(|&x| x == m));
}

#[test]
fn saturation_zero_gives_the_601_grey() {
    let img = photo();
    let mut grey = img.clone();
    adjust_saturation(&mut grey, 0.0);
    for (p, g) in img.data.chunks(3).zip(grey.data.chunks(3)) {
        assert!(g[0] == g[1] && g[1] == g[2]);
        let exact = p[0] as f64 * 0.299 + p[1] as f64 * 0.587 + p[2] as f64 * 0.114;
        assert!((g[0] as f64 - exact).abs() <= 0.52, "{p:?} -> {}", g[0]);
        assert_eq!(g[0], luma(p[0], p[1], p[2]));
    }
    // Saturation on a grey image changes nothing.
    let mut again = grey.clone();
    adjust_saturation(&mut again, 1.37);
    assert_eq!(again, grey);
}

#[test]
fn colour_jitter_draws_factors_in_range() {
    // A constant grey image stays constant grey through contrast and saturation; brightness
    // scales it by its factor ~ U[0.6, 1.4).
    let img = constant(50, 40, [100, 100, 100]);
    let t = TrainTransform {
        image_resize: 8,
        hflip: 0.0,
        ..TrainTransform::default()
    };
    let (mut lo, mut hi) = (255u8, 0u8);
    for i in 0..300 {
        let out = t
            .augment(&img, &mut SampleRng::for_sample(0, 0, i))
            .unwrap();
        let v = out.data[0];
        assert!(out.data.iter().all(|&x| x == v));
        assert!((60..=140).contains(&v), "{v}");
        lo = lo.min(v);
        hi = hi.max(v);
    }
    assert!(lo < 65 && hi > 135, "{lo} {hi}");
}

#[test]
fn zero_jitter_is_crop_resize_and_flips_only() {
    let img = photo();
    let t = TrainTransform {
        image_resize: 64,
        color_jitter: [0.0; 3],
        hflip: 0.5,
        vflip: 0.5,
        ..TrainTransform::default()
    };
    for i in 0..6 {
        let out = t
            .augment(&img, &mut SampleRng::for_sample(11, 0, i))
            .unwrap();
        // Replay the documented draw order: crop, hflip, vflip.
        let mut rng = SampleRng::for_sample(11, 0, i);
        let b = t.random_crop_box(img.width, img.height, &mut rng);
        let mut crop = Vec::new();
        for y in b.y..b.y + b.height {
            let s = (y * img.width + b.x) * 3;
            crop.extend_from_slice(&img.data[s..s + b.width * 3]);
        }
        let data = resize_u8(&crop, b.width, b.height, 3, 64, 64, Interpolation::Bicubic).unwrap();
        let mut want = RgbImage::from_raw(64, 64, data).unwrap();
        if rng.bernoulli(0.5) {
            flip_horizontal(&mut want);
        }
        if rng.bernoulli(0.5) {
            flip_vertical(&mut want);
        }
        assert_eq!(out, want, "{i}");
    }
}

#[test]
fn whole_image_crop_equals_resize_and_normalize() {
    let img = photo();
    for interp in [Interpolation::Bicubic, Interpolation::Bilinear] {
        let t = TrainTransform {
            interpolation: interp,
            ..whole_image(&img, 224)
        };
        let out = t.apply(&img, &mut SampleRng::for_sample(1, 2, 3)).unwrap();
        let data = resize_u8(&img.data, img.width, img.height, 3, 224, 224, interp).unwrap();
        let want = normalize_chw(&RgbImage::from_raw(224, 224, data).unwrap());
        assert_eq!(bits(&out), bits(&want), "{interp}");
    }
    // apply_path decodes the same image.
    let path = &samples()[3].0;
    let t = whole_image(&img, 224);
    assert_eq!(
        bits(
            &t.apply_path(path, &mut SampleRng::for_sample(0, 0, 0))
                .unwrap()
        ),
        bits(&t.apply(&img, &mut SampleRng::for_sample(0, 0, 0)).unwrap())
    );
}
