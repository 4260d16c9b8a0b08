//! Hostile and unlucky inputs (issue 13), class by class, through the CLI and the library: no
//! hang, abort, signal, panic, silent skip or lost file. Every CLI run is a child process under
//! a timeout (tests/common/child.rs), so a hang fails the test instead of blocking it. The
//! size-arithmetic and decompression-bomb reproducers are replayed by tests/corpus.rs; the C
//! ABI's share by tests/ffi.rs.
mod common;

use common::child::{run_with_timeout, Finished};
use senet::checkpoint::{read_ckpt, write_ckpt};
use senet::tensor::{DType, RawTensor};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

fn senet(args: &[&OsStr]) -> Finished {
    run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_senet")).args(args),
        TIMEOUT,
    )
}

/// `senet` with string arguments.
fn run(args: &[&str]) -> Finished {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    senet(&args)
}

fn ok(f: &Finished) -> &str {
    assert!(f.ok(), "senet failed: {}", f.describe());
    &f.stdout
}

/// Asserts a clean failure (exit status 1, no panic) whose stderr contains every needle.
fn fails_naming(f: &Finished, needles: &[&str]) {
    assert_eq!(
        f.status.and_then(|s| s.code()),
        Some(1),
        "expected exit status 1: {}",
        f.describe()
    );
    assert!(!f.stderr.contains("panicked"), "{}", f.describe());
    for n in needles {
        assert!(
            f.stderr.contains(n),
            "stderr does not name {n:?}: {}",
            f.describe()
        );
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sample_images() -> Vec<PathBuf> {
    let dir = common::shared().join("datasets/imagenet-sample");
    let files = senet::data::list_images(&[dir]).unwrap();
    assert_eq!(files.len(), 100);
    files
}

/// A formula-weight seresnet18 checkpoint with 10 classes.
fn checkpoint(dir: &Path) -> PathBuf {
    let path = dir.join("r18.ckpt");
    ok(&run(&[
        "init",
        "--model",
        "seresnet18",
        "--formula",
        "--num_classes",
        "10",
        "--out",
        s(&path),
    ]));
    path
}

/// `dir/file`: a checkpoint of one Float32 tensor `name` of `len` zeros.
fn zeros_ckpt(dir: &Path, file: &str, name: &str, len: usize) -> PathBuf {
    let path = dir.join(file);
    let t = RawTensor {
        dtype: DType::F32,
        shape: vec![len],
        bytes: vec![0; 4 * len],
    };
    write_ckpt(&path, [(name, &t)], false).unwrap();
    path
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn predict_args<'a>(ckpt: &'a Path, extra: &[&'a OsStr]) -> Vec<&'a OsStr> {
    let mut v: Vec<&OsStr> = ["predict", "--model", "seresnet18", "--ckpt_path"]
        .iter()
        .map(OsStr::new)
        .collect();
    v.push(ckpt.as_os_str());
    v.extend_from_slice(extra);
    v
}

// ---- Arithmetic on sizes read from a file -------------------------------------------------------

/// The checkpoints whose length fields are near 2^64 (they made the reader loop
/// forever in release builds): predict ends at once with an error naming the file. (Every
/// reproducer of tests/corpus/ runs through the readers themselves in tests/corpus.rs.)
#[test]
fn sizes_near_2_64_are_errors_not_loops() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/ckpt");
    let img = sample_images()[0].clone();
    for name in [
        "record_length_near_2_64.ckpt",
        "tag_length_near_2_64.ckpt",
        "content_length_near_2_64.ckpt",
        "dims_product_overflows.ckpt",
    ] {
        let ckpt = corpus.join(name);
        let f = senet(&predict_args(&ckpt, &[img.as_os_str()]));
        fails_naming(&f, &[name]);
    }
}

// ---- Files that change or are not regular ----------------------------------------------------

/// A FIFO named like an image or a checkpoint is refused at once (never opened for a blocking
/// read), by predict, validate (not skipped) and the checkpoint reader.
#[test]
fn fifos_are_refused_not_waited_on_or_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let fifo_jpg = dir.path().join("pipe.jpg");
    mkfifo(&fifo_jpg);
    let f = senet(&predict_args(&ckpt, &[fifo_jpg.as_os_str()]));
    fails_naming(
        &f,
        &["pipe.jpg", "is a FIFO (named pipe), not a regular file"],
    );

    // validate: a FIFO inside a class folder is an error naming it, not a silently smaller set.
    let val = dir.path().join("data/val/n01");
    std::fs::create_dir_all(&val).unwrap();
    std::fs::copy(&sample_images()[0], val.join("a.jpg")).unwrap();
    mkfifo(&val.join("b.jpg"));
    let f = run(&[
        "validate",
        "--model",
        "seresnet18",
        "--data_dir",
        s(&dir.path().join("data")),
        "--ckpt_path",
        s(&ckpt),
        "--num_classes",
        "10",
    ]);
    fails_naming(&f, &["b.jpg", "FIFO"]);

    let fifo_ckpt = dir.path().join("pipe.ckpt");
    mkfifo(&fifo_ckpt);
    let e = read_ckpt(&fifo_ckpt).unwrap_err().to_string();
    assert!(e.contains("pipe.ckpt") && e.contains("FIFO"), "{e}");
    let img = sample_images()[0].clone();
    let f = senet(&predict_args(&fifo_ckpt, &[img.as_os_str()]));
    fails_naming(&f, &["pipe.ckpt", "not a regular file"]);
    // Devices too (reading /dev/zero as a checkpoint would never end).
    let e = read_ckpt(Path::new("/dev/zero")).unwrap_err().to_string();
    assert!(e.contains("character device"), "{e}");
}

/// A checkpoint truncated and rewritten in place while it is being loaded: every load ends in
/// a result or an error, never a SIGBUS (which would kill this test process).
#[test]
fn checkpoint_changing_while_loading_never_faults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.ckpt");
    let t = RawTensor {
        dtype: DType::U8,
        shape: vec![32 << 20],
        bytes: vec![7; 32 << 20],
    };
    write_ckpt(&path, [("w", &t)], true).unwrap();
    let full = std::fs::read(&path).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // In place: truncate, then write back (no rename), as a careless copy would.
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len(((n * 7919) % 64) as u64 * 4096).unwrap();
                std::fs::write(&path, &full).unwrap();
                n += 1;
            }
        })
    };
    let (mut loaded, mut refused) = (0, 0);
    for _ in 0..200 {
        match read_ckpt(&path) {
            Ok(ck) => {
                assert_eq!(ck.tensors[0].1, t);
                loaded += 1;
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("big.ckpt"), "{msg}");
                refused += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(loaded + refused, 200);
}

// ---- Paths -------------------------------------------------------------------------------------

/// A symbolic link loop (and a second link to the same folder) in a folder given to predict:
/// every image is reported once.
#[test]
fn symlink_loops_are_walked_once() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(photos.join("sub")).unwrap();
    let images = sample_images();
    std::fs::copy(&images[0], photos.join("a.jpg")).unwrap();
    std::fs::copy(&images[1], photos.join("sub/b.jpg")).unwrap();
    std::os::unix::fs::symlink(&photos, photos.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(photos.join("sub"), photos.join("again")).unwrap();
    let listed = senet::data::list_images(std::slice::from_ref(&photos)).unwrap();
    assert_eq!(
        listed,
        vec![photos.join("a.jpg"), photos.join("again/b.jpg")]
    );
    let out = senet(&predict_args(
        &ckpt,
        &[OsStr::new("--json"), photos.as_os_str()],
    ));
    assert_eq!(ok(&out).lines().count(), 2, "{}", out.stdout);
}

/// File and folder names that are not UTF-8: validate finds the class folder, predict --json
/// writes valid JSON with the exact bytes in `path_bytes`.
#[test]
fn non_utf8_names_work_and_json_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let class = OsStr::from_bytes(b"cl\xffss");
    let folder = dir.path().join("data/val").join(class);
    std::fs::create_dir_all(&folder).unwrap();
    let name = OsStr::from_bytes(b"ph\xe9to.jpg");
    std::fs::copy(&sample_images()[2], folder.join(name)).unwrap();
    std::fs::create_dir_all(dir.path().join("data/val/other")).unwrap();
    std::fs::copy(&sample_images()[3], dir.path().join("data/val/other/x.jpg")).unwrap();
    let out = run(&[
        "validate",
        "--model",
        "seresnet18",
        "--data_dir",
        s(&dir.path().join("data")),
        "--ckpt_path",
        s(&ckpt),
        "--num_classes",
        "10",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(v["num_samples"], 2);

    let out = senet(&predict_args(
        &ckpt,
        &[OsStr::new("--json"), folder.as_os_str()],
    ));
    let line: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    let exact = folder.join(name);
    assert_eq!(line["path"], exact.to_string_lossy().as_ref());
    let bytes: Vec<u8> = line["path_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(bytes, exact.as_os_str().as_bytes());
    assert_eq!(line["top"].as_array().unwrap().len(), 5);
    // A UTF-8 name has no path_bytes.
    let out = senet(&predict_args(
        &ckpt,
        &[OsStr::new("--json"), sample_images()[0].as_os_str()],
    ));
    let line: serde_json::Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert!(line.get("path_bytes").is_none(), "{line}");
}

/// An output that is one of the inputs (directly, through a link, or found in an input folder)
/// is refused before anything is written; the input is untouched.
#[test]
fn outputs_never_overwrite_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let photo = photos.join("a.jpg");
    std::fs::copy(&sample_images()[0], &photo).unwrap();
    let original = std::fs::read(&photo).unwrap();
    let link = dir.path().join("link.npy");
    std::os::unix::fs::symlink(&photo, &link).unwrap();

    for out in [&photo, &link] {
        let f = senet(&predict_args(
            &ckpt,
            &[
                OsStr::new("--save_logits"),
                out.as_os_str(),
                photos.as_os_str(),
            ],
        ));
        fails_naming(&f, &["refusing to overwrite an input", "a.jpg"]);
        let f = run(&["preprocess", s(&photos), "-o", s(out)]);
        fails_naming(&f, &["refusing to overwrite an input"]);
    }
    let f = senet(&predict_args(
        &ckpt,
        &[
            OsStr::new("--save_logits"),
            ckpt.as_os_str(),
            photo.as_os_str(),
        ],
    ));
    fails_naming(&f, &["refusing to overwrite an input", "r18.ckpt"]);
    let f = run(&["convert", s(&ckpt), s(&ckpt)]);
    fails_naming(&f, &["refusing to overwrite an input"]);
    assert_eq!(std::fs::read(&photo).unwrap(), original);
    // A new output beside the inputs is fine.
    ok(&run(&[
        "preprocess",
        s(&photos),
        "-o",
        s(&dir.path().join("x.npy")),
    ]));
}

// ---- Decompression bombs, allocations sized by input -------------------------------------------

/// The 1x20000 PNG through predict: an error naming the file and the resized size; the
/// 65500x65500 JPEG: naming the file and the pixel count.
#[test]
fn image_bombs_are_refused_naming_file_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/image");
    let png = corpus.join("png_1x20000.png");
    let f = senet(&predict_args(&ckpt, &[png.as_os_str()]));
    fails_naming(&f, &["png_1x20000.png", "1x20000", "256x5120000"]);
    let jpg = corpus.join("jpeg_declares_65500x65500.jpg");
    let f = senet(&predict_args(&ckpt, &[jpg.as_os_str()]));
    fails_naming(
        &f,
        &["jpeg_declares_65500x65500.jpg", "65500x65500", "178956970"],
    );
}

/// A checkpoint whose classifier.bias claims a million classes (4 MB) but holds no classifier
/// weight of that size: predict refuses it from the shapes (naming the model it would have
/// built and the 133 parameters seresnet18 has besides that bias), without building an 8 GB
/// model; a
/// class map index of 99999999999 is a line-numbered error.
#[test]
fn input_sized_allocations_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = zeros_ckpt(dir.path(), "million.ckpt", "classifier.bias", 1_000_000);
    let img = sample_images()[0].clone();
    let f = senet(&predict_args(&path, &[img.as_os_str()]));
    fails_naming(
        &f,
        &[
            "million.ckpt",
            "seresnet18 (1000000 classes)",
            "missing parameter 'layer0.0.weight'",
            "... and 123 more (133 missing, 0 mis-shaped or not float, 0 unexpected in all)",
        ],
    );

    let map = dir.path().join("map.tsv");
    std::fs::write(&map, "0\ta\n99999999999\tb\n").unwrap();
    let f = run(&[
        "predict",
        "--model",
        "seresnet18",
        "--ckpt_path",
        s(&path),
        "--class_map",
        s(&map),
        s(&img),
    ]);
    fails_naming(
        &f,
        &["map.tsv", "line 2: class index 99999999999 is out of range"],
    );
}

