//! Checkpoints: MindSpore `.ckpt` and safetensors, and loading them into a model.

use std::path::{Path, PathBuf};

/// `<path>.tmp`: where a file is written before it is renamed to `path`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}
