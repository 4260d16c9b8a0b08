//! The command line as a MindCV user drives it: every recipe key is a flag (grouped as in
//! config.py, both spellings, overriding the recipe, refused by name when senet does not
//! implement the value), the LR schedule follows `--epoch_size` / `--decay_epochs`, a plain CPU
//! run says nothing about Ascend, `predict -c` names classes after the data set's folders,
//! MindCV's eval defaults apply without `-c`, and `convert` round-trips MindSpore checkpoints
//! byte for byte.
mod common;

use common::cli::{fails_naming, ok, s};
use senet::config::Recipe;
use senet::tensor::DType;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `senet` where CANN cannot be found (`SENET_CANN_LIB` names a missing file) and
/// `DEVICE_ID` is unset, plus the `env` given.
fn senet_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = common::cli::command(args);
    cmd.env(
        senet_cann_sys::EXPLICIT_PATH_VAR,
        std::env::temp_dir().join("senet-no-cann-here/libascendcl.so"),
    )
    .env_remove("DEVICE_ID");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run senet")
}

fn senet(args: &[&str]) -> Output {
    senet_env(args, &[])
}

/// An ImageFolder of 16x16 PNGs: `train/` and `val/` with `per_class` images of each class,
/// each class a colour of its own.
fn tiny_folder(root: &Path, classes: &[&str], per_class: usize) {
    for split in ["train", "val"] {
        for (c, class) in classes.iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let img = image::RgbImage::from_fn(16, 16, |x, y| {
                    image::Rgb([(40 * c) as u8, (x * 8 + i as u32) as u8, (y * 8) as u8])
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

/// A CPU recipe over `data` (1 epoch, cosine over 1 epoch, no warmup, 32x32, batch 2).
fn tiny_recipe(dir: &Path, data: &Path) -> PathBuf {
    let path = dir.join("tiny.yaml");
    std::fs::write(
        &path,
        format!(
            "model: seresnet18\ndata_dir: {}\nckpt_save_dir: {}\n\
             image_resize: 32\ncrop_pct: 1.0\nbatch_size: 2\nnum_parallel_workers: 1\n\
             opt: momentum\nweight_decay: 0.0\nscheduler: cosine_decay\nlr: 0.1\nmin_lr: 0.0\n\
             warmup_epochs: 0\nepoch_size: 1\ndecay_epochs: 1\nlog_interval: 1000\n\
             val_while_train: True\n",
            data.display(),
            dir.join("ckpt").display()
        ),
    )
    .unwrap();
    path
}

/// A temporary folder holding `data/` ([`tiny_folder`] of `classes`, `per_class` images each)
/// and its [`tiny_recipe`]: (the folder, the data, the recipe).
fn tiny_setup(classes: &[&str], per_class: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_folder(&data, classes, per_class);
    let cfg = tiny_recipe(tmp.path(), &data);
    (tmp, data, cfg)
}

/// A seresnet18 checkpoint with MindCV's random initialisation and `classes` classes, in `dir`.
fn init_ckpt(dir: &Path, classes: usize) -> PathBuf {
    let path = dir.join(format!("init_{classes}.ckpt"));
    let n = classes.to_string();
    ok(&senet(&[
        "init",
        "--model",
        "seresnet18",
        "--num_classes",
        &n,
        "--out",
        s(&path),
    ]));
    path
}

/// The `--help` text of a command.
fn help(cmd: &str) -> String {
    ok(&senet(&[cmd, "--help"]))
}

#[test]
fn every_recipe_key_is_a_flag_of_train_and_validate_in_its_group() {
    for cmd in ["train", "validate"] {
        let text = help(cmd);
        // The headings of MindCV's config.py groups, in config.py's order.
        let mut headings: Vec<(usize, &str)> = Vec::new();
        for spec in Recipe::SPECS {
            let title = spec.group.title();
            if headings.iter().all(|(_, t)| *t != title) {
                let at = text
                    .find(&format!("\n{title}:\n"))
                    .unwrap_or_else(|| panic!("{cmd} --help has no '{title}' group"));
                assert!(
                    headings.last().is_none_or(|(last, _)| *last < at),
                    "{cmd}: '{title}' out of config.py's order"
                );
                headings.push((at, title));
            }
        }
        for spec in Recipe::SPECS.iter().filter(|s| s.name != "config") {
            let flag = format!("\n      --{} ", spec.name);
            let at = text
                .find(&flag)
                .unwrap_or_else(|| panic!("{cmd} --help lacks --{}", spec.name));
            let group = headings
                .iter()
                .rposition(|(start, _)| *start < at)
                .map(|i| headings[i].1);
            assert_eq!(group, Some(spec.group.title()), "--{}", spec.name);
        }
    }
    // predict and preprocess take the eval transform's keys.
    for cmd in ["predict", "preprocess"] {
        let text = help(cmd);
        for key in ["image_resize", "crop_pct", "interpolation", "mean", "std"] {
            assert!(text.contains(&format!("--{key} ")), "{cmd} --{key}");
        }
    }
}

/// The learning rate of every step, from the `log_interval` lines.
fn logged_lrs(stdout: &str) -> Vec<f64> {
    stdout
        .lines()
        .filter(|l| l.starts_with("Epoch: [") && l.contains("batch: ["))
        .map(|l| {
            let v = l.split("lr: ").nth(1).unwrap().split(',').next().unwrap();
            v.parse().unwrap()
        })
        .collect()
}

#[test]
fn flags_override_the_recipe_and_the_schedule_follows_epoch_size() {
    let (tmp, _, cfg) = tiny_setup(&["a", "b"], 2);
    // 4 images, batch 2: 2 steps per epoch. The recipe's 1 epoch becomes 3 (1 of warmup, then a
    // cosine over 2), in both spellings and with a bare boolean.
    let out = ok(&train(
        &cfg,
        &[
            "--epoch_size",
            "3",
            "--warmup-epochs",
            "1",
            "--decay_epochs",
            "2",
            "--log-interval",
            "1",
            "--lr",
            "0.2",
            "--color_jitter",
            "[0.1, 0.2, 0.3]",
            "--val_while_train",
            "False",
            "--shuffle",
        ],
    ));
    let dump = Recipe::from_yaml_file(tmp.path().join("ckpt/seresnet18.yaml")).unwrap();
    assert_eq!(
        (
            dump.epoch_size,
            dump.warmup_epochs,
            dump.decay_epochs,
            dump.log_interval
        ),
        (3, 1, 2, 1)
    );
    assert_eq!(dump.lr, 0.2);
    assert_eq!(
        dump.color_jitter.as_ref().unwrap().to_string(),
        "[0.1, 0.2, 0.3]"
    );
    assert!(!dump.val_while_train && dump.shuffle);
    assert_eq!(dump.batch_size, 2, "a recipe value without a flag stays");

    let lrs = logged_lrs(&out);
    let expected = senet::optim::lr_schedule(&dump, 2, 3).unwrap();
    assert_eq!(lrs.len(), 6, "{out}");
    for (i, (got, want)) in lrs.iter().zip(&expected).enumerate() {
        assert!(
            (got - *want as f64).abs() < 1e-6,
            "step {i}: {got} vs {want}"
        );
    }
    // Warmup 0 -> 0.2, then a cosine that reaches its end only at the last step: no step of
    // the last epoch sits at 0, as it would with the recipe's decay_epochs of 1.
    assert!(lrs[4] > 0.05 && lrs[5] > 0.01, "{lrs:?}");
    let mut stale = dump.clone();
    stale.decay_epochs = 1;
    let stale = senet::optim::lr_schedule(&stale, 2, 3).unwrap();
    assert_eq!((stale[4], stale[5]), (0.0, 0.0));
}

#[test]
fn values_senet_does_not_implement_are_refused_naming_the_key() {
    let (tmp, _, cfg) = tiny_setup(&["a", "b"], 2);
    let train = |extra: &[&str]| train(&cfg, extra);
    for (flags, key) in [
        (&["--mixup", "0.2"][..], "'mixup'"),
        // MindCV's resume and fine-tuning flags need the checkpoint they apply to.
        (&["--resume_opt"][..], "'resume_opt'"),
        (&["--pretrained"][..], "'pretrained'"),
        (&["--dataset", "mnist"][..], "'dataset'"),
        (&["--dataset-download", "True"][..], "'dataset_download'"),
        (&["--device_target", "GPU"][..], "'device_target'"),
        (&["--color_jitter", "0.4,0.4,0.4,0.1"][..], "'color_jitter'"),
        (&["--opt", "adamw"][..], "'opt'"),
    ] {
        fails_naming(&train(flags), &[key]);
    }
    // A value that does not parse is named by clap with the flag.
    fails_naming(&train(&["--lr", "fast"]), &["--lr", "fast"]);
    fails_naming(
        &train(&["--color_jitter", "[0.4, 0.4]"]),
        &["--color_jitter"],
    );
    fails_naming(&train(&["--learning_rate", "0.1"]), &["--learning_rate"]);

    let ckpt = init_ckpt(tmp.path(), 2);
    let validate = |extra: &[&str]| {
        senet(&[&["validate", "-c", s(&cfg), "--ckpt_path", s(&ckpt)], extra].concat())
    };
    fails_naming(
        &validate(&["--ckpt_path", "", "--pretrained"]),
        &["'pretrained'"],
    );
    fails_naming(&validate(&["--loss", "BCE"]), &["'loss'"]);
    // Keys validate.py parses but does not use are accepted, as in MindCV.
    let out = ok(&validate(&["--lr", "3", "--mode", "1", "--json"]));
    assert!(out.contains("\"num_samples\":4"), "{out}");
}

#[test]
fn a_plain_cpu_run_says_nothing_about_ascend_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_folder(&data, &["a", "b"], 1);
    let ckpt = init_ckpt(tmp.path(), 2);
    let base = [
        "validate",
        "--model",
        "seresnet18",
        "--data_dir",
        s(&data),
        "--ckpt_path",
        s(&ckpt),
        "--image_resize",
        "32",
        "--num_classes",
        "2",
        "--json",
    ];
    for recipe in [None, Some("configs/senet/seresnet18_ascend.yaml")] {
        let args: Vec<&str> = match recipe {
            Some(r) => [&base[..], &["-c", r, "--distribute", "False"]].concat(),
            None => base.to_vec(),
        };
        let out = senet(&args);
        let json = ok(&out);
        assert!(json.contains("\"device\":\"cpu\""), "{json}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("Ascend") && !err.contains("CANN"),
            "{recipe:?}: {err}"
        );
    }
    // Asked for by the recipe key (here as a flag) or by DEVICE_ID: a note, still on the CPU.
    let asked = [&base[..], &["--device_target", "Ascend"]].concat();
    let out = senet(&asked);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("note: device_target Ascend: no usable CANN")
            && err.contains("CANN not found"),
        "{err}"
    );
    let out = senet_env(&base, &[("DEVICE_ID", "3")]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("note: DEVICE_ID=3: no usable CANN"), "{err}");
    // device_target CPU, or --device cpu, silence it.
    for quiet in [&["--device_target", "CPU"][..], &["--device", "cpu"][..]] {
        let out = senet_env(&[&base[..], quiet].concat(), &[("DEVICE_ID", "3")]);
        ok(&out);
        assert!(String::from_utf8_lossy(&out.stderr).is_empty(), "{quiet:?}");
    }
    // Training too: a plain CPU run prints nothing about Ascend, anywhere.
    let cfg = tiny_recipe(tmp.path(), &data);
    let out = train(&cfg, &["--max_steps", "1", "--val_while_train", "False"]);
    let all = format!("{}{}", ok(&out), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("Ascend") && !all.contains("CANN"), "{all}");
    // Asked for: the note (train reports its notes on stdout).
    let out = ok(&train(
        &cfg,
        &["--max_steps", "1", "--device_target", "Ascend"],
    ));
    assert!(
        out.contains("device_target Ascend: no usable CANN"),
        "{out}"
    );
}

#[test]
fn predict_with_a_recipe_names_classes_after_its_folders() {
    let (tmp, data, cfg) = tiny_setup(&["cat", "dog"], 1);
    let two = init_ckpt(tmp.path(), 2);
    let image = data.join("val/cat/0.png");
    let out = ok(&senet(&[
        "predict",
        "-c",
        s(&cfg),
        "--ckpt_path",
        s(&two),
        "--topk",
        "2",
        s(&image),
    ]));
    assert!(out.contains(" cat\n") && out.contains(" dog\n"), "{out}");
    assert!(!out.contains("class 0"), "{out}");
    // The folders of --data_dir (a predict flag too) when the recipe's do not exist.
    let elsewhere = tmp.path().join("elsewhere");
    tiny_folder(&elsewhere, &["left", "right"], 1);
    let out = ok(&senet(&[
        "predict",
        "-c",
        s(&cfg),
        "--data_dir",
        s(&elsewhere),
        "--ckpt_path",
        s(&two),
        s(&image),
    ]));
    assert!(out.contains(" left\n") && out.contains(" right\n"), "{out}");
    // Without a recipe: numbered, with a note that a 2-class model needs its recipe's
    // transform.
    let run = senet(&[
        "predict",
        "--model",
        "seresnet18",
        "--ckpt_path",
        s(&two),
        s(&image),
    ]);
    let out = ok(&run);
    assert!(out.contains("class 0") && out.contains("class 1"), "{out}");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("note: no recipe (-c)") && err.contains("this 2-class model"),
        "{err}"
    );
    // A recipe whose data set is not there: numbered, with a note naming the folders looked at.
    let moved = tmp.path().join("moved.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let gone = tmp.path().join("gone");
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("data_dir:"))
        .collect();
    let moved_text = format!("{}\ndata_dir: {}\n", kept.join("\n"), gone.display());
    std::fs::write(&moved, moved_text).unwrap();
    let run = senet(&[
        "predict",
        "-c",
        s(&moved),
        "--ckpt_path",
        s(&two),
        s(&image),
    ]);
    assert!(run.status.success(), "{run:?}");
    let (out, err) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(out.contains("class 0"), "{out}");
    assert!(
        err.contains("note: no class names")
            && err.contains(&format!("{}/val", gone.display()))
            && err.contains("--class_map"),
        "{err}"
    );
    // A checkpoint of another class count than the folders: named, with what to pass.
    let three = init_ckpt(tmp.path(), 3);
    fails_naming(
        &senet(&[
            "predict",
            "-c",
            s(&cfg),
            "--ckpt_path",
            s(&three),
            s(&image),
        ]),
        &["3 classes", "2 class folders", "--class_map"],
    );
}

#[test]
fn preprocess_without_a_recipe_uses_mindcvs_transform_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let photo =
        common::shared().join("datasets/imagenet-sample/val/n01440764/n01440764_tench.JPEG");
    let run = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        ok(&senet(
            &[&["preprocess", s(&photo), "-o", s(&out)], extra].concat(),
        ));
        std::fs::read(out).unwrap()
    };
    // MindCV's create_transforms(is_training=False): 224, crop_pct 0.875, bilinear, ImageNet
    // mean/std (config.py's defaults).
    let default = run("default.npy", &[]);
    let explicit = run(
        "explicit.npy",
        &[
            "--image_resize",
            "224",
            "--crop-pct",
            "0.875",
            "--interpolation",
            "bilinear",
            "--mean",
            "[123.675, 116.28, 103.53]",
            "--std",
            "58.395,57.12,57.375",
        ],
    );
    assert_eq!(default, explicit);
    assert_ne!(default, run("bicubic.npy", &["--interpolation", "bicubic"]));
}

