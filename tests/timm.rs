//! timm compatibility against what timm 1.0 / PyTorch computed (`tests/data/timm/`, made by
//! `scripts/make_timm_golden.py`): timm's eval transform on 8 real photos of
//! `shared/datasets/imagenet-sample`.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use senet::checkpoint::{self, timm, timm::TimmLayout, Checkpoint, LoadOptions};
use senet::data::{decode_file, EvalTransform, Preprocess};
use senet::engine::device::{inference, Device};
use senet::model::{formula_input, Arch, SeNet, StemPool};
use senet::tensor::{DType, RawTensor};
use senet::Tensor;

/// A file of `tests/data/timm/`.
fn timm_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/timm")
        .join(name)
}

/// The 8 photos of the golden files, in their order.
fn photos() -> Vec<PathBuf> {
    let list = std::fs::read_to_string(timm_data("files.txt")).unwrap();
    let files: Vec<PathBuf> = list
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| common::shared().join(l))
        .collect();
    assert_eq!(files.len(), 8);
    files
}

/// `pixels` of `pixels.npz`: what PIL's resize and torchvision's centre crop gave, before
/// ToTensor, (8, 224, 224, 3) u8.
fn pil_pixels() -> Vec<u8> {
    let mut npz = npyz::npz::NpzArchive::open(timm_data("pixels.npz")).unwrap();
    let npy = npz.by_name("pixels").unwrap().unwrap();
    assert_eq!(npy.shape(), &[8, 224, 224, 3]);
    npy.into_vec::<u8>().unwrap()
}

#[test]
fn timm_transform_matches_pil_on_real_photos() {
    let want = pil_pixels();
    let t = EvalTransform::default().with_preprocess(Preprocess::Timm);
    let per = 224 * 224 * 3;
    let mut worst = 0u8;
    for (i, path) in photos().iter().enumerate() {
        let img = decode_file(path).unwrap();
        let ours = t.pixels(&img).unwrap();
        assert_eq!((ours.width, ours.height), (224, 224));
        let pil = &want[i * per..(i + 1) * per];
        let diff: Vec<u8> = ours
            .data
            .iter()
            .zip(pil)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let max = diff.iter().copied().max().unwrap();
        let off = diff.iter().filter(|&&d| d > 0).count();
        println!(
            "{} ({}x{}): max |diff| {max} grey levels, {off} of {per} values differ",
            path.display(),
            img.width,
            img.height
        );
        worst = worst.max(max);
    }
    // Both decode with libjpeg-turbo and resize with Pillow's integer arithmetic: equal. (The
    // issue allows one grey level; more would mean the resampler is not Pillow's.)
    assert_eq!(worst, 0, "max |diff| {worst} grey levels");
}

// ---------------------------------------------------------------------------------------------
// Weights: timm's names, the state dicts timm saved (manifests), and timm's logits.

/// The three timm networks of the golden files: (file stem, senet model, layout).
const NETWORKS: [(&str, Arch, TimmLayout); 3] = [
    ("seresnet18", Arch::SeResNet18, TimmLayout::ResNet),
    (
        "seresnext26_32x4d",
        Arch::SeResNeXt26_32x4d,
        TimmLayout::ResNet,
    ),
    (
        "legacy_seresnext26_32x4d",
        Arch::SeResNeXt26_32x4d,
        TimmLayout::Legacy,
    ),
];

/// `arch`'s formula weights (shared/golden/README.md) under MindCV's names.
fn formula_checkpoint(arch: Arch) -> Checkpoint {
    let net = SeNet::formula(arch, 1000).unwrap();
    Checkpoint {
        tensors: net
            .params
            .iter()
            .map(|(s, t)| (s.name.clone(), RawTensor::from_f32(t)))
            .collect(),
        ..Checkpoint::default()
    }
}

