//! The C ABI at a recipe's image size (`SenetTransform`, `senet_transform_*`,
//! `senet_preprocess_*_transform`), called in process: the preprocessed images and the logits
//! of `senet_model_forward` at that size equal the Rust path's (`engine::eval_transform` of the
//! recipe, `InferenceNet::forward`) bit for bit, and transforms out of range are refused with
//! a status and a message naming the field.
mod common;

use std::ffi::CString;
use std::path::Path;

use senet::checkpoint::save_params;
use senet::config::Recipe;
use senet::data::{EvalTransform, Interpolation, IMAGENET_MEAN, IMAGENET_STD};
use senet::engine::device::{inference, Device};
use senet::ffi::preprocess::senet_preprocess_file_transform;
use senet::ffi::transform::senet_transform_from_recipe;
use senet::ffi::{SenetInterpolation, SenetPreprocess, SenetStatus, SenetTransform};
use senet::model::{Arch, SeNet};
use senet::Tensor;

use common::transform::*;

#[test]
fn a_recipes_size_preprocesses_and_runs_as_the_rust_path_does() {
    let dir = tempfile::tempdir().unwrap();
    let net = SeNet::new(Arch::SeResNet18, CLASSES, 7).unwrap();
    let ckpt = dir.path().join("r18.ckpt");
    save_params(&net.params, &ckpt).unwrap();
    let mut rust_net = inference(&net, Device::Cpu { threads: 1 }).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Fashion-MNIST's 32 and CIFAR-10's 64 (bilinear, crop_pct 1, their own mean/std).
    for (recipe, side) in [
        ("configs/senet/seresnet18_fashion_mnist_cpu.yaml", 32),
        ("configs/senet/seresnet18_cifar10_cpu.yaml", 64),
    ] {
        let path = root.join(recipe);
        let (st, t) = from_recipe(&path);
        assert_eq!(st, SenetStatus::Ok, "{recipe}: {}", last_error());
        let r = Recipe::from_yaml_file(&path).unwrap();
        let want_t = senet::engine::eval_transform(&r).unwrap();
        assert_eq!(t.image_resize, side, "{recipe}");
        assert_eq!(t.crop_pct, r.crop_pct, "{recipe}");
        assert_eq!(t.interpolation, SenetInterpolation::Bilinear as i32);
        assert_eq!(t.preprocess, SenetPreprocess::Mindcv as i32);
        assert_eq!((t.mean, t.std), (want_t.mean, want_t.std), "{recipe}");

        let n = 3 * side * side;
        let (st, x, msg) = preprocess(&t, n + 5);
        assert_eq!(st, SenetStatus::Ok, "{recipe}: {msg}");
        let want_x = want_t.apply_path(&photo()).unwrap();
        assert_eq!(want_x.len(), n);
        assert!(x[..n]
            .iter()
            .zip(&want_x)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(x[n..].iter().all(|v| v.is_nan()), "wrote past the image");

        let got = c_forward(&ckpt, &x[..n], side);
        let want = rust_net
            .forward(&Tensor::from_vec(&[1, 3, side, side], want_x).unwrap())
            .unwrap();
        assert_eq!(want.shape, [1, CLASSES]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want.data), "{recipe}");
    }
}

