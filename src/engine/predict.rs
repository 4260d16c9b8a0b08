//! `senet predict`: top-K classes (softmax probabilities) of image files, and their logits.
use super::device::{self, DeviceRequest};
use super::session::{classes_of, load_model, open_checkpoint};
use crate::checkpoint::LoadOptions;
use crate::config::{AmpLevel, DeviceTarget};
use crate::data::{class_folders, list_images, read_class_map, EvalTransform, Loader};
use crate::model::metrics::{softmax, topk};
use crate::model::Arch;
use crate::{Error, Result, Tensor};
use std::path::PathBuf;

/// A prediction run.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// The variant.
    pub arch: Arch,
    /// Checkpoint (.ckpt or .safetensors); required.
    pub ckpt_path: PathBuf,
    /// Class names: a class map (one folder per line, or the TSV `index<TAB>folder<TAB>name`).
    pub class_map: Option<PathBuf>,
    /// Without a class map: a data set split (`<data_dir>/<val_split>` of a recipe) whose sorted
    /// class folders name the classes, as MindSpore's `ImageFolderDataset` numbers them. Without
    /// either, classes are named by index.
    pub class_folders: Option<PathBuf>,
    /// How many classes to report per image.
    pub topk: usize,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Decoding threads.
    pub num_workers: usize,
    /// The device (`--device`, `--device_id`, `--threads`); `auto` is the CPU here (there is
    /// no recipe), `ascend` computes in float32.
    pub device: DeviceRequest,
    /// The eval transform (MindCV's: resize 256 bicubic, centre crop 224, normalize; or timm's).
    pub transform: EvalTransform,
}

/// One class of an image's top-K.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopClass {
    /// Class index.
    pub index: usize,
    /// Class name from the class map, else `class <index>`.
    pub name: String,
    /// Softmax probability in [0, 1].
    pub probability: f64,
}

/// The top-K of one image.
///
/// As JSON (`senet predict --json`): `{"path": ..., "top": [...]}`. `path` is always valid
/// UTF-8: a file name that is not (any bytes are legal in Unix names) is written lossily, each
/// invalid byte as U+FFFD, and then the exact name follows as `"path_bytes": [byte, ...]`
/// (e.g. Python's `bytes(obj["path_bytes"])`); valid names have no `path_bytes`.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The image file.
    pub path: PathBuf,
    /// Its top-K classes, most probable first.
    pub top: Vec<TopClass>,
}

impl serde::Serialize for Prediction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let shown = self.path.to_string_lossy();
        let exact = matches!(shown, std::borrow::Cow::Borrowed(_));
        let mut m = s.serialize_struct("Prediction", if exact { 2 } else { 3 })?;
        m.serialize_field("path", &shown)?;
        if !exact {
            m.serialize_field("path_bytes", &path_bytes(&self.path))?;
        }
        m.serialize_field("top", &self.top)?;
        m.end()
    }
}

/// The bytes of a file name as the system gives them.
#[cfg(unix)]
fn path_bytes(p: &std::path::Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn path_bytes(p: &std::path::Path) -> Vec<u8> {
    p.as_os_str().as_encoded_bytes().to_vec()
}

/// Predicts every image under `paths` (files, or folders searched recursively; sorted).
/// Returns the predictions and the logits (N, num_classes) in the same order.
/// `progress(done, total)` is called after each batch.
/// Errors: a path that does not exist, no image found, checkpoint errors, an image that cannot
/// be decoded (named), a class map (or a class folder count) that differs from the model's
/// classes.
pub fn run(
    opts: &PredictOptions,
    paths: &[PathBuf],
    mut progress: impl FnMut(usize, usize),
) -> Result<(Vec<Prediction>, Tensor)> {
    let files = list_images(paths)?;
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "no .jpg/.jpeg/.png image found in {paths:?}"
        )));
    }
    let map_names: Option<Vec<String>> = match &opts.class_map {
        Some(p) => Some(read_class_map(p)?.1),
        None => None,
    };
    let ckpt = open_checkpoint(&opts.ckpt_path)?;
    let classes = match &map_names {
        Some(n) => n.len(),
        None => classes_of(&ckpt, &opts.ckpt_path).map_err(|e| match e {
            Error::Format { path, msg } => Error::Format {
                path,
                msg: format!("{msg} (give the class names with --class_map FILE)"),
            },
            e => e,
        })?,
    };
    let (net, _) = load_model(
        opts.arch,
        Some(classes),
        &ckpt,
        &opts.ckpt_path,
        &LoadOptions::default(),
    )?;
    drop(ckpt);
    let classes = net.num_classes;
    let names = match (map_names, &opts.class_folders) {
        (Some(names), _) => Some(names),
        (None, Some(dir)) => {
            let folders = class_folders(dir)?;
            if folders.len() != classes {
                return Err(Error::Config(format!(
                    "{} has {classes} classes but {} has {} class folders: pass the data set \
                     it was trained on (--data_dir), or a --class_map",
                    opts.ckpt_path.display(),
                    dir.display(),
                    folders.len()
                )));
            }
            Some(
                folders
                    .iter()
                    .map(|f| f.to_string_lossy().into_owned())
                    .collect(),
            )
        }
        (None, None) => None,
    };
    let (dev, _) = device::resolve(&opts.device, Some(DeviceTarget::Cpu), AmpLevel::O0)?;
    let mut inf = device::inference(&net, dev)?;
    drop(net);
    let samples: Vec<(PathBuf, usize)> = files.iter().map(|p| (p.clone(), 0)).collect();
    let total = samples.len();
    let loader = Loader::new(
        samples,
        opts.transform.clone(),
        opts.batch_size,
        opts.num_workers,
    )?;
    let mut logits = crate::mem::with_capacity(total.saturating_mul(classes), || {
        format!("the logits of {total} images x {classes} classes")
    })?;
    let mut preds = Vec::with_capacity(total);
    for batch in loader {
        let batch = batch?;
        let out = inf.forward(&batch.images)?;
        for (row, path) in out.data.chunks(classes).zip(batch.paths) {
            let probs = softmax(row);
            let top = topk(row, opts.topk.min(classes))
                .into_iter()
                .map(|i| TopClass {
                    index: i,
                    name: names
                        .as_ref()
                        .map_or_else(|| format!("class {i}"), |n| n[i].clone()),
                    probability: probs[i],
                })
                .collect();
            preds.push(Prediction { path, top });
        }
        logits.extend_from_slice(&out.data);
        progress(preds.len(), total);
    }
    Ok((preds, Tensor::from_vec(&[total, classes], logits)?))
}