/// The formula weights of `arch` as timm's state dict in `layout`, written to `dir`.
fn timm_safetensors(dir: &Path, stem: &str, arch: Arch, layout: TimmLayout) -> PathBuf {
    let path = dir.join(format!("{stem}.safetensors"));
    let (sd, left_out) = timm::to_timm(&formula_checkpoint(arch), layout, &path).unwrap();
    assert!(left_out.is_empty());
    checkpoint::write_checkpoint(&path, &sd).unwrap();
    path
}

/// Max |a - b| / max |b|.
fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    diff / b.iter().map(|y| y.abs()).fold(0.0, f32::max)
}

#[test]
fn senet_writes_the_state_dicts_timm_saved() {
    // The manifests list every tensor of timm's `model.state_dict()` (name, dtype, shape, CRC-32
    // of the bytes) as the golden script saved it: MindCV's formula weights renamed by
    // `to_timm` are those very tensors, num_batches_tracked counters included.
    for (stem, arch, layout) in NETWORKS {
        let (sd, _) = timm::to_timm(&formula_checkpoint(arch), layout, Path::new(stem)).unwrap();
        let mut ours: Vec<String> = sd
            .tensors
            .iter()
            .map(|(n, t)| {
                let dtype = match t.dtype {
                    DType::F32 => "float32",
                    DType::I64 => "int64",
                    other => panic!("{n}: {other:?}"),
                };
                let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
                let crc = crc32fast::hash(&t.bytes);
                format!("{n}\t{dtype}\t{}\t{crc:08x}", shape.join(","))
            })
            .collect();
        ours.sort();
        let manifest = std::fs::read_to_string(timm_data(&format!("{stem}.manifest.tsv"))).unwrap();
        let want: Vec<&str> = manifest.lines().collect();
        assert_eq!(ours.len(), want.len(), "{stem}: tensor count");
        for (o, w) in ours.iter().zip(&want) {
            assert_eq!(o, w, "{stem}");
        }
        // And back: the same MindCV checkpoint, dtype and bytes.
        let back = timm::to_mindcv(&sd, layout, Path::new(stem)).unwrap();
        assert_eq!(
            back.dropped.len(),
            sd.tensors.len() - back.checkpoint.tensors.len()
        );
        let mut a = back.checkpoint.tensors.clone();
        let mut b = formula_checkpoint(arch).tensors;
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        assert!(a == b, "{stem}: round trip");
    }
}

/// timm's transform of the 8 photos, (8, 3, 224, 224).
fn timm_inputs() -> Tensor {
    let t = EvalTransform::default().with_preprocess(Preprocess::Timm);
    let mut data = Vec::new();
    for p in photos() {
        data.extend(t.apply_path(&p).unwrap());
    }
    Tensor::from_vec(&[8, 3, 224, 224], data).unwrap()
}

#[test]
fn timm_resnet_weights_run_timms_stem_pool_and_only_it_differs_from_mindcv() {
    // timm's resnet.py networks: the load makes senet's network timm's (stem max pool padded by
    // 1 on every side). With the stem pool made MindCV's instead, senet computes what timm
    // computed with MaxPool2d(3, 2, ceil_mode=True) (MindCV's windows at 224): every other
    // tensor and layer is mapped right, and the stem pool is the one difference.
    let dir = tempfile::tempdir().unwrap();
    let x = timm_inputs();
    for (stem, arch, layout) in &NETWORKS[..2] {
        let path = timm_safetensors(dir.path(), stem, *arch, *layout);
        let mut net = SeNet::new(*arch, 1000, 0).unwrap();
        let report = checkpoint::load_model(&mut net, &path, &LoadOptions::default()).unwrap();
        assert_eq!(report.timm, Some(TimmLayout::ResNet));
        assert_eq!(report.loaded, net.params.len());
        assert_eq!(net.stem_pool, StemPool::Pad1);
        for (pool, golden) in [
            (StemPool::Pad1, format!("{stem}_logits.npy")),
            (StemPool::Same, format!("{stem}_ceilpool_logits.npy")),
        ] {
            net.stem_pool = pool;
            let mut inf = inference(&net, Device::Cpu { threads: 2 }).unwrap();
            let logits = inf.forward(&x).unwrap();
            let golden = senet::npy::read_f32(&timm_data(&golden)).unwrap();
            let rel = relative_error(&logits.data, &golden.data);
            println!("{stem} (stem pool {pool:?}): max |ours - timm| / max |timm| = {rel:.2e}");
            // The bound of timm_networks_give_timms_logits_through_predict.
            assert!(rel <= 1e-3, "{stem} {pool:?}: {rel}");
        }
        // A MindCV checkpoint loaded into the same model makes the network MindCV's again.
        let mindcv = dir.path().join(format!("{stem}.ckpt"));
        checkpoint::save_params(&net.params, &mindcv).unwrap();
        net.stem_pool = StemPool::Pad1;
        checkpoint::load_model(&mut net, &mindcv, &LoadOptions::default()).unwrap();
        assert_eq!(net.stem_pool, StemPool::Same);
    }
}

