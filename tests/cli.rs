//! The `senet` binary end to end on the real photos of `shared/datasets/imagenet-sample`, against
//! the MindCV reference outputs of `shared/golden/` (seresnet50 with the formula weights).
mod common;

use common::cli::{fails_naming, ok, s, senet};
use common::sample_dir;
use senet::model::metrics::Accumulator;
use std::path::{Path, PathBuf};

/// A formula-weight checkpoint of `arch` (written once per test into `dir`).
fn formula_ckpt(dir: &Path, arch: &str, classes: usize) -> PathBuf {
    let path = dir.join(format!("{arch}_{classes}.ckpt"));
    ok(&senet(&[
        "init",
        "--model",
        arch,
        "--formula",
        "--num_classes",
        &classes.to_string(),
        "--out",
        s(&path),
    ]));
    path
}

fn class_map() -> PathBuf {
    common::shared().join("datasets/imagenet_classes.tsv")
}

/// ImageNet index of each wnid, from the TSV.
fn imagenet_index(wnid: &str) -> usize {
    let text = std::fs::read_to_string(class_map()).unwrap();
    text.lines()
        .find_map(|l| {
            let mut f = l.split('\t');
            let i = f.next()?;
            (f.next()? == wnid).then(|| i.parse().unwrap())
        })
        .unwrap()
}

/// The golden photo list (relative to shared/) and logits (N, 1000), keyed by absolute path.
fn golden_logits() -> Vec<(PathBuf, Vec<f32>)> {
    let files = std::fs::read_to_string(common::golden("images_files.txt")).unwrap();
    let logits = senet::npy::read_f32(&common::golden("images_logits.npy")).unwrap();
    files
        .lines()
        .filter(|l| !l.is_empty())
        .zip(logits.data.chunks(1000))
        .map(|(f, row)| {
            (
                common::shared().join(f).canonicalize().unwrap(),
                row.to_vec(),
            )
        })
        .collect()
}

#[test]
fn predict_logits_match_mindcv_on_100_photos() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = formula_ckpt(tmp.path(), "seresnet50", 1000);
    let out_npy = tmp.path().join("logits.npy");
    let stdout = ok(&senet(&[
        "predict",
        "--model",
        "seresnet50",
        "--ckpt_path",
        s(&ckpt),
        "--class_map",
        s(&class_map()),
        "--topk",
        "3",
        "--save_logits",
        s(&out_npy),
        // The SENet recipes' eval resize (without -c: MindCV's default, bilinear).
        "--interpolation",
        "bicubic",
        s(&sample_dir()),
    ]));
    let ours = senet::npy::read_f32(&out_npy).unwrap();
    assert_eq!(ours.shape, vec![100, 1000]);
    // The printed order is the sorted file order; map the golden rows onto it.
    let printed: Vec<PathBuf> = stdout
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| PathBuf::from(l).canonicalize().unwrap())
        .collect();
    assert_eq!(printed.len(), 100);
    let golden = golden_logits();
    let mut max = 0.0f32;
    for (row, path) in ours.data.chunks(1000).zip(&printed) {
        let g = &golden
            .iter()
            .find(|(p, _)| p == path)
            .expect("photo in golden list")
            .1;
        for (a, b) in row.iter().zip(g) {
            max = max.max((a - b).abs());
        }
    }
    eprintln!("predict: max |ours - MindCV| over 100 photos = {max:.3e}");
    assert!(max <= 2e-3, "max abs diff {max}");
    // Class names come from the TSV: every image prints 3 named classes.
    assert_eq!(stdout.lines().filter(|l| l.starts_with("  ")).count(), 300);
}

