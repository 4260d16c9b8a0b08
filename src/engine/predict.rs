//! `senet predict`: top-K classes (softmax probabilities) of image files, and their logits.
use super::device::{self, DeviceRequest};
use super::session::{load_model, open_checkpoint};
use crate::checkpoint::LoadOptions;
use crate::config::{AmpLevel, DeviceTarget};
use crate::data::{list_images, read_class_map, EvalTransform, Loader};
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
    /// Class names: a class map (one folder per line, or the TSV `index<TAB>folder<TAB>name`);
    /// without one, classes are named by index.
    pub class_map: Option<PathBuf>,
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
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    /// The image file.
    pub path: PathBuf,
    /// Its top-K classes, most probable first.
    pub top: Vec<TopClass>,
}

/// Predicts every image under `paths` (files, or folders searched recursively; sorted).
/// Returns the predictions and the logits (N, num_classes) in the same order.
/// `progress(done, total)` is called after each batch.
/// Errors: a path that does not exist, no image found, checkpoint errors, an image that cannot
/// be decoded (named), a class map whose length differs from the model's classes.
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
    let names: Option<Vec<String>> = match &opts.class_map {
        Some(p) => Some(read_class_map(p)?.1),
        None => None,
    };
    let ckpt = open_checkpoint(&opts.ckpt_path)?;
    let (net, _) = load_model(
        opts.arch,
        names.as_ref().map(|n| n.len()),
        &ckpt,
        &opts.ckpt_path,
        &LoadOptions::default(),
    )?;
    drop(ckpt);
    let classes = net.num_classes;
    let (dev, _) = device::resolve(&opts.device, DeviceTarget::Cpu, AmpLevel::O0)?;
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
    let mut logits = Vec::with_capacity(total * classes);
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