fn senet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_senet"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run senet")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `senet predict --preprocess timm` on the 8 photos: the saved logits, (8, 1000), or the run.
fn predict_timm(model: &str, ckpt: &Path, dir: &Path) -> Result<Tensor, Output> {
    let logits = dir.join(format!("{model}_logits.npy"));
    let photos: Vec<String> = photos().iter().map(|p| s(p).to_string()).collect();
    let mut args = vec![
        "predict",
        "--model",
        model,
        "--ckpt_path",
        s(ckpt),
        "--preprocess",
        "timm",
        "--save_logits",
        s(&logits),
        "--threads",
        "2",
    ];
    args.extend(photos.iter().map(String::as_str));
    let out = senet(&args);
    if !out.status.success() {
        return Err(out);
    }
    Ok(senet::npy::read_f32(&logits).unwrap())
}

#[test]
fn timm_networks_give_timms_logits_through_predict() {
    // The test: timm's seresnet18 and SE-ResNeXt-26 (resnet.py, stem pool padded by 1
    // on every side) and legacy_seresnext26_32x4d, from the files timm saves, through
    // `senet predict --preprocess timm`: timm's logits on 8 photos within 1e-3 relative.
    let dir = tempfile::tempdir().unwrap();
    for (stem, arch, layout) in NETWORKS {
        let ckpt = timm_safetensors(dir.path(), stem, arch, layout);
        let logits = predict_timm(arch.name(), &ckpt, dir.path())
            .unwrap_or_else(|out| panic!("{stem}: predict failed: {}", stderr(&out)));
        let golden = senet::npy::read_f32(&timm_data(&format!("{stem}_logits.npy"))).unwrap();
        assert_eq!(logits.shape, golden.shape);
        let rel = relative_error(&logits.data, &golden.data);
        println!("{stem}: max |senet - timm| / max |timm| = {rel:.2e}");
        // The bound: the inputs are the same (timm_transform_matches_pil_on_real_photos: equal
        // pixels; ToTensor/Normalize round once in f32 both sides), and both networks compute
        // in f32, summing in other orders (GEMM blocking vs PyTorch's conv; senet folds
        // BatchNorm into the conv weights in f64 first). Each dot product of K <= 4608 terms
        // then carries a relative error of order sqrt(K) * 2^-24 ~ 4e-6, and ~30 layers in
        // sequence add up to ~1e-4 at worst; the 1e-3 leaves a tenfold margin (today
        // ~1e-6). It still catches a wrong network: MindCV's stem pool instead of timm's moves
        // the logits by 6.5% (seresnet18) and 7% (SE-ResNeXt-26) of the largest one
        // (meta.json, ceilpool_max_abs_change / logits_absmax).
        assert!(rel <= 1e-3, "{stem}: {rel}");
    }
}

