//! The C ABI's transform entry points under hostile input: sizes and fractions out of range,
//! invalid enum values written from C, NULL and misaligned pointers, truncated images, recipe
//! files that are not recipes, forward sizes the input does not have. Each is refused with the
//! status and the message naming the field, file, key or value, and leaves the output untouched.
mod common;

use std::ffi::CString;
use std::path::Path;

use senet::checkpoint::save_params;
use senet::data::{EvalTransform, Interpolation, IMAGENET_MEAN, IMAGENET_STD};
use senet::ffi::model::{senet_model_forward, senet_model_free};
use senet::ffi::preprocess::{senet_preprocess_file_transform, senet_preprocess_memory_transform};
use senet::ffi::transform::{senet_transform_default, senet_transform_from_recipe};
use senet::ffi::{SenetInterpolation, SenetPreprocess, SenetStatus, SenetTransform};
use senet::model::{Arch, SeNet};

use common::transform::*;

/// Output buffers of `senet_preprocess_*_transform` sized for `t` or for 224 when `t` is out of
/// range, so a refusal is the transform's and not the buffer's.
fn room(t: &SenetTransform) -> usize {
    if (1..=512).contains(&t.image_resize) {
        3 * t.image_resize * t.image_resize
    } else {
        3 * 224 * 224
    }
}

#[test]
fn hostile_transform_fields_are_refused_naming_field_and_value() {
    let ok = default_transform();
    let t = |f: &dyn Fn(&mut SenetTransform)| {
        let mut t = ok;
        f(&mut t);
        t
    };
    let bad = SenetStatus::InvalidArgument;
    let cases: Vec<(SenetTransform, &[&str])> = vec![
        (
            t(&|t| t.image_resize = 65536),
            &["image_resize 65536", "more than 16384"],
        ),
        (
            t(&|t| t.image_resize = u32::MAX as usize),
            &["image_resize 4294967295", "more than 16384"],
        ),
        (
            t(&|t| t.image_resize = usize::MAX),
            &["image_resize 18446744073709551615", "more than 16384"],
        ),
        // 3 * side^2 overflows usize here: refused before any size is computed.
        (
            t(&|t| t.image_resize = 1 << 33),
            &["image_resize 8589934592", "more than 16384"],
        ),
        (
            t(&|t| t.crop_pct = f64::INFINITY),
            &["crop_pct must be a positive number, got inf"],
        ),
        (
            t(&|t| t.crop_pct = f64::NEG_INFINITY),
            &["crop_pct must be a positive number, got -inf"],
        ),
        (
            t(&|t| t.crop_pct = -0.875),
            &["crop_pct must be a positive number, got -0.875"],
        ),
        (
            t(&|t| t.crop_pct = 0.0),
            &["crop_pct must be a positive number, got 0"],
        ),
        (
            t(&|t| t.crop_pct = -0.0),
            &["crop_pct must be a positive number, got -0"],
        ),
        // 224 / 5e-324 is infinite: the resized side saturates, refused as too large.
        (
            t(&|t| t.crop_pct = f64::from_bits(1)),
            &["crop_pct 0.000", "more than 16384"],
        ),
        (t(&|t| t.crop_pct = f64::MAX), &["rounds down to 0"]),
        (
            t(&|t| t.interpolation = -1),
            &["transform.interpolation -1"],
        ),
        (
            t(&|t| t.interpolation = i32::MIN),
            &["transform.interpolation -2147483648"],
        ),
        (t(&|t| t.preprocess = -1), &["unknown preprocess -1"]),
        (
            t(&|t| t.preprocess = i32::MAX),
            &["unknown preprocess 2147483647"],
        ),
        (
            t(&|t| t.std = [58.0, -1.0, 57.0]),
            &["std must be positive", "-1.0"],
        ),
        (
            t(&|t| t.std = [58.0, -0.0, 57.0]),
            &["std must be positive", "-0.0"],
        ),
        (
            t(&|t| t.std = [f32::NAN, 57.0, 57.0]),
            &["transform: std must be positive and finite", "NaN"],
        ),
        (
            t(&|t| t.std = [58.0, 57.0, f32::NEG_INFINITY]),
            &["transform: std must be positive and finite", "-inf"],
        ),
        (
            t(&|t| t.mean = [0.0, f32::INFINITY, 0.0]),
            &["transform: mean must be finite", "inf"],
        ),
    ];
    for (t, needles) in cases {
        let (st, out, msg) = preprocess(&t, room(&t));
        assert_eq!(st, bad, "{t:?}: {msg}");
        for n in needles {
            assert!(msg.contains(n), "{t:?}: {n:?} not in {msg:?}");
        }
        assert!(out.iter().all(|v| v.is_nan()), "{t:?} wrote its output");
    }
}

