//! timm compatibility against what timm 1.0 / PyTorch computed (`tests/data/timm/`, made by
//! `scripts/make_timm_golden.py`): timm's eval transform on 8 real photos of
//! `shared/datasets/imagenet-sample`.
mod common;

use std::path::{Path, PathBuf};

use senet::data::{decode_file, EvalTransform, Preprocess};

/// A file of `tests/data/timm/`.
fn timm_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/timm")
        .join(name)
}

/// The 8 photos of the golden files, in their order.
fn photos() -> Vec<PathBuf> {
    let list = std::fs::read_to_string(timm_data("files.txt")).unwrap();
    let files: Vec<PathBuf> = list
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| common::shared().join(l))
        .collect();
    assert_eq!(files.len(), 8);
    files
}

/// `pixels` of `pixels.npz`: what PIL's resize and torchvision's centre crop gave, before
/// ToTensor, (8, 224, 224, 3) u8.
fn pil_pixels() -> Vec<u8> {
    let mut npz = npyz::npz::NpzArchive::open(timm_data("pixels.npz")).unwrap();
    let npy = npz.by_name("pixels").unwrap().unwrap();
    assert_eq!(npy.shape(), &[8, 224, 224, 3]);
    npy.into_vec::<u8>().unwrap()
}

#[test]
fn timm_transform_matches_pil_on_real_photos() {
    let want = pil_pixels();
    let t = EvalTransform::default().with_preprocess(Preprocess::Timm);
    let per = 224 * 224 * 3;
    let mut worst = 0u8;
    for (i, path) in photos().iter().enumerate() {
        let img = decode_file(path).unwrap();
        let ours = t.pixels(&img).unwrap();
        assert_eq!((ours.width, ours.height), (224, 224));
        let pil = &want[i * per..(i + 1) * per];
        let diff: Vec<u8> = ours
            .data
            .iter()
            .zip(pil)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let max = diff.iter().copied().max().unwrap();
        let off = diff.iter().filter(|&&d| d > 0).count();
        println!(
            "{} ({}x{}): max |diff| {max} grey levels, {off} of {per} values differ",
            path.display(),
            img.width,
            img.height
        );
        worst = worst.max(max);
    }
    // Both decode with libjpeg-turbo and resize with Pillow's integer arithmetic: equal. (The
    // issue allows one grey level; more would mean the resampler is not Pillow's.)
    assert_eq!(worst, 0, "max |diff| {worst} grey levels");
}