#[test]
fn convert_writes_timm_names_and_reads_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let mindcv = dir.path().join("seresnet18.ckpt");
    let formula = SeNet::formula(Arch::SeResNet18, 1000).unwrap();
    checkpoint::save_params(&formula.params, &mindcv).unwrap();
    let timm_file = dir.path().join("timm.safetensors");
    let out = senet(&["convert", s(&mindcv), s(&timm_file), "--names", "timm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pad the stem max pool by 1"),
        "{}",
        stderr(&out)
    );
    let written = checkpoint::read_checkpoint(&timm_file).unwrap();
    let manifest = std::fs::read_to_string(timm_data("seresnet18.manifest.tsv")).unwrap();
    let names: Vec<&str> = manifest
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    // The manifest lists timm's names by name; senet reads its file back in the order it wrote
    // (MindSpore's, recorded in the metadata for `convert`'s byte-exact round trips).
    let mut got: Vec<&str> = written.names().collect();
    got.sort_unstable();
    assert_eq!(got, names);
    // Back to a MindSpore .ckpt: the tensors senet saved, in MindCV's order.
    let back = dir.path().join("back.ckpt");
    let out = senet(&["convert", s(&timm_file), s(&back)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("read timm resnet.py names"),
        "{}",
        stderr(&out)
    );
    let mut net = SeNet::new(Arch::SeResNet18, 1000, 7).unwrap();
    checkpoint::load_model(&mut net, &back, &LoadOptions::default()).unwrap();
    for ((spec, a), (_, b)) in net.params.iter().zip(formula.params.iter()) {
        assert!(a.data == b.data, "{}", spec.name);
    }
    // timm names need a safetensors file.
    let out = senet(&[
        "convert",
        s(&mindcv),
        s(&dir.path().join("x.ckpt")),
        "--names",
        "timm",
    ]);
    assert!(!out.status.success() && stderr(&out).contains(".safetensors"));
}

// ---------------------------------------------------------------------------------------------
// What is refused, and how the errors read.

/// seresnet18's formula weights as a timm resnet.py state dict, renamed by `rename`.
fn renamed_resnet_sd(arch: Arch, rename: impl Fn(&str) -> String) -> Checkpoint {
    let (sd, _) = timm::to_timm(
        &formula_checkpoint(arch),
        TimmLayout::ResNet,
        Path::new("x"),
    )
    .unwrap();
    Checkpoint {
        tensors: sd
            .tensors
            .into_iter()
            .map(|(n, t)| (rename(&n), t))
            .collect(),
        ..Checkpoint::default()
    }
}

/// resnet.py names as timm's legacy senet.py names them.
fn legacy_name(n: &str) -> String {
    let n = match n.split_once('.') {
        Some(("conv1", rest)) => format!("layer0.conv1.{rest}"),
        Some(("bn1", rest)) => format!("layer0.bn1.{rest}"),
        Some(("fc", rest)) => format!("last_linear.{rest}"),
        _ => n.to_string(),
    };
    n.replace(".se.", ".se_module.")
}

/// Loads `sd` (written to a file in `dir`) into `arch`: the error message.
fn load_error(dir: &Path, sd: &Checkpoint, arch: Arch) -> String {
    let path = dir.join("weights.safetensors");
    checkpoint::write_checkpoint(&path, sd).unwrap();
    let mut net = SeNet::new(arch, 1000, 0).unwrap();
    let err = checkpoint::load_model(&mut net, &path, &LoadOptions::default())
        .expect_err("loaded")
        .to_string();
    assert!(err.contains(s(&path)), "{err}");
    err
}

#[test]
fn networks_timm_computes_otherwise_are_refused_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    // legacy_seresnet18: ReLU before SE, SE width C // 16.
    let sd = renamed_resnet_sd(Arch::SeResNet18, legacy_name);
    let err = load_error(dir.path(), &sd, Arch::SeResNet18);
    assert!(
        err.contains("legacy SE-ResNet-18/34") && err.contains("ReLU"),
        "{err}"
    );
    // legacy_seresnet50: the stride on the first 1x1 conv.
    let sd = renamed_resnet_sd(Arch::SeResNet50, legacy_name);
    let err = load_error(dir.path(), &sd, Arch::SeResNet50);
    assert!(
        err.contains("legacy SE-ResNet-50") && err.contains("1x1"),
        "{err}"
    );
    // A deep stem (timm's seresnext26d_32x4d, ...): named, as every unknown tensor.
    let sd = renamed_resnet_sd(Arch::SeResNet18, |n| {
        n.replace("conv1.weight", "conv1.0.weight")
    });
    let err = load_error(dir.path(), &sd, Arch::SeResNet18);
    assert!(
        err.contains("'conv1.0.weight'") && err.contains("deep-stem"),
        "{err}"
    );
}