#[test]
fn convert_round_trips_mindspore_checkpoints_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["seresnet18_formula.ckpt", "mixed.ckpt", "mixed_crc.ckpt"] {
        let original = common::golden(name);
        let st = tmp.path().join(name.replace(".ckpt", ".safetensors"));
        let back = tmp.path().join(name);
        ok(&senet(&["convert", s(&original), s(&st)]));
        ok(&senet(&["convert", s(&st), s(&back)]));
        assert!(
            std::fs::read(&original).unwrap() == std::fs::read(&back).unwrap(),
            "{name}: the round trip changed the file"
        );
    }
}

/// Writes an idx file (big-endian magic, dimensions, u8 data) gzipped, as Fashion-MNIST ships.
fn write_idx_gz(path: &Path, magic: u32, dims: &[u32], data: &[u8]) {
    let mut bytes = magic.to_be_bytes().to_vec();
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    let raw = path.with_extension("");
    std::fs::write(&raw, bytes).unwrap();
    let out = Command::new("gzip").arg("-f").arg(&raw).output().unwrap();
    assert!(out.status.success());
}

#[test]
fn the_quickstart_lays_fashion_mnist_out_as_an_image_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // Three 2x3 training images (labels 9, 0, 9) and one test image (label 3).
    let train: Vec<u8> = (0..18).map(|i| i * 10).collect();
    write_idx_gz(
        &src.join("train-images-idx3-ubyte.gz"),
        0x803,
        &[3, 2, 3],
        &train,
    );
    write_idx_gz(
        &src.join("train-labels-idx1-ubyte.gz"),
        0x801,
        &[3],
        &[9, 0, 9],
    );
    write_idx_gz(
        &src.join("t10k-images-idx3-ubyte.gz"),
        0x803,
        &[1, 2, 3],
        &[7; 6],
    );
    write_idx_gz(&src.join("t10k-labels-idx1-ubyte.gz"), 0x801, &[1], &[3]);
    let out = tmp.path().join("fm");
    let run = Command::new("python3")
        .args(["scripts/fashion_mnist_folder.py", s(&src), s(&out)])
        .args(["--train_per_class", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run python3");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // One image per class at most; file names are the idx indices.
    let boot = image::open(out.join("train/ankle_boot/00000.png")).unwrap();
    assert_eq!((boot.width(), boot.height()), (3, 2));
    assert_eq!(boot.to_luma8().into_raw(), train[..6].to_vec());
    assert!(out.join("train/tshirt_top/00001.png").is_file());
    assert!(!out.join("train/ankle_boot/00002.png").exists());
    assert!(out.join("val/dress/00000.png").is_file());
    assert!(!tmp.path().join("fm.partial").exists());
    // The folders are the 10 classes, in the sorted order senet numbers them.
    let classes = senet::data::class_folders(&out.join("val")).unwrap();
    assert_eq!(classes.len(), 10);
    assert_eq!(
        (classes[0].to_str(), classes[9].to_str()),
        (Some("ankle_boot"), Some("tshirt_top"))
    );
    // A corrupt file is an error naming it, not a half data set.
    std::fs::write(src.join("t10k-labels-idx1-ubyte.gz"), b"junk").unwrap();
    let bad = Command::new("python3")
        .args([
            "scripts/fashion_mnist_folder.py",
            s(&src),
            s(&tmp.path().join("bad")),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(!tmp.path().join("bad").exists());
}

/// Runs `senet train -c cfg --threads 1` with `extra`.
fn train(cfg: &Path, extra: &[&str]) -> Output {
    senet(&[&["train", "-c", s(cfg), "--threads", "1"], extra].concat())
}

/// [`train`]'s stdout (panics on failure).
fn train_ok(cfg: &Path, extra: &[&str]) -> String {
    ok(&train(cfg, extra))
}

#[test]
fn mindcv_resume_reads_optim_file_and_continues_exactly() {
    let (tmp, _, cfg) = tiny_setup(&["a", "b"], 4);
    // 8 images, batch 2: 4 steps per epoch, 2 epochs (cosine over both).
    let two_epochs = ["--epoch_size", "2", "--decay_epochs", "2"];
    let straight = tmp.path().join("straight");
    let split = tmp.path().join("split");
    let run = |dir: &Path, extra: &[&str]| {
        train_ok(
            &cfg,
            &[&two_epochs[..], &["--ckpt_save_dir", s(dir)], extra].concat(),
        )
    };
    run(&straight, &["--max_steps", "6"]);
    // Stopped at step 3 by --max_steps: validated there, the step checkpoint and MindCV's
    // optimizer file written.
    let out = run(&split, &["--max_steps", "3"]);
    assert!(out.contains("Validation Top_1_Accuracy: "), "{out}");
    let mid = split.join("seresnet18-1_3.ckpt");
    let optim = split.join("optim_seresnet18.ckpt");
    assert!(split.join("seresnet18_best.ckpt").is_file());

    // optim_<model>.ckpt as MindCV 0.3's StateMonitor writes it: global_step, the trainable
    // parameters, momentum, moments.*, learning_rate (the whole list), nothing else.
    let o = senet::checkpoint::read_checkpoint(&optim).unwrap();
    let m = senet::checkpoint::read_checkpoint(&mid).unwrap();
    let net = senet::model::SeNet::new(senet::model::Arch::SeResNet18, 2, 0).unwrap();
    let trainable: Vec<String> = net
        .params
        .specs()
        .iter()
        .filter(|s| s.kind.trainable())
        .map(|s| s.name.clone())
        .collect();
    let mut want = vec!["global_step".to_string()];
    want.extend(trainable.iter().cloned());
    want.push("momentum".into());
    want.extend(trainable.iter().map(|n| format!("moments.{n}")));
    want.push("learning_rate".into());
    assert_eq!(o.names().collect::<Vec<_>>(), want);
    assert_eq!(want.len(), 191);
    for name in &want {
        // The same tensors as the step checkpoint holds.
        assert_eq!(o.get(name), m.get(name), "{name}");
    }
    let gs = o.get("global_step").unwrap();
    assert_eq!((gs.dtype, gs.shape.as_slice()), (DType::I32, &[1usize][..]));
    assert_eq!(gs.bytes, 3i32.to_le_bytes());
    let dump =
        Recipe::from_yaml_str(&std::fs::read_to_string(split.join("seresnet18.yaml")).unwrap())
            .unwrap();
    let lr = o.get("learning_rate").unwrap().to_f32().unwrap();
    assert_eq!(lr.shape, [8]);
    assert_eq!(lr.data, senet::optim::lr_schedule(&dump, 4, 2).unwrap());

    // MindCV's resume: --ckpt_path X --resume_opt True reads optim_<model>.ckpt from
    // ckpt_save_dir and continues where the straight run went, to the byte.
    let kept = tmp.path().join("seresnet18-1_3.ckpt");
    std::fs::copy(&mid, &kept).unwrap();
    let out = run(
        &split,
        &[
            "--ckpt_path",
            s(&kept),
            "--resume_opt",
            "True",
            "--max_steps",
            "6",
        ],
    );
    assert!(
        out.contains(&format!(
            "optimizer state from {}: global_step 3, 94 Momentum moments",
            optim.display()
        )),
        "{out}"
    );
    assert!(
        !out.contains("differs") && !out.contains("ignored"),
        "{out}"
    );
    for name in ["seresnet18-2_2.ckpt", "optim_seresnet18.ckpt"] {
        assert!(
            std::fs::read(straight.join(name)).unwrap() == std::fs::read(split.join(name)).unwrap(),
            "{name} differs from the straight run's"
        );
    }
    // The optimizer file is now at step 6: resuming the step-3 checkpoint with it is refused.
    let out = senet(
        &[
            &["train", "-c", s(&cfg), "--threads", "1"],
            &two_epochs[..],
            &[
                "--ckpt_save_dir",
                s(&split),
                "--ckpt_path",
                s(&kept),
                "--resume_opt",
                "True",
            ],
        ]
        .concat(),
    );
    fails_naming(&out, &["global_step 6", "global_step 3", "another save"]);
    // A longer schedule: the stored 8-step list differs from the new 12-step one, said so.
    let longer = tmp.path().join("longer");
    std::fs::create_dir(&longer).unwrap();
    std::fs::copy(&kept, longer.join("seresnet18-1_3.ckpt")).unwrap();
    let out = train_ok(
        &cfg,
        &[
            "--epoch_size",
            "3",
            "--decay_epochs",
            "3",
            "--ckpt_save_dir",
            s(&longer),
            "--ckpt_path",
            s(&longer.join("seresnet18-1_3.ckpt")),
            "--resume_opt",
            "True",
            "--max_steps",
            "4",
        ],
    );
    assert!(
        out.contains("from ")
            && out.contains("its 8-step list (this recipe's has 12, first at step 1"),
        "{out}"
    );
    // A weights-only file and no optimizer file: nothing to resume, said so.
    let init = init_ckpt(tmp.path(), 2);
    let empty = tmp.path().join("empty");
    let out = train(
        &cfg,
        &[
            "--ckpt_save_dir",
            s(&empty),
            "--ckpt_path",
            s(&init),
            "--resume_opt",
            "True",
        ],
    );
    fails_naming(
        &out,
        &["resume_opt", "optim_seresnet18.ckpt", "global_step"],
    );
}

#[test]
fn fine_tuning_loads_all_but_a_classifier_of_another_class_count() {
    let (tmp, _, cfg) = tiny_setup(&["a", "b"], 2);
    // A 1000-class checkpoint (another seed than the run's 42).
    let zoo = tmp.path().join("zoo_1000.ckpt");
    ok(&senet(&[
        "init",
        "--model",
        "seresnet18",
        "--num_classes",
        "1000",
        "--seed",
        "7",
        "--out",
        s(&zoo),
    ]));
    // Without pretrained: the exact load fails and says which flags fine-tune.
    let out = train(&cfg, &["--ckpt_path", s(&zoo)]);
    fails_naming(
        &out,
        &[
            "classifier.weight",
            "[1000, 512]",
            "--pretrained True --ckpt_path",
        ],
    );
    // With it: a learning rate of 0 keeps every weight as loaded through one step.
    let save = tmp.path().join("ft");
    let out = train_ok(
        &cfg,
        &[
            "--pretrained",
            "True",
            "--ckpt_path",
            s(&zoo),
            "--scheduler",
            "constant",
            "--lr",
            "0",
            "--max_steps",
            "1",
            "--ckpt_save_dir",
            s(&save),
            "--val_while_train",
            "False",
        ],
    );
    assert!(
        out.contains("fine-tuning: classifier.weight [1000, 512] and classifier.bias [1000] of")
            && out.contains("do not fit 2 classes"),
        "{out}"
    );
    let got = senet::checkpoint::read_checkpoint(&save.join("seresnet18-1_1.ckpt")).unwrap();
    let from = senet::checkpoint::read_checkpoint(&zoo).unwrap();
    let fresh = senet::model::SeNet::new(senet::model::Arch::SeResNet18, 2, 42).unwrap();
    let mut checked = 0;
    for (spec, t) in fresh.params.iter() {
        let saved = got.get(&spec.name).unwrap().to_f32().unwrap();
        if spec.name.starts_with("classifier.") {
            // MindCV's initialisation of a 2-class classifier from the recipe's seed.
            assert_eq!(saved.data, t.data, "{}", spec.name);
        } else if spec.kind.trainable() {
            let loaded = from.get(&spec.name).unwrap().to_f32().unwrap();
            assert_eq!(saved.data, loaded.data, "{}", spec.name);
        }
        checked += 1;
    }
    assert_eq!(checked, 134);
}