#[test]
fn validate_json_counts_every_sample_and_matches_golden_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = formula_ckpt(tmp.path(), "seresnet50", 1000);
    let out = ok(&senet(&[
        "validate",
        "-c",
        "configs/senet/seresnet50_ascend.yaml",
        "--data_dir",
        s(&sample_dir()),
        "--ckpt_path",
        s(&ckpt),
        "--class_map",
        s(&class_map()),
        "--batch_size",
        "32",
        "--num_parallel_workers",
        "2",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["model"], "seresnet50");
    assert_eq!(v["num_samples"], 100);
    // The metrics MindCV's logits give on the same photos (labels = ImageNet index of the folder).
    let mut acc = Accumulator::default();
    for (path, row) in golden_logits() {
        let wnid = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        acc.add(&row, 1000, &[imagenet_index(&wnid)], 0.1);
    }
    assert_eq!(acc.samples, 100);
    let top1 = v["top1"].as_f64().unwrap();
    let top5 = v["top5"].as_f64().unwrap();
    let loss = v["loss"].as_f64().unwrap();
    assert!(
        (top1 - acc.top1()).abs() < 1e-9,
        "top1 {top1} vs {}",
        acc.top1()
    );
    assert!(
        (top5 - acc.top5()).abs() < 1e-9,
        "top5 {top5} vs {}",
        acc.top5()
    );
    assert!(
        (loss - acc.loss()).abs() < 1e-4,
        "loss {loss} vs {}",
        acc.loss()
    );
    assert!(v["images_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn preprocess_matches_mindcv_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let files = std::fs::read_to_string(common::golden("images_files.txt")).unwrap();
    let first8: Vec<String> = files
        .lines()
        .take(8)
        .map(|f| s(&common::shared().join(f)).to_string())
        .collect();
    // preprocess sorts its inputs; give them one by one into separate outputs to keep the order.
    let golden = senet::npy::read_f32(&common::golden("images_tensors.npy")).unwrap();
    let per = 3 * 224 * 224;
    let (mut max, mut sum) = (0.0f32, 0.0f64);
    for (i, f) in first8.iter().enumerate() {
        let out = tmp.path().join(format!("{i}.npy"));
        ok(&senet(&[
            "preprocess",
            "-c",
            "configs/senet/seresnet50_ascend.yaml",
            f,
            "-o",
            s(&out),
        ]));
        let t = senet::npy::read_f32(&out).unwrap();
        assert_eq!(t.shape, vec![1, 3, 224, 224]);
        for (a, b) in t.data.iter().zip(&golden.data[i * per..(i + 1) * per]) {
            let d = (a - b).abs();
            max = max.max(d);
            sum += d as f64;
        }
    }
    let mean = sum / (8 * per) as f64;
    eprintln!(
        "preprocess: max {max:.4} ({:.2} grey levels), mean {mean:.2e}",
        max * 57.12
    );
    assert!(max <= 3.0 / 57.12 + 1e-6, "max {max}");
    assert!(mean <= 0.005, "mean {mean}");
}

#[test]
fn models_lists_the_five_variants_with_mindcv_counts() {
    let out = ok(&senet(&["models"]));
    for (name, count) in [
        ("seresnet18", "11789224"),
        ("seresnet34", "21977440"),
        ("seresnet50", "28141144"),
        ("seresnext26_32x4d", "16828808"),
        ("seresnext50_32x4d", "27628120"),
    ] {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap();
        assert_eq!(line.split_whitespace().nth(1), Some(count), "{line}");
    }
}

#[test]
fn bad_inputs_exit_non_zero_naming_the_culprit() {
    let tmp = tempfile::tempdir().unwrap();
    let validate = |ckpt: &str, config: &str, data: &Path| {
        senet(&[
            "validate",
            "-c",
            config,
            "--data_dir",
            s(data),
            "--ckpt_path",
            ckpt,
            "--class_map",
            s(&class_map()),
            "--model",
            "seresnet18",
        ])
    };
    let cfg = "configs/senet/seresnet18_ascend.yaml";
    // 1. A checkpoint path that does not exist.
    let missing = tmp.path().join("nope.ckpt");
    fails_naming(&validate(s(&missing), cfg, &sample_dir()), &["nope.ckpt"]);
    // 2. A truncated checkpoint.
    let good = formula_ckpt(tmp.path(), "seresnet18", 1000);
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp.path().join("cut.ckpt");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails_naming(&validate(s(&cut), cfg, &sample_dir()), &["cut.ckpt"]);
    // 3. A mis-shaped parameter: a 10-class classifier loaded into a 1000-class model.
    let ten = formula_ckpt(tmp.path(), "seresnet18", 10);
    // It ends naming the --num_classes that fits the checkpoint.
    fails_naming(
        &validate(s(&ten), cfg, &sample_dir()),
        &[
            "classifier.weight",
            "classifier.bias",
            "the checkpoint has 10 classes, 1000 were asked for",
            "pass --num_classes 10",
        ],
    );
    // 3a. A folder given as the checkpoint is named as one.
    fails_naming(
        &validate(s(tmp.path()), cfg, &sample_dir()),
        &[s(tmp.path()), "is a directory"],
    );
    // 3b. NaN weights are refused, naming the tensor.
    let mut net = senet::model::SeNet::formula(senet::model::Arch::SeResNet18, 1000).unwrap();
    net.params.get_mut("layer1.0.bn2.gamma").unwrap().data[3] = f32::NAN;
    let nan = tmp.path().join("nan.ckpt");
    senet::checkpoint::save_params(&net.params, &nan).unwrap();
    fails_naming(
        &validate(s(&nan), cfg, &sample_dir()),
        &["layer1.0.bn2.gamma", "NaN"],
    );
    // 3c. Without a recipe's num_classes, a class-count disagreement is named before loading.
    let out = senet(&[
        "validate",
        "--model",
        "seresnet18",
        "--data_dir",
        s(&sample_dir()),
        "--ckpt_path",
        s(&ten),
    ]);
    fails_naming(&out, &["10 classes", "100 class folders", "--num_classes"]);
    // 3d. Fewer class folders than the model's classes and no class map: validated with
    // MindSpore's numbering (folder k = class k), and a note saying that a subset of ImageNet's
    // folders needs --class_map; none with the class map.
    let quiet = validate(s(&good), cfg, &sample_dir());
    assert!(quiet.status.success(), "{quiet:?}");
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("class folders for a"));
    let out = senet(&[
        "validate",
        "-c",
        cfg,
        "--data_dir",
        s(&sample_dir()),
        "--ckpt_path",
        s(&good),
        "--model",
        "seresnet18",
    ]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has 100 class folders for a 1000-class model and no --class_map")
            && err.contains("pass --class_map"),
        "{err}"
    );
    // 4. An unknown YAML key.
    let yaml = tmp.path().join("bad.yaml");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(cfg)).unwrap();
    std::fs::write(&yaml, format!("{text}\nlearning_rat: 0.1\n")).unwrap();
    fails_naming(
        &validate(s(&good), s(&yaml), &sample_dir()),
        &["learning_rat", "bad.yaml"],
    );
    // 5. A corrupt JPEG inside the data set.
    let data = tmp.path().join("data");
    let class = data.join("val/n01440764");
    std::fs::create_dir_all(&class).unwrap();
    let photo = sample_dir().join("val/n01440764/n01440764_tench.JPEG");
    std::fs::copy(&photo, class.join("a_good.JPEG")).unwrap();
    let jpeg = std::fs::read(&photo).unwrap();
    std::fs::write(class.join("b_broken.JPEG"), &jpeg[..200]).unwrap();
    fails_naming(&validate(s(&good), cfg, &data), &["b_broken.JPEG"]);
    // 6. Output paths are checked before any work: a missing folder, a directory.
    let photo_s = s(&photo);
    let nowhere = tmp.path().join("no/such/dir/x.npy");
    fails_naming(
        &senet(&["preprocess", photo_s, "-o", s(&nowhere)]),
        &["does not exist"],
    );
    fails_naming(
        &senet(&["preprocess", photo_s, "-o", s(tmp.path())]),
        &["is a directory"],
    );
    // 7. Writing to a character device writes it, never replaces it.
    ok(&senet(&["preprocess", photo_s, "-o", "/dev/null"]));
    assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
    // 8. No temporary file is left anywhere in the working folder.
    for e in std::fs::read_dir(tmp.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "left behind: {name}");
    }
}