#[test]
fn a_different_se_width_names_the_timm_tensor() {
    // timm's SEModule with rd_channels 4 in layer1.0 (MindCV: make_divisible(64 / 16, 8) = 8).
    let dir = tempfile::tempdir().unwrap();
    let mut sd = renamed_resnet_sd(Arch::SeResNet18, str::to_string);
    for (name, t) in &mut sd.tensors {
        let shape = match name.as_str() {
            "layer1.0.se.fc1.weight" => vec![4, 64, 1, 1],
            "layer1.0.se.fc1.bias" => vec![4],
            "layer1.0.se.fc2.weight" => vec![64, 4, 1, 1],
            _ => continue,
        };
        t.bytes.truncate(shape.iter().product::<usize>() * 4);
        t.shape = shape;
    }
    let err = load_error(dir.path(), &sd, Arch::SeResNet18);
    for want in [
        "'layer1.0.se_module.conv_reduce.weight' (timm 'layer1.0.se.fc1.weight' [4, 64, 1, 1]): \
         expected [8, 64], found [4, 64]",
        "(timm 'layer1.0.se.fc2.weight' [64, 4, 1, 1]): expected [64, 8]",
        "(timm 'layer1.0.se.fc1.bias' [4]): expected [8], found [4]",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
}

#[test]
fn pickled_pytorch_files_are_refused_with_the_safetensors_hint() {
    let dir = tempfile::tempdir().unwrap();
    // torch.save writes a zip archive (PyTorch >= 1.6); older ones a bare pickle. Neither is
    // opened: the extension or the first bytes say what it is.
    let cases = [
        ("model.pth", b"PK\x03\x04rest".to_vec()),
        ("model.pt", vec![0x80, 0x02, b'}', b'q']),
        ("lightning.ckpt", b"PK\x03\x04rest".to_vec()),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = checkpoint::read_checkpoint(&path).unwrap_err().to_string();
        assert!(err.contains(s(&path)), "{err}");
        assert!(
            err.contains("safetensors.torch.save_file(model.state_dict()"),
            "{name}: {err}"
        );
    }
}

#[test]
fn c_abi_preprocess_with_timm_is_timms_transform() {
    use senet::ffi::preprocess::{
        senet_preprocess_file_with, senet_preprocess_memory_with, SENET_IMAGE_VALUES,
    };
    use senet::ffi::{SenetPreprocess, SenetStatus};
    let photo = &photos()[1];
    let want = EvalTransform::default()
        .with_preprocess(Preprocess::Timm)
        .apply_path(photo)
        .unwrap();
    let c_path = std::ffi::CString::new(s(photo)).unwrap();
    let mut out = vec![0f32; SENET_IMAGE_VALUES];
    let timm = SenetPreprocess::Timm as i32;
    // SAFETY: a NUL-terminated path and a buffer of SENET_IMAGE_VALUES floats.
    let st =
        unsafe { senet_preprocess_file_with(c_path.as_ptr(), timm, out.as_mut_ptr(), out.len()) };
    assert_eq!(st, SenetStatus::Ok);
    assert!(out == want);
    let bytes = std::fs::read(photo).unwrap();
    out.fill(0.0);
    // SAFETY: `bytes.len()` readable bytes; `out` as above, disjoint.
    let st = unsafe {
        senet_preprocess_memory_with(
            bytes.as_ptr(),
            bytes.len(),
            timm,
            out.as_mut_ptr(),
            out.len(),
        )
    };
    assert_eq!(st, SenetStatus::Ok);
    assert!(out == want);
    // SAFETY: as above.
    let st = unsafe { senet_preprocess_file_with(c_path.as_ptr(), 7, out.as_mut_ptr(), out.len()) };
    assert_eq!(st, SenetStatus::InvalidArgument);
}

#[test]
fn c_abi_forward_runs_timm_weights_with_their_stem_pool() {
    use senet::ffi::model::{
        senet_model_create, senet_model_forward, senet_model_free, senet_model_load,
    };
    use senet::ffi::{SenetModel, SenetStatus};
    let dir = tempfile::tempdir().unwrap();
    // The golden (1, 3, 226, 228) input: the stem conv gives 113 x 114, an odd and an even side,
    // where timm's stem pools (padding 1; ceil mode) and MindCV's place their windows otherwise.
    let (h, w) = (226, 228);
    let x = formula_input("timm_226x228", &[1, 3, h, w]);
    // One forward pass of `x` through `variant` loaded from `ckpt` by the C ABI.
    let forward = |variant: &str, ckpt: &Path| -> Vec<f32> {
        let name = std::ffi::CString::new(variant).unwrap();
        let path = std::ffi::CString::new(s(ckpt)).unwrap();
        let mut model: *mut SenetModel = std::ptr::null_mut();
        let mut logits = vec![0f32; 1000];
        // SAFETY: NUL-terminated strings, a pointer slot, buffers of the lengths passed.
        unsafe {
            assert_eq!(
                senet_model_create(name.as_ptr(), 1000, &mut model),
                SenetStatus::Ok
            );
            assert_eq!(senet_model_load(model, path.as_ptr()), SenetStatus::Ok);
            let st = senet_model_forward(
                model,
                x.data.as_ptr(),
                x.data.len(),
                1,
                h,
                w,
                logits.as_mut_ptr(),
                logits.len(),
            );
            assert_eq!(st, SenetStatus::Ok);
            assert_eq!(senet_model_free(model), SenetStatus::Ok);
        }
        logits
    };
    for (stem, arch, layout) in NETWORKS {
        let ckpt = timm_safetensors(dir.path(), stem, arch, layout);
        let golden =
            senet::npy::read_f32(&timm_data(&format!("{stem}_226x228_logits.npy"))).unwrap();
        let rel = relative_error(&forward(arch.name(), &ckpt), &golden.data);
        println!("{stem} 226x228 (C ABI): max |senet - timm| / max |timm| = {rel:.2e}");
        // The bound of timm_networks_give_timms_logits_through_predict.
        assert!(rel <= 1e-3, "{stem}: {rel}");
        // MindCV's stem pool on this input is another network: the bound tells them apart.
        let mut net = SeNet::new(arch, 1000, 0).unwrap();
        checkpoint::load_model(&mut net, &ckpt, &LoadOptions::default()).unwrap();
        net.stem_pool = StemPool::Same;
        let mindcv = inference(&net, Device::Cpu { threads: 2 })
            .unwrap()
            .forward(&x)
            .unwrap();
        let rel = relative_error(&mindcv.data, &golden.data);
        println!("{stem} 226x228 with MindCV's stem pool: {rel:.2e}");
        assert!(rel > 1e-2, "{stem}: {rel}");
    }
}

#[test]
fn senet_preprocess_timm_writes_timms_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.npy");
    let photos = photos();
    let (a, b) = (s(&photos[0]), s(&photos[6]));
    let o = senet(&["preprocess", "--preprocess", "timm", a, b, "-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let x = senet::npy::read_f32(&out).unwrap();
    assert_eq!(x.shape, [2, 3, 224, 224]);
    let t = EvalTransform::default().with_preprocess(Preprocess::Timm);
    let want = [
        t.apply_path(&photos[0]).unwrap(),
        t.apply_path(&photos[6]).unwrap(),
    ]
    .concat();
    assert!(x.data == want);
    let o = senet(&["preprocess", "--preprocess", "pil", a, "-o", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("unknown preprocess 'pil'"));
}
