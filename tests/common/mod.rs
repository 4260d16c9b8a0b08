//! Helpers shared by the integration tests: where `shared/` (golden data, datasets) lives, and
//! running the `senet` binary ([`cli`]).
#![allow(dead_code)]
use std::path::{Path, PathBuf};

pub mod child;
pub mod cli;
pub mod dist;
pub mod emu;
pub mod fd;
pub mod step;
pub mod transform;

/// The `shared/` folder beside the repository (or `$SENET_SHARED`). Panics, saying what to do,
/// when it is not there: every test reading reference data would otherwise fail on its own file.
pub fn shared() -> PathBuf {
    let (dir, from) = match std::env::var("SENET_SHARED") {
        Ok(p) => (PathBuf::from(p), "$SENET_SHARED"),
        Err(_) => (
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
            "the folder beside the repository (../shared)",
        ),
    };
    assert!(
        dir.join("golden").is_dir(),
        "senet's tests read reference data (golden MindCV outputs, sample photos) from a \
         `shared/` folder; {from} = {} has no `golden/` in it. Clone the repository beside \
         `shared/`, or set SENET_SHARED=/path/to/shared",
        dir.display()
    );
    dir
}

/// A file under `shared/golden/`.
pub fn golden(name: &str) -> PathBuf {
    shared().join("golden").join(name)
}

/// The ImageNet sample photos, `shared/datasets/imagenet-sample` (one folder per class).
pub fn sample_dir() -> PathBuf {
    shared().join("datasets/imagenet-sample")
}

/// Four ImageNet sample classes (one photo each in the sample set) as train/ and val/ of a
/// temporary root.
pub fn small_dataset(root: &Path) {
    let src = shared().join("datasets/imagenet-sample/val");
    let mut classes: Vec<_> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    classes.sort();
    for class in classes.iter().take(4) {
        let mut files: Vec<_> = std::fs::read_dir(class)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for split in ["train", "val"] {
            let dir = root.join(split).join(class.file_name().unwrap());
            std::fs::create_dir_all(&dir).unwrap();
            for f in &files {
                std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
}

/// `senet train` arguments for a short run over [`small_dataset`]`(data)`: seresnet18's Ascend
/// recipe (AMP O2), one process, 4 classes, batch 2 (2 steps an epoch), 64x64, no validation
/// while training, checkpoints to `out`. Callers add how long it runs and anything else.
pub fn small_train_args<'a>(data: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "train",
        "-c",
        "configs/senet/seresnet18_ascend.yaml",
        "--data_dir",
        cli::s(data),
        "--distribute",
        "False",
        "--num_classes",
        "4",
        "--batch_size",
        "2",
        "--image_resize",
        "64",
        "--val_while_train",
        "False",
        "--ckpt_save_dir",
        cli::s(out),
    ]
}