#[test]
fn the_smallest_and_odd_sizes_preprocess_to_exactly_their_floats() {
    let ok = default_transform();
    // image_resize 1 (short side floor(1 / 0.875) = 1), 1 with crop_pct 2 (short side 0:
    // refused), 3 bilinear timm, 225.
    for (side, crop_pct, interp, pre) in [
        (
            1,
            0.875,
            SenetInterpolation::Bicubic,
            SenetPreprocess::Mindcv,
        ),
        (3, 1.0, SenetInterpolation::Bilinear, SenetPreprocess::Timm),
        (
            225,
            0.95,
            SenetInterpolation::Bicubic,
            SenetPreprocess::Timm,
        ),
        (
            17,
            1.5,
            SenetInterpolation::Bilinear,
            SenetPreprocess::Mindcv,
        ),
    ] {
        let t = SenetTransform {
            image_resize: side,
            crop_pct,
            interpolation: interp as i32,
            preprocess: pre as i32,
            ..ok
        };
        let n = 3 * side * side;
        let (st, x, msg) = preprocess(&t, n + 1);
        assert_eq!(st, SenetStatus::Ok, "{t:?}: {msg}");
        let want = EvalTransform::new(
            side,
            crop_pct,
            match interp {
                SenetInterpolation::Bicubic => Interpolation::Bicubic,
                SenetInterpolation::Bilinear => Interpolation::Bilinear,
            },
            IMAGENET_MEAN,
            IMAGENET_STD,
        )
        .unwrap()
        .with_preprocess(match pre {
            SenetPreprocess::Mindcv => senet::data::Preprocess::MindCv,
            SenetPreprocess::Timm => senet::data::Preprocess::Timm,
        })
        .apply_path(&photo())
        .unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&x[..n]), bits(&want), "{t:?}");
        assert!(x[n].is_nan(), "{t:?} wrote past its image");
        // One float short.
        let (st, _, msg) = preprocess(&t, n - 1);
        assert_eq!(st, SenetStatus::BufferTooSmall, "{msg}");
        assert_eq!(msg, format!("out holds {} values, {n} needed", n - 1));
    }
    let t = SenetTransform {
        image_resize: 1,
        crop_pct: 2.0,
        ..ok
    };
    let (st, _, msg) = preprocess(&t, 3);
    assert_eq!(st, SenetStatus::InvalidArgument, "{msg}");
    assert_eq!(
        msg,
        "transform: image_resize 1 / crop_pct 2 rounds down to 0"
    );
}

