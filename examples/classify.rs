//! The Rust library in one program: classify photos with a MindCV checkpoint as `senet predict`
//! does (the recipe's eval transform, the CPU backend, eval-mode logits), printing the top 5
//! class indices with their softmax probabilities.
//!
//! ```bash
//! cargo run --release --example classify -- configs/senet/seresnet50_ascend.yaml \
//!     seresnet50-ff9cd214.ckpt ../shared/datasets/imagenet-sample/val/n01440764/*.JPEG
//! ```
//!
//! Any error (a recipe key, a checkpoint that does not fit the recipe's model, an image that
//! does not decode) is printed naming its file, and the program exits with status 1.
use std::path::Path;

use senet::backend::cpu::CpuBackend;
use senet::checkpoint::{load_model, LoadOptions};
use senet::config::Recipe;
use senet::model::{Arch, InferenceNet, SeNet};
use senet::Tensor;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: classify RECIPE.yaml CHECKPOINT PHOTO...");
        std::process::exit(2);
    }
    if let Err(e) = classify(&args[0], &args[1], &args[2..]) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn classify(recipe: &str, ckpt: &str, photos: &[String]) -> senet::Result<()> {
    let r = Recipe::from_yaml_file(recipe)?;
    let arch = Arch::from_name(&r.model)?;
    // The recipe's class count (MindCV's default: 1000); the load refuses any other.
    let mut net = SeNet::new(arch, r.num_classes.unwrap_or(1000), 0)?;
    load_model(&mut net, Path::new(ckpt), &LoadOptions::default())?;
    let transform = senet::engine::eval_transform(&r)?;
    let side = r.image_resize;
    let mut infer = InferenceNet::new(&net, CpuBackend::new(0)?)?;
    for photo in photos {
        let x = transform.apply_path(Path::new(photo))?;
        let logits = infer.forward(&Tensor::from_vec(&[1, 3, side, side], x)?)?;
        println!("{photo}: {}", top5(&logits.data));
    }
    Ok(())
}

/// "class (probability%)" for the five largest logits, largest first.
fn top5(logits: &[f32]) -> String {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let best: Vec<String> = order
        .iter()
        .take(5)
        .map(|&k| format!("{k} ({:.2}%)", 100.0 * exp[k] / sum))
        .collect();
    best.join(", ")
}