// ---- Smaller ones ------------------------------------------------------------------------------

/// A full or closed standard output: a message and status 1, never a panic; a reader that goes
/// away ends the process as SIGPIPE ends Unix tools, silently.
#[test]
fn failing_stdout_is_a_clean_exit() {
    let f = run_with_timeout(
        Command::new("sh").args([
            "-c",
            &format!("exec {} models >/dev/full", env!("CARGO_BIN_EXE_senet")),
        ]),
        TIMEOUT,
    );
    assert_eq!(f.status.and_then(|s| s.code()), Some(1), "{}", f.describe());
    assert!(
        f.stderr
            .contains("error: writing standard output: No space left on device"),
        "{}",
        f.describe()
    );
    assert!(!f.stderr.contains("panicked"), "{}", f.describe());
    // Closed (fd 1 not open: a shell's `senet models >&-`): Rust's standard library discards
    // what is written to a closed standard output; the command runs to its end, no panic.
    let f = run_with_timeout(
        Command::new("sh").args([
            "-c",
            &format!("exec {} models >&-", env!("CARGO_BIN_EXE_senet")),
        ]),
        TIMEOUT,
    );
    assert!(f.ok() && f.stderr.is_empty(), "{}", f.describe());
    // A pipe whose reader has gone before the first line: ended by SIGPIPE, like Unix tools,
    // with nothing on stderr.
    let mut child = Command::new(env!("CARGO_BIN_EXE_senet"))
        .arg("models")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--ckpt_save_dir ''` is refused before training starts, naming the key.
#[test]
fn empty_ckpt_save_dir_is_refused() {
    let recipe =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/senet/seresnet18_cifar10_cpu.yaml");
    let f = run(&[
        "train",
        "-c",
        s(&recipe),
        "--data_dir",
        "/nonexistent",
        "--ckpt_save_dir",
        "",
    ]);
    fails_naming(&f, &["ckpt_save_dir", "must name a folder"]);
}

/// Hints name only flags the command has, with values it accepts: predict (no --num_classes)
/// points at --class_map; a classifier.bias of 0 entries never suggests `--num_classes 0`.
#[test]
fn hints_name_real_flags_and_valid_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = zeros_ckpt(dir.path(), "nobias.ckpt", "x", 2);
    let img = sample_images()[0].clone();
    let f = senet(&predict_args(&path, &[img.as_os_str()]));
    fails_naming(&f, &["nobias.ckpt", "--class_map"]);
    assert!(!f.stderr.contains("--num_classes"), "{}", f.describe());

    let zero = zeros_ckpt(dir.path(), "zero.ckpt", "classifier.bias", 0);
    let val = dir.path().join("data/val/c");
    std::fs::create_dir_all(&val).unwrap();
    std::fs::copy(&img, val.join("a.jpg")).unwrap();
    let f = run(&[
        "validate",
        "--model",
        "seresnet18",
        "--data_dir",
        s(&dir.path().join("data")),
        "--ckpt_path",
        s(&zero),
    ]);
    fails_naming(&f, &["zero.ckpt"]);
    assert!(!f.stderr.contains("--num_classes 0"), "{}", f.describe());
}

// ---- Training state ----------------------------------------------------------------------------

/// 20 CIFAR-10 training images (2 per class) extracted under `dir`; returns the data folder.
fn cifar20(dir: &Path) -> PathBuf {
    common::cli::extract_cifar10(dir, &["cifar10/train/*/000[0-1].jpg"])
}

/// A small CPU recipe (seresnet18 at 32x32, batch 10: 2 steps per epoch) over `data` writing to
/// `save`, with `extra` (`key: value` lines) applied as overrides.
fn small_recipe(data: &Path, save: &Path, extra: &str) -> senet::config::Recipe {
    let text = format!(
        "model: seresnet18\ndata_dir: {}\nckpt_save_dir: {}\nimage_resize: 32\ncrop_pct: 1.0\n\
         batch_size: 10\nepoch_size: 2\nopt: momentum\nmomentum: 0.9\nweight_decay: 0.0001\n\
         scheduler: constant\nlr: 0.01\nlabel_smoothing: 0.0\nnum_parallel_workers: 2\n\
         log_interval: 1000\n",
        data.display(),
        save.display()
    );
    let mut r = senet::config::Recipe::from_yaml_str(&text).unwrap();
    for line in extra.lines() {
        let (k, v) = line.split_once(':').unwrap();
        r.set(k.trim(), v.trim()).unwrap();
    }
    r
}

/// Trains `recipe` on 2 CPU threads for at most `max_steps` steps.
fn train(
    recipe: senet::config::Recipe,
    max_steps: u64,
    resume: Option<PathBuf>,
) -> senet::Result<senet::engine::train::TrainReport> {
    let opts = senet::engine::train::TrainOptions {
        recipe,
        device: senet::engine::device::DeviceRequest::cpu(2),
        max_steps: Some(max_steps),
        resume,
        ..Default::default()
    };
    senet::engine::train::run(&opts, |_| {})
}

/// The `.ckpt` files in `dir`.
fn checkpoints_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ckpt"))
        .collect();
    v.sort();
    v
}

/// ReLU and max pool propagate NaN on the CPU backend (MindSpore's and PyTorch's rule), through
/// the direct convolutions and the fast ones (AVX-512 GEMM and Winograd epilogues where the CPU
/// has them): one NaN pixel makes every logit of its image NaN and leaves the other image's
/// logits finite.
#[test]
fn relu_and_max_pool_propagate_nan() {
    use senet::backend::{Backend, MaxPool2dParams, Shape4};
    use senet::model::InferenceNet;
    use senet::model::{formula_input, Arch, SeNet};
    let net = SeNet::new(Arch::SeResNet18, 10, 0).unwrap();
    let mut x = formula_input("nan_input", &[2, 3, 64, 64]);
    x.data[5 * 64 + 7] = f32::NAN;
    for fast in [true, false] {
        let mut be = senet::backend::cpu::CpuBackend::new(2).unwrap();
        be.set_fast_conv(fast);
        let mut inf = InferenceNet::new(&net, be).unwrap();
        let y = inf.forward(&x).unwrap();
        assert!(
            y.data[..10].iter().all(|v| v.is_nan()),
            "fast {fast}: {y:?}"
        );
        assert!(
            y.data[10..].iter().all(|v| v.is_finite()),
            "fast {fast}: {y:?}"
        );
    }
    // The max pool alone, MindSpore's 'same' windows and timm's padded ones: the window
    // holding the NaN gives NaN, the others their maximum.
    let be = senet::backend::cpu::CpuBackend::new(1).unwrap();
    let xs = Shape4::new(1, 1, 4, 4);
    let mut plane: Vec<f32> = (0..16).map(|i| i as f32).collect();
    plane[0] = f32::NAN;
    let mut y = vec![0.0f32; 4];
    be.max_pool2d(MaxPool2dParams::same(2, 2), &plane, xs, &mut y)
        .unwrap();
    assert!(y[0].is_nan());
    assert_eq!(&y[1..], &[7.0, 13.0, 15.0]);
    // 3x3, stride 2, one pixel of padding: windows at rows/columns -1..2 and 1..4.
    let mut y = vec![0.0f32; 4];
    be.max_pool2d(
        MaxPool2dParams::symmetric(3, 2, 1, false),
        &plane,
        xs,
        &mut y,
    )
    .unwrap();
    assert!(y[0].is_nan());
    assert_eq!(&y[1..], &[7.0, 13.0, 15.0]);
}

/// The NaN/Inf guard: with a fixed loss scale a non-finite loss or gradient stops the run
/// before the update, naming the step, and nothing is saved; under a dynamic loss scale an
/// overflowing step is skipped (the scale shrinks) and what is saved is finite.
#[test]
fn non_finite_training_stops_or_skips_and_saves_nothing_non_finite() {
    let tmp = tempfile::tempdir().unwrap();
    let data = cifar20(tmp.path());
    // A learning rate of 1e38 blows the weights up within a few steps: the run stops at the
    // first non-finite loss or gradient (or at a save, should a weight itself overflow), and
    // every checkpoint written before is finite.
    let save = tmp.path().join("fixed");
    let r = small_recipe(&data, &save, "lr: 1e38\nloss_scale: 1.0\nepoch_size: 20");
    let e = train(r, 40, None).unwrap_err().to_string();
    assert!(
        (e.contains("the loss became") || e.contains("the gradient of '"))
            && e.contains("stopped before the update")
            || e.contains("holds NaN or infinite values after global step"),
        "{e}"
    );
    for path in checkpoints_in(&save) {
        let ck = senet::checkpoint::read_checkpoint(&path).unwrap();
        for (name, t) in &ck.tensors {
            if let Ok(v) = t.to_f32() {
                assert!(
                    v.data.iter().all(|x| x.is_finite()),
                    "{}: {name}",
                    path.display()
                );
            }
        }
    }
    // The save itself refuses non-finite weights, naming the file and the parameter.
    {
        use senet::backend::cpu::CpuBackend;
        use senet::optim::{TrainConfig, TrainNet};
        let mut net = senet::model::SeNet::formula(senet::model::Arch::SeResNet18, 10).unwrap();
        net.params.get_mut("layer2.0.bn1.gamma").unwrap().data[3] = f32::INFINITY;
        let cfg = TrainConfig {
            label_smoothing: 0.0,
            momentum: 0.9,
            weight_decay: 0.0,
            nesterov: false,
            loss_scale: 1.0,
            clip_value: None,
            ema_decay: None,
        };
        let tn = TrainNet::new(&net, CpuBackend::new(1).unwrap(), cfg, |_| true).unwrap();
        let path = tmp.path().join("inf.ckpt");
        let mut scratch = net.params.clone();
        let sums = Default::default();
        let opt = senet::engine::train::state::OptimizerState {
            global_step: 7,
            momentum: 0.9,
            learning_rate: &[0.1],
        };
        let e = senet::engine::train::state::save_state(&path, &tn, &mut scratch, &opt, &sums)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not writing")
                && e.contains("inf.ckpt")
                && e.contains(
                    "'layer2.0.bn1.gamma' holds NaN or infinite values after global step 7"
                ),
            "{e}"
        );
        assert!(!path.exists());
    }
    // A loss scale of 3e38 overflows every scaled gradient: under `dynamic` each step is
    // skipped and the scale halves; the weights stay MindCV's initialisation.
    let save2 = tmp.path().join("dynamic");
    let r = small_recipe(&data, &save2, "loss_scale_type: dynamic\nloss_scale: 3e38");
    let seed = r.seed;
    let report = train(r, 2, None).unwrap();
    assert_eq!(report.global_step, 2);
    let ckpt = save2.join("seresnet18-1_2.ckpt");
    let ck = senet::checkpoint::read_checkpoint(&ckpt).unwrap();
    let scale = ck.get("scale_sense").unwrap().to_f32().unwrap().data[0];
    assert_eq!(scale, 3e38f32 / 4.0);
    let init = senet::model::SeNet::new(senet::model::Arch::SeResNet18, 10, seed).unwrap();
    for name in ["layer0.0.weight", "classifier.weight"] {
        let w = ck.get(name).unwrap().to_f32().unwrap();
        assert!(
            w.data == init.params.get(name).unwrap().data,
            "{name} changed"
        );
    }
}

/// `--resume` refuses a checkpoint whose optimizer state holds NaN (as it refuses non-finite
/// weights), naming the file and the entry, before any step runs.
#[test]
fn resume_refuses_non_finite_optimizer_state() {
    let tmp = tempfile::tempdir().unwrap();
    let data = cifar20(tmp.path());
    let save = tmp.path().join("run");
    train(small_recipe(&data, &save, ""), 1, None).unwrap();
    let good = save.join("seresnet18-1_1.ckpt");
    let mut ck = read_ckpt(&good).unwrap();
    let (_, m) = ck
        .tensors
        .iter_mut()
        .find(|(n, _)| n == "moments.layer1.0.conv1.weight")
        .unwrap();
    m.bytes[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    let bad = tmp.path().join("nan_moments.ckpt");
    write_ckpt(&bad, ck.tensors.iter().map(|(n, t)| (n.as_str(), t)), false).unwrap();
    let save2 = tmp.path().join("resumed");
    let e = train(small_recipe(&data, &save2, ""), 2, Some(bad))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nan_moments.ckpt")
            && e.contains("'moments.layer1.0.conv1.weight': 1 of 36864 values are NaN or infinite"),
        "{e}"
    );
    assert!(!save2.exists() || checkpoints_in(&save2).is_empty());
}

/// One training run per `ckpt_save_dir`: a second run into a locked folder is refused naming
/// the holder's PID and writes nothing; a lock file left by a dead process is taken over.
#[test]
fn ckpt_save_dir_is_locked_by_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = cifar20(tmp.path());
    let save = tmp.path().join("run");
    std::fs::create_dir_all(&save).unwrap();
    let recipe = tmp.path().join("r.yaml");
    std::fs::write(&recipe, small_recipe(&data, &save, "").to_yaml()).unwrap();
    let train_cli = || {
        run(&[
            "train",
            "-c",
            s(&recipe),
            "--max_steps",
            "1",
            "--threads",
            "2",
        ])
    };
    let held = senet::fsutil::DirLock::acquire(&save, "training run").unwrap();
    let f = train_cli();
    fails_naming(
        &f,
        &[
            ".senet.lock",
            &format!(
                "locked by another training run (PID {})",
                std::process::id()
            ),
        ],
    );
    assert!(checkpoints_in(&save).is_empty());
    assert!(!save.join("seresnet18.yaml").exists());
    drop(held);
    // A lock file naming a process that has exited: nobody holds the lock, the run takes it.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(save.join(".senet.lock"), format!("{dead_pid}\n")).unwrap();
    // The args dump is written through a temporary file and a rename: an existing dump that
    // is a hard link to another file is replaced, the other file left as it was.
    let precious = tmp.path().join("precious.yaml");
    std::fs::write(&precious, "keep me\n").unwrap();
    std::fs::hard_link(&precious, save.join("seresnet18.yaml")).unwrap();
    ok(&train_cli());
    // The step checkpoint and MindCV's optimizer file beside it.
    assert_eq!(
        checkpoints_in(&save),
        vec![
            save.join("optim_seresnet18.ckpt"),
            save.join("seresnet18-1_1.ckpt")
        ]
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n");
    let dump = std::fs::read_to_string(save.join("seresnet18.yaml")).unwrap();
    assert!(dump.contains("model: seresnet18"), "{dump}");
}
