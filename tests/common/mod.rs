//! Helpers shared by the integration tests: where `shared/` (golden data, datasets) lives, and
//! running the `senet` binary ([`cli`]).
#![allow(dead_code)]
use std::path::PathBuf;

pub mod child;
pub mod cli;
pub mod dist;
pub mod emu;
pub mod fd;
pub mod step;

/// The `shared/` folder beside the repository (or `$SENET_SHARED`).
pub fn shared() -> PathBuf {
    if let Ok(p) = std::env::var("SENET_SHARED") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// A file under `shared/golden/`.
pub fn golden(name: &str) -> PathBuf {
    shared().join("golden").join(name)
}

/// The ImageNet sample photos, `shared/datasets/imagenet-sample` (one folder per class).
pub fn sample_dir() -> PathBuf {
    shared().join("datasets/imagenet-sample")
}
