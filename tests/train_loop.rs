//! The training loop end to end on CIFAR-10 JPEGs (`shared/datasets/cifar10.tar.gz`): overfitting
//! a small subset, bit-exact resumption, the training checkpoint's contents and retention, and
//! the CLI's refusal of recipe features it does not implement.
mod common;

use common::cli::{extract_cifar10, ok, senet};
use senet::checkpoint::read_checkpoint;
use senet::config::Recipe;
use senet::engine::train::{self, StopReason, TrainEvent, TrainOptions, TrainReport};
use senet::engine::validate::{self, ValidateOptions};
use senet::model::{Arch, SeNet};
use senet::tensor::DType;
use std::path::{Path, PathBuf};
use std::process::Command;

/// 64 training images over the 10 classes (7 of the first 4 classes, 6 of the others) and one
/// validation image per class.
fn cifar64(dir: &Path) -> PathBuf {
    let root = extract_cifar10(
        dir,
        &["cifar10/train/*/000[0-6].jpg", "cifar10/val/*/0000.jpg"],
    );
    for class in ["bird", "cat", "deer", "dog", "frog", "horse"] {
        std::fs::remove_file(root.join("train").join(class).join("0006.jpg")).unwrap();
    }
    let n = std::fs::read_dir(root.join("train"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum::<usize>();
    assert_eq!(n, 64);
    root
}

/// A small CPU recipe over `data` writing to `save`, with `extra` (`key: value` lines) applied
/// as overrides.
fn recipe(data: &Path, save: &Path, extra: &str) -> Recipe {
    let text = format!(
        "model: seresnet18\n\
         data_dir: {}\n\
         ckpt_save_dir: {}\n\
         image_resize: 32\ncrop_pct: 1.0\ninterpolation: bilinear\n\
         opt: momentum\nmomentum: 0.9\nweight_decay: 0.0001\nloss_scale: 1024\n\
         scheduler: warmup_cosine_decay\nlr: 0.05\nmin_lr: 0.0\nwarmup_epochs: 1\n\
         label_smoothing: 0.0\nnum_parallel_workers: 2\nlog_interval: 1000\n",
        data.display(),
        save.display()
    );
    let mut r = Recipe::from_yaml_str(&text).unwrap();
    for line in extra.lines() {
        let (k, v) = line.split_once(':').unwrap();
        r.set(k.trim(), v.trim()).unwrap();
    }
    r
}

/// Runs the loop, returning the report and every step's loss.
fn train_run(opts: &TrainOptions) -> (TrainReport, Vec<f64>) {
    let mut losses = Vec::new();
    let report = train::run(opts, |ev| {
        if let TrainEvent::Step { loss, .. } = ev {
            losses.push(*loss);
        }
    })
    .unwrap();
    (report, losses)
}

fn options(recipe: Recipe) -> TrainOptions {
    TrainOptions {
        recipe,
        device: senet::engine::device::DeviceRequest::cpu(2),
        ..TrainOptions::default()
    }
}

#[test]
fn overfits_64_images() {
    let tmp = tempfile::tempdir().unwrap();
    let data = cifar64(tmp.path());
    let save = tmp.path().join("ckpt");
    let r = recipe(
        &data,
        &save,
        // No augmentation: the test measures that the loop learns, on fixed inputs.
        "batch_size: 16\nepoch_size: 16\ndecay_epochs: 15\nweight_decay: 0.0\nloss_scale: 1.0\n\
         scale: [1.0, 1.0]\nratio: [1.0, 1.0]\nhflip: 0.0\ncolor_jitter: 0.0\n",
    );
    let t0 = std::time::Instant::now();
    let (report, losses) = train_run(&options(r.clone()));
    eprintln!(
        "{} steps in {:.1}s, first loss {:.3}, last {:.4}",
        losses.len(),
        t0.elapsed().as_secs_f64(),
        losses[0],
        losses.last().unwrap()
    );
    assert_eq!(report.stop, StopReason::Finished);
    assert_eq!(report.global_step, 64);
    let ckpt = report.last_checkpoint.unwrap();
    assert_eq!(ckpt, save.join("seresnet18-16_4.ckpt"));
    // The curves, redrawn after every epoch, end with the last epoch's loss curve point.
    let svg = std::fs::read_to_string(save.join("curves.svg")).unwrap();
    assert!(svg.contains("seresnet18 on cifar10 (32 px)") && save.join("curves.png").is_file());
    // Accuracy of the trained weights through the eval path on the same 64 images.
    let mut vr = r.clone();
    vr.val_split = "train".into();
    vr.ckpt_path = ckpt.display().to_string();
    let v = validate::run(
        &ValidateOptions {
            recipe: vr,
            class_map: None,
            device: senet::engine::device::DeviceRequest::cpu(2),
            preprocess: senet::data::Preprocess::MindCv,
        },
        |_, _| {},
    )
    .unwrap();
    eprintln!("eval Top-1 on the training images: {:.2}%", v.top1);
    assert_eq!(v.num_samples, 64);
    assert!(v.top1 >= 95.0, "Top-1 {} after 64 steps", v.top1);
}

#[test]
fn resume_is_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let data = cifar64(tmp.path());
    // 64 images, batch 12, last batch kept: 6 steps per epoch (5 x 12 + 4); validation after
    // each epoch on 10 images keeps <model>_best.ckpt. EMA and gradient clipping are on, so
    // their state (ema.*, updates) must resume exactly too.
    let extra = "batch_size: 12\ndrop_remainder: False\nepoch_size: 3\ndecay_epochs: 2\n\
                 val_while_train: True\nkeep_checkpoint_max: 10\n\
                 ema: True\nema_decay: 0.99\nclip_grad: True\nclip_value: 5.0\n";
    let straight = tmp.path().join("straight");
    let split = tmp.path().join("split");
    let (n, k) = (8u64, 3u64);

    let mut a = options(recipe(&data, &straight, extra));
    a.max_steps = Some(n);
    let (ra, losses_a) = train_run(&a);
    assert_eq!((ra.stop, ra.global_step), (StopReason::MaxSteps, n));
    assert_eq!(losses_a.len(), n as usize);

    let mut b = options(recipe(&data, &split, extra));
    b.max_steps = Some(k);
    let (rb, mut losses_b) = train_run(&b);
    assert_eq!(rb.global_step, k);
    let mid = split.join("seresnet18-1_3.ckpt");
    assert_eq!(rb.last_checkpoint.as_deref(), Some(mid.as_path()));
    b.max_steps = Some(n);
    b.resume = Some(mid);
    let (rc, losses_c) = train_run(&b);
    assert_eq!((rc.stop, rc.global_step), (StopReason::MaxSteps, n));
    losses_b.extend(losses_c);
    assert_eq!(
        losses_a.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
        losses_b.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
        "loss sequences differ:\n{losses_a:?}\n{losses_b:?}"
    );
    // The same files, byte for byte: the epoch-1 checkpoint (written by the resumed run) and
    // the one at max_steps.
    for name in ["seresnet18-1_6.ckpt", "seresnet18-2_2.ckpt"] {
        let x = std::fs::read(straight.join(name)).unwrap();
        let y = std::fs::read(split.join(name)).unwrap();
        assert!(
            x == y,
            "{name} differs between the straight and resumed runs"
        );
    }
    // Validation after epoch 1 and at each max_steps stop (the split run also at step 3), each
    // logged; the best-validation checkpoint is the state at the first step with the best Top-1.
    for (dir, steps) in [(&straight, &[6u64, 8][..]), (&split, &[3, 6, 8][..])] {
        let log = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        let recs: Vec<train::EpochRecord> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let got: Vec<(u64, u64)> = recs.iter().map(|r| (r.epoch, r.step)).collect();
        let want: Vec<(u64, u64)> = steps.iter().map(|s| (s.div_ceil(6), *s)).collect();
        assert_eq!(got, want, "{}", dir.display());
        assert!(recs
            .iter()
            .all(|r| r.val_top1.is_some() && r.val_top5.is_some() && r.val_loss.is_some()));
        let best = recs
            .iter()
            .fold(None::<&train::EpochRecord>, |b, r| match b {
                Some(b) if b.val_top1 >= r.val_top1 => Some(b),
                _ => Some(r),
            })
            .unwrap();
        let at_best = dir.join(format!(
            "seresnet18-{}_{}.ckpt",
            best.epoch,
            best.step - 6 * (best.epoch - 1)
        ));
        assert!(
            std::fs::read(dir.join("seresnet18_best.ckpt")).unwrap()
                == std::fs::read(&at_best).unwrap(),
            "{}: the best checkpoint is not {}",
            dir.display(),
            at_best.display()
        );
    }
    // Epoch 1, resumed after its 3rd step, is logged over all its 6 steps (the checkpoint
    // carries the first 3 steps' sums): the same loss and training accuracy bits as the
    // uninterrupted run, and the loss is the mean of the 6 step losses.
    let epoch_end = |dir: &Path| -> train::EpochRecord {
        let log = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        log.lines()
            .map(|l| serde_json::from_str::<train::EpochRecord>(l).unwrap())
            .find(|r| (r.epoch, r.step) == (1, 6))
            .unwrap()
    };
    let (rec, rec_a) = (epoch_end(&split), epoch_end(&straight));
    assert_eq!(rec.loss.to_bits(), rec_a.loss.to_bits());
    assert_eq!(rec.train_top1.to_bits(), rec_a.train_top1.to_bits());
    let mean6 = losses_a[..6].iter().sum::<f64>() / 6.0;
    assert!(
        (rec.loss - mean6).abs() <= 1e-12 * mean6.abs(),
        "{} vs {mean6}",
        rec.loss
    );
}

fn write_recipe(dir: &Path, name: &str, r: &Recipe) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, r.to_yaml()).unwrap();
    path
}