#[test]
fn null_and_misaligned_pointers_are_refused_in_every_position() {
    let t = default_transform();
    let path = CString::new(photo().to_str().unwrap()).unwrap();
    let bytes = std::fs::read(photo()).unwrap();
    let n = 3 * 224 * 224;
    // One float of room for the misaligned `out` below.
    let mut out = vec![f32::NAN; n + 1];
    let o = out.as_mut_ptr();
    let null_f = std::ptr::null_mut::<f32>();
    let null_t = std::ptr::null::<SenetTransform>();
    let check = |st: SenetStatus, want: SenetStatus, msg: &str| {
        assert_eq!(st, want, "{}", last_error());
        assert_eq!(last_error(), msg);
    };
    let np = SenetStatus::NullPointer;
    // SAFETY: every pointer is NULL (reported) or valid for the length passed.
    unsafe {
        check(
            senet_preprocess_file_transform(std::ptr::null(), &t, o, n),
            np,
            "path is NULL",
        );
        check(
            senet_preprocess_file_transform(path.as_ptr(), null_t, o, n),
            np,
            "transform is NULL",
        );
        check(
            senet_preprocess_file_transform(path.as_ptr(), &t, null_f, n),
            np,
            "out is NULL",
        );
        check(
            senet_preprocess_memory_transform(std::ptr::null(), bytes.len(), &t, o, n),
            np,
            "data is NULL",
        );
        check(
            senet_preprocess_memory_transform(bytes.as_ptr(), bytes.len(), null_t, o, n),
            np,
            "transform is NULL",
        );
        check(
            senet_preprocess_memory_transform(bytes.as_ptr(), bytes.len(), &t, null_f, n),
            np,
            "out is NULL",
        );
        check(
            senet_preprocess_memory_transform(bytes.as_ptr(), 0, &t, o, n),
            SenetStatus::InvalidArgument,
            "data is empty (data_len 0)",
        );
        check(
            senet_transform_default(std::ptr::null_mut()),
            np,
            "out is NULL",
        );
        let mut slot = t;
        check(
            senet_transform_from_recipe(std::ptr::null(), &mut slot),
            np,
            "recipe_path is NULL",
        );
        let recipe = CString::new(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("configs/senet/seresnet18_cifar10_cpu.yaml")
                .to_str()
                .unwrap(),
        )
        .unwrap();
        check(
            senet_transform_from_recipe(recipe.as_ptr(), std::ptr::null_mut()),
            np,
            "out is NULL",
        );
        let empty = CString::new("").unwrap();
        check(
            senet_transform_from_recipe(empty.as_ptr(), &mut slot),
            SenetStatus::InvalidArgument,
            "recipe_path is an empty path",
        );
        // A transform and an output buffer at odd addresses.
        let mut raw = vec![0u64; std::mem::size_of::<SenetTransform>() / 8 + 2];
        let odd_t = (raw.as_mut_ptr() as *mut u8).add(1) as *mut SenetTransform;
        check(
            senet_transform_default(odd_t),
            SenetStatus::InvalidArgument,
            "out is not aligned to 8 bytes",
        );
        check(
            senet_preprocess_file_transform(path.as_ptr(), odd_t, o, n),
            SenetStatus::InvalidArgument,
            "transform is not aligned to 8 bytes",
        );
        let odd_out = (o as *mut u8).add(1) as *mut f32;
        check(
            senet_preprocess_memory_transform(bytes.as_ptr(), bytes.len(), &t, odd_out, n),
            SenetStatus::InvalidArgument,
            "out is not aligned to 4 bytes",
        );
    }
    assert!(
        out.iter().all(|v| v.is_nan()),
        "a refused call wrote its output"
    );
}

#[test]
fn truncated_and_garbage_images_in_memory_are_format_errors() {
    let t = default_transform();
    let jpeg = std::fs::read(photo()).unwrap();
    let mut png = Vec::new();
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8, y as u8, 7]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("half a JPEG", jpeg[..jpeg.len() / 2].to_vec()),
        ("a JPEG header only", jpeg[..200].to_vec()),
        ("half a PNG", png[..png.len() / 2].to_vec()),
        ("a PNG signature only", png[..8].to_vec()),
        ("text", b"not an image at all".to_vec()),
        ("one byte", vec![0xff]),
    ];
    for (what, data) in cases {
        let mut out = vec![f32::NAN; 3 * 224 * 224];
        // SAFETY: buffers of the lengths passed, not overlapping.
        let st = unsafe {
            senet_preprocess_memory_transform(
                data.as_ptr(),
                data.len(),
                &t,
                out.as_mut_ptr(),
                out.len(),
            )
        };
        let msg = last_error();
        assert_eq!(st, SenetStatus::Format, "{what}: {msg}");
        assert!(msg.starts_with("in-memory image: "), "{what}: {msg}");
        assert!(out.iter().all(|v| v.is_nan()), "{what} wrote its output");
    }
    // The complete PNG goes through at 32.
    let t32 = SenetTransform {
        image_resize: 32,
        ..t
    };
    let mut out = vec![f32::NAN; 3 * 32 * 32];
    // SAFETY: as above.
    let st = unsafe {
        senet_preprocess_memory_transform(
            png.as_ptr(),
            png.len(),
            &t32,
            out.as_mut_ptr(),
            out.len(),
        )
    };
    assert_eq!(st, SenetStatus::Ok, "{}", last_error());
    assert!(out.iter().all(|v| v.is_finite()));
}