#[test]
fn the_default_transform_with_other_fields_is_that_eval_transform() {
    // 160 at the default crop_pct (short side 182), timm's arithmetic, bicubic.
    let mut t = default_transform();
    assert_eq!(t.image_resize, 224);
    t.image_resize = 160;
    t.preprocess = SenetPreprocess::Timm as i32;
    let (st, x, msg) = preprocess(&t, 3 * 160 * 160);
    assert_eq!(st, SenetStatus::Ok, "{msg}");
    let want = EvalTransform::new(
        160,
        0.875,
        Interpolation::Bicubic,
        IMAGENET_MEAN,
        IMAGENET_STD,
    )
    .unwrap()
    .with_preprocess(senet::data::Preprocess::Timm);
    assert_eq!(want.resize_size, 182);
    let want = want.apply_path(&photo()).unwrap();
    assert!(x.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn transforms_out_of_range_are_refused_naming_the_field() {
    let ok = default_transform();
    let cases: Vec<(SenetTransform, SenetStatus, &[&str])> = vec![
        (
            SenetTransform {
                image_resize: 0,
                ..ok
            },
            SenetStatus::InvalidArgument,
            &["image_resize must be positive"],
        ),
        (
            SenetTransform {
                image_resize: 20000,
                ..ok
            },
            SenetStatus::InvalidArgument,
            &["image_resize 20000", "more than 16384"],
        ),
        (
            SenetTransform {
                crop_pct: 0.01,
                ..ok
            },
            SenetStatus::InvalidArgument,
            &["22400 pixels", "more than 16384"],
        ),
        (
            SenetTransform {
                crop_pct: f64::NAN,
                ..ok
            },
            SenetStatus::InvalidArgument,
            &["crop_pct must be a positive number"],
        ),
        (
            SenetTransform {
                interpolation: 9,
                ..ok
            },
            SenetStatus::InvalidArgument,
            &[
                "transform.interpolation 9",
                "SENET_INTERPOLATION_BILINEAR = 1",
            ],
        ),
        (
            SenetTransform {
                preprocess: 5,
                ..ok
            },
            SenetStatus::InvalidArgument,
            &["unknown preprocess 5"],
        ),
        (
            SenetTransform {
                std: [58.0, 0.0, 57.0],
                ..ok
            },
            SenetStatus::InvalidArgument,
            &["std must be positive"],
        ),
        (
            SenetTransform {
                std: [58.0, f32::INFINITY, 57.0],
                ..ok
            },
            SenetStatus::InvalidArgument,
            &["transform: std must be positive and finite"],
        ),
        (
            SenetTransform {
                mean: [f32::NAN, 0.0, 0.0],
                ..ok
            },
            SenetStatus::InvalidArgument,
            &["transform: mean must be finite"],
        ),
    ];
    for (t, status, needles) in cases {
        let (st, out, msg) = preprocess(&t, 3 * 224 * 224);
        assert_eq!(st, status, "{t:?}: {msg}");
        for n in needles {
            assert!(msg.contains(n), "{n:?} not in {msg:?}");
        }
        assert!(out.iter().all(|v| v.is_nan()), "{t:?} wrote its output");
    }
    // A buffer for 224x224 is too small for 225x225: the message gives both counts.
    let t = SenetTransform {
        image_resize: 225,
        ..ok
    };
    let (st, _, msg) = preprocess(&t, 3 * 224 * 224);
    assert_eq!(st, SenetStatus::BufferTooSmall, "{msg}");
    assert!(msg.contains("151875") && msg.contains("150528"), "{msg}");
    // NULL transform.
    let path = CString::new(photo().to_str().unwrap()).unwrap();
    let mut out = vec![0f32; 3 * 224 * 224];
    // SAFETY: NULL is allowed and reported; the other arguments are valid.
    let st = unsafe {
        senet_preprocess_file_transform(
            path.as_ptr(),
            std::ptr::null(),
            out.as_mut_ptr(),
            out.len(),
        )
    };
    assert_eq!(st, SenetStatus::NullPointer);
    assert!(
        last_error().contains("transform is NULL"),
        "{}",
        last_error()
    );
}

#[test]
fn recipes_that_cannot_give_a_transform_are_refused_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (st, _) = from_recipe(&dir.path().join("missing.yaml"));
    assert_eq!(st, SenetStatus::Io, "{}", last_error());
    assert!(last_error().contains("missing.yaml"), "{}", last_error());
    for (text, needles) in [
        (
            "image_resize: 0\n",
            &["bad.yaml", "image_resize must be positive"][..],
        ),
        ("crop_pct: -1\n", &["bad.yaml", "crop_pct"][..]),
        ("interpolation: \"nearest\"\n", &["bad.yaml", "nearest"][..]),
        (
            "mean: [1, 2]\n",
            &["bad.yaml", "mean must have 3 values"][..],
        ),
    ] {
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, text).unwrap();
        let before = default_transform();
        let c = CString::new(bad.to_str().unwrap()).unwrap();
        let mut t = before;
        // SAFETY: a NUL-terminated path and a writable struct.
        let st = unsafe { senet_transform_from_recipe(c.as_ptr(), &mut t) };
        assert_eq!(st, SenetStatus::InvalidArgument, "{text}: {}", last_error());
        for n in needles {
            assert!(last_error().contains(n), "{n:?} not in {:?}", last_error());
        }
        assert_eq!(t, before, "{text}: out written on failure");
    }
}