#[test]
fn cli_checkpoints_resume_and_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let data = cifar64(tmp.path());
    let save = tmp.path().join("ckpt");
    // 2 steps per epoch, 3 epochs; keep the 2 newest step checkpoints.
    let r = recipe(
        &data,
        &save,
        "batch_size: 32\nepoch_size: 3\ndecay_epochs: 2\nkeep_checkpoint_max: 2\n",
    );
    let cfg = write_recipe(tmp.path(), "r.yaml", &r);
    let cfg = cfg.to_str().unwrap();
    // Stop mid-epoch at step 3, then resume to the end.
    let out = ok(&senet(&[
        "train",
        "-c",
        cfg,
        "--threads",
        "2",
        "--max_steps",
        "3",
    ]));
    assert!(out.contains("Epoch: [1/3], loss:"), "{out}");
    let mid = save.join("seresnet18-2_1.ckpt");
    assert!(mid.is_file(), "{out}");
    let ck = read_checkpoint(&mid).unwrap();
    let gs = ck.get("global_step").unwrap();
    assert_eq!((gs.dtype, gs.shape.as_slice()), (DType::I32, &[1usize][..]));
    assert_eq!(i32::from_le_bytes(gs.bytes[..4].try_into().unwrap()), 3);

    let out = ok(&senet(&[
        "train",
        "-c",
        cfg,
        "--threads",
        "2",
        "--resume",
        mid.to_str().unwrap(),
    ]));
    assert!(out.contains("Resuming at global step 3"), "{out}");
    assert!(out.contains("Epoch: [3/3], loss:"), "{out}");
    // latest_k: of 1_2, 2_1, 2_2, 3_2 only the two newest remain (and MindCV's optimizer file).
    let mut ckpts: Vec<String> = std::fs::read_dir(&save)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ckpt"))
        .collect();
    ckpts.sort();
    assert_eq!(
        ckpts,
        [
            "optim_seresnet18.ckpt",
            "seresnet18-2_2.ckpt",
            "seresnet18-3_2.ckpt"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(save.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        3
    );

    // Contents, in the order of MindCV's training-cell checkpoint: every model parameter
    // (MindSpore order), global_step, momentum, moments.<trainable>, learning_rate (the whole
    // per-step list of the schedule, as MindCV stores it), and the epoch's sums (senet's).
    let last = save.join("seresnet18-3_2.ckpt");
    let ck = read_checkpoint(&last).unwrap();
    let net = SeNet::new(Arch::SeResNet18, 10, 0).unwrap();
    let names: Vec<&str> = ck.names().collect();
    let specs = net.params.specs();
    let trainable: Vec<&str> = specs
        .iter()
        .filter(|s| s.kind.trainable())
        .map(|s| s.name.as_str())
        .collect();
    let n = specs.len();
    assert_eq!(names.len(), n + trainable.len() + 3 + 4);
    for (name, spec) in names.iter().zip(specs) {
        assert_eq!(*name, spec.name);
    }
    assert_eq!(names[n..n + 2], ["global_step", "momentum"]);
    for (name, t) in names[n + 2..].iter().zip(&trainable) {
        assert_eq!(*name, format!("moments.{t}"));
    }
    assert_eq!(
        names[names.len() - 5..],
        [
            "learning_rate",
            "epoch_loss_sum",
            "epoch_loss_steps",
            "epoch_top1_hits",
            "epoch_images"
        ]
    );
    let gs = ck.get("global_step").unwrap();
    assert_eq!((gs.dtype, gs.shape.as_slice()), (DType::I32, &[1usize][..]));
    assert_eq!(i32::from_le_bytes(gs.bytes[..4].try_into().unwrap()), 6);
    let m = ck.get("momentum").unwrap();
    assert_eq!((m.dtype, m.shape.len()), (DType::F32, 0));
    assert_eq!(m.to_f32().unwrap().data, [0.9f32]);
    let lr = ck.get("learning_rate").unwrap();
    assert_eq!((lr.dtype, lr.shape.as_slice()), (DType::F32, &[6usize][..]));
    let want = senet::optim::lr_schedule(&r, 2, 3).unwrap();
    assert_eq!(lr.to_f32().unwrap().data, want);
    assert!(ck.get("moments.classifier.weight").is_some());
    // The sums of epoch 3's 2 steps of 32 images.
    let int = |name: &str| {
        let t = ck.get(name).unwrap();
        assert_eq!((t.dtype, t.shape.len()), (DType::I64, 0), "{name}");
        i64::from_le_bytes(t.bytes[..8].try_into().unwrap())
    };
    assert_eq!((int("epoch_loss_steps"), int("epoch_images")), (2, 64));
    assert!((0..=64).contains(&int("epoch_top1_hits")));
    let loss_sum = ck.get("epoch_loss_sum").unwrap();
    assert_eq!((loss_sum.dtype, loss_sum.shape.len()), (DType::F64, 0));

    // Such a file validates like a weights file.
    let out = ok(&senet(&[
        "validate",
        "-c",
        cfg,
        "--val_split",
        "val",
        "--ckpt_path",
        last.to_str().unwrap(),
        "--threads",
        "2",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["num_samples"], 10);
}

#[test]
fn cli_rejects_unsupported_recipe_values() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("nodata");
    let save = tmp.path().join("ckpt");
    for (extra, key) in [
        ("mixup: 0.2\n", "mixup"),
        ("auto_augment: randaug-m7-mstd0.5\n", "auto_augment"),
        (
            "gradient_accumulation_steps: 2\n",
            "gradient_accumulation_steps",
        ),
        ("amp_level: O3\n", "amp_level"),
        ("pretrained: True\n", "pretrained"),
        ("opt: adamw\n", "opt"),
    ] {
        let r = recipe(&data, &save, extra);
        let cfg = write_recipe(tmp.path(), "bad.yaml", &r);
        let out = senet(&["train", "-c", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra}: succeeded");
        assert!(err.contains(&format!("'{key}'")), "{extra}: {err}");
    }
    // distribute: True (the Ascend recipes) without a launcher is refused with the mpirun
    // command (tests/dist.rs has the details), and --distribute False overrides it.
    let r = recipe(&data, &save, "distribute: True\n");
    let cfg = write_recipe(tmp.path(), "dist.yaml", &r);
    let out = senet(&["train", "-c", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("distribute: True") && err.contains("mpirun --allow-run-as-root -n 8"),
        "{err}"
    );
    let out = senet(&[
        "train",
        "-c",
        cfg.to_str().unwrap(),
        "--distribute",
        "False",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nodata"), "{err}");
}

#[test]
fn cifar10_cpu_recipe_is_accepted() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/senet/seresnet18_cifar10_cpu.yaml");
    let r = Recipe::from_yaml_file(&path).unwrap();
    r.validate().unwrap();
    train::check_supported(&r).unwrap();
    assert_eq!(
        (r.model.as_str(), r.image_resize, r.epoch_size),
        ("seresnet18", 64, 4)
    );
    // 50000 images, batch 64: 781 steps per epoch; the schedule covers every step.
    let lrs = senet::optim::lr_schedule(&r, 781, r.epoch_size as usize).unwrap();
    assert_eq!(lrs.len(), 4 * 781);
    assert!((lrs[781] - 0.1).abs() < 1e-6 && lrs[4 * 781 - 1] < 1e-3);
}

#[test]
fn cli_ctrl_c_saves_and_exits() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let data = cifar64(tmp.path());
    let save = tmp.path().join("ckpt");
    let r = recipe(
        &data,
        &save,
        "batch_size: 16\nepoch_size: 50\ndecay_epochs: 49\n",
    );
    let cfg = write_recipe(tmp.path(), "r.yaml", &r);
    let mut child = Command::new(env!("CARGO_BIN_EXE_senet"))
        .args(["train", "-c", cfg.to_str().unwrap(), "--threads", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The handler is installed before the first line is printed.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("Model: seresnet18"), "{first}");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{rest}\n{err}");
    assert!(rest.contains("Interrupted at global step"), "{rest}");
    let saved: Vec<String> = std::fs::read_dir(&save)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("seresnet18-") && n.ends_with(".ckpt"))
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(rest.contains(&saved[0]), "{rest}");
}