#[test]
fn hostile_recipe_files_are_refused_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let before = default_transform();
    let call = |p: &Path| {
        use std::os::unix::ffi::OsStrExt;
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        let mut t = before;
        // SAFETY: a NUL-terminated path and a writable struct.
        let st = unsafe { senet_transform_from_recipe(c.as_ptr(), &mut t) };
        if st != SenetStatus::Ok {
            assert_eq!(t, before, "{}: out written on failure", p.display());
        }
        (st, last_error(), t)
    };
    // A directory, a missing file with a non-UTF-8 name.
    let (st, msg, _) = call(dir.path());
    assert_eq!(st, SenetStatus::Io, "{msg}");
    assert!(msg.contains(dir.path().to_str().unwrap()), "{msg}");
    let odd: &std::ffi::OsStr = std::os::unix::ffi::OsStrExt::from_bytes(b"r\xffe.yaml");
    let (st, msg, _) = call(&dir.path().join(odd));
    assert_eq!(st, SenetStatus::Io, "{msg}");
    assert!(msg.contains("r\u{fffd}e.yaml"), "{msg}");
    let bad = dir.path().join("bad.yaml");
    // Not UTF-8.
    std::fs::write(&bad, b"image_resize: 32\n# \xff\xfe\n").unwrap();
    let (st, msg, _) = call(&bad);
    assert_eq!(st, SenetStatus::Format, "{msg}");
    assert!(
        msg.contains("bad.yaml") && msg.contains("not UTF-8"),
        "{msg}"
    );
    let inv = SenetStatus::InvalidArgument;
    let mut failed = Vec::new();
    for (text, needles) in [
        ("image_resize: [\n", &["bad.yaml"][..]),
        ("image_resize: abc\n", &["bad.yaml", "image_resize"][..]),
        ("image_resize: -5\n", &["bad.yaml", "image_resize"][..]),
        ("image_resize: 1.5\n", &["bad.yaml", "image_resize"][..]),
        (
            "image_resize: 99999999999999999999999\n",
            &["bad.yaml", "image_resize"][..],
        ),
        (
            "image_resize: 65536\n",
            &["bad.yaml", "image_resize 65536", "more than 16384"][..],
        ),
        (
            "crop_pct: .nan\n",
            &["bad.yaml", "non-finite float `.nan`", "line 1, column 11"][..],
        ),
        (
            "crop_pct: .inf\n",
            &["bad.yaml", "non-finite float `.inf`", "line 1, column 11"][..],
        ),
        ("crop_pct: [1]\n", &["bad.yaml", "crop_pct"][..]),
        ("interpolation: 5\n", &["bad.yaml", "interpolation"][..]),
        (
            "std: [0, 1, 1]\n",
            &["bad.yaml", "std must be positive"][..],
        ),
        (
            "std: [.nan, 1, 1]\n",
            &["bad.yaml", "non-finite float `.nan`", "line 1, column 7"][..],
        ),
        (
            "std: [1, .inf, 1]\n",
            &["bad.yaml", "non-finite float `.inf`", "line 1, column 10"][..],
        ),
        (
            "mean: [.inf, 0, 0]\n",
            &["bad.yaml", "non-finite float `.inf`", "line 1, column 8"][..],
        ),
        (
            "mean: [.nan, 0, 0]\n",
            &["bad.yaml", "non-finite float `.nan`", "line 1, column 8"][..],
        ),
        // Finite in YAML, out of f32's range: infinite once read.
        (
            "std: [1, 1e39, 1]\n",
            &["bad.yaml: std must be positive and finite, got [1.0, inf, 1.0]"][..],
        ),
        (
            "mean: [1e39, 0, 0]\n",
            &["bad.yaml: mean must be finite, got [inf, 0.0, 0.0]"][..],
        ),
        (
            "std: [1, 1e-50, 1]\n",
            &["bad.yaml", "std must be positive"][..],
        ),
        ("mean: 1\n", &["bad.yaml", "mean"][..]),
        ("imag_resize: 32\n", &["bad.yaml", "imag_resize"][..]),
    ] {
        std::fs::write(&bad, text).unwrap();
        let (st, msg, _) = call(&bad);
        if st != inv || !needles.iter().all(|n| msg.contains(n)) {
            failed.push(format!("{text:?}: {st:?} {msg:?}"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
    // A sparse recipe of 8 GiB is refused from its size, before anything is read.
    let huge = dir.path().join("huge.yaml");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(8 << 30).unwrap();
    let (st, msg, _) = call(&huge);
    assert_eq!(st, SenetStatus::Format, "{msg}");
    assert!(
        msg.contains("huge.yaml")
            && msg.contains("8589934592 bytes, more than the 1048576 bytes a recipe may have"),
        "{msg}"
    );
    // An empty recipe is MindCV config.py's defaults: 224, crop_pct 0.875, bilinear.
    std::fs::write(&bad, "").unwrap();
    let (st, msg, _) = call(&bad);
    assert_eq!(st, SenetStatus::Ok, "{msg}");
}

#[test]
fn forward_refuses_sizes_its_input_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let net = SeNet::new(Arch::SeResNet18, CLASSES, 7).unwrap();
    let ckpt = dir.path().join("r18.ckpt");
    save_params(&net.params, &ckpt).unwrap();
    let model = c_model(&ckpt);
    // One 32x32 image, as senet_preprocess_*_transform writes it for Fashion-MNIST's recipe.
    let x = vec![0.5f32; 3 * 32 * 32];
    let mut failed = Vec::new();
    // SAFETY: a live model, buffers of the lengths passed.
    unsafe {
        for (batch, h, w, want, msg) in [
            // The 32x32 buffer called a 64x64 image, or two 32x32 images.
            (
                1,
                64,
                64,
                SenetStatus::BufferTooSmall,
                "input holds 3072 values, 12288 needed".to_string(),
            ),
            (
                2,
                32,
                32,
                SenetStatus::BufferTooSmall,
                "input holds 3072 values, 6144 needed".to_string(),
            ),
            // Sizes whose product overflows.
            (
                1,
                usize::MAX,
                2,
                SenetStatus::InvalidArgument,
                format!("input: size [1, 3, {}, 2] overflows", usize::MAX),
            ),
            (
                1 << 31,
                1 << 16,
                1 << 16,
                SenetStatus::InvalidArgument,
                format!("input: size [{}, 3, 65536, 65536] overflows", 1usize << 31),
            ),
            // Below the 32 pixels the header states (the network's five stride-2 stages).
            (
                3,
                32,
                32,
                SenetStatus::BufferTooSmall,
                "input holds 3072 values, 9216 needed".to_string(),
            ),
            (
                1,
                31,
                33,
                SenetStatus::InvalidArgument,
                "shape: input must be (N, 3, H, W) with N >= 1 and H, W >= 32, got [1, 3, 31, 33]"
                    .to_string(),
            ),
            (
                1,
                1,
                1,
                SenetStatus::InvalidArgument,
                "shape: input must be (N, 3, H, W) with N >= 1 and H, W >= 32, got [1, 3, 1, 1]"
                    .to_string(),
            ),
            (
                1,
                16,
                64,
                SenetStatus::InvalidArgument,
                "shape: input must be (N, 3, H, W) with N >= 1 and H, W >= 32, got [1, 3, 16, 64]"
                    .to_string(),
            ),
        ] {
            let mut logits = vec![f32::NAN; batch.min(4) * CLASSES];
            let st = senet_model_forward(
                model,
                x.as_ptr(),
                x.len(),
                batch,
                h,
                w,
                logits.as_mut_ptr(),
                logits.len(),
            );
            let got = last_error();
            if st != want || got != msg || !logits.iter().all(|v| v.is_nan()) {
                failed.push(format!("{batch}x3x{h}x{w}: {st:?} {got:?}"));
            }
        }
        // The same buffer at its own size runs.
        let mut logits = vec![f32::NAN; CLASSES];
        let st = senet_model_forward(
            model,
            x.as_ptr(),
            x.len(),
            1,
            32,
            32,
            logits.as_mut_ptr(),
            CLASSES,
        );
        assert_eq!(st, SenetStatus::Ok, "{}", last_error());
        assert!(logits.iter().all(|v| v.is_finite()));
        assert_eq!(senet_model_free(model), SenetStatus::Ok);
    }
    assert!(failed.is_empty(), "{failed:#?}");
}