#[test]
fn inspect_names_the_variant_its_classes_and_the_training_state() {
    let tmp = tempfile::tempdir().unwrap();
    let inspect = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&ok(&senet(&["inspect", s(p), "--json"]))).unwrap()
    };
    let params_of = |arch: &str| {
        senet::engine::models::list()
            .unwrap()
            .into_iter()
            .find(|m| m.name == arch)
            .unwrap()
            .params
    };
    // A MindCV checkpoint of seresnet18 with 10 classes, plus two entries of training state.
    let plain = formula_ckpt(tmp.path(), "seresnet18", 10);
    let mut ck = senet::checkpoint::read_checkpoint(&plain).unwrap();
    let moment = ck.get("layer0.0.weight").unwrap().clone();
    let step = senet::tensor::RawTensor {
        dtype: senet::tensor::DType::I32,
        shape: vec![1],
        bytes: 7i32.to_le_bytes().to_vec(),
    };
    ck.tensors.push(("moments.layer0.0.weight".into(), moment));
    ck.tensors.push(("global_step".into(), step));
    let trained = tmp.path().join("trained.ckpt");
    let entries = ck.tensors.iter().map(|(n, t)| (n.as_str(), t));
    senet::checkpoint::write_ckpt(&trained, entries, false).unwrap();
    let j = inspect(&trained);
    assert_eq!(j["format"], "ckpt");
    assert_eq!(j["names"], "mindcv");
    assert_eq!(j["model"], "seresnet18");
    assert_eq!(j["num_classes"], 10);
    let tensors = j["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), ck.tensors.len());
    let state: Vec<&str> = tensors
        .iter()
        .filter(|t| t["training_state"] == true)
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(state, ["moments.layer0.0.weight", "global_step"]);
    let stem = &tensors[0];
    assert_eq!(
        (stem["name"].as_str(), stem["dtype"].as_str()),
        (Some("layer0.0.weight"), Some("Float32"))
    );
    assert_eq!(stem["shape"], serde_json::json!([64, 3, 7, 7]));
    // The parameter values are the model's: `senet models` counts 1000 classes (512 x 1000
    // weights + 1000 biases); this classifier has 10.
    let want = params_of("seresnet18") - 990 * 513;
    assert_eq!(j["parameter_values"].as_u64(), Some(want as u64));
    // The same weights under timm's names in a .safetensors file: still seresnet18.
    let one_k = formula_ckpt(tmp.path(), "seresnet50", 1000);
    let st = tmp.path().join("timm.safetensors");
    ok(&senet(&["convert", s(&one_k), s(&st), "--names", "timm"]));
    let j = inspect(&st);
    assert_eq!(
        (j["format"].as_str(), j["names"].as_str()),
        (Some("safetensors"), Some("timm"))
    );
    assert_eq!(
        (j["model"].as_str(), j["num_classes"].as_u64()),
        (Some("seresnet50"), Some(1000))
    );
    // The table a person reads.
    let text = ok(&senet(&["inspect", s(&trained)]));
    assert!(text.contains("model: seresnet18 (10 classes)"), "{text}");
    assert!(
        text.contains("moments.layer0.0.weight") && text.contains("(training state)"),
        "{text}"
    );
    // Something else: no model named; a file that is no checkpoint: refused, naming it.
    let mut odd = senet::checkpoint::read_checkpoint(&plain).unwrap();
    odd.tensors.retain(|(n, _)| n != "layer0.0.weight");
    let partial = tmp.path().join("partial.ckpt");
    let entries = odd.tensors.iter().map(|(n, t)| (n.as_str(), t));
    senet::checkpoint::write_ckpt(&partial, entries, false).unwrap();
    assert_eq!(inspect(&partial)["model"], serde_json::Value::Null);
    let junk = tmp.path().join("junk.ckpt");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    fails_naming(&senet(&["inspect", s(&junk)]), &["junk.ckpt"]);
}
