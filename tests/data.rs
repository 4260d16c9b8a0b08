//! Data pipeline tests on real photos and golden tensors from MindCV (see shared/golden/README.md).
mod common;

use common::sample_dir;
use std::path::{Path, PathBuf};

use senet::data::{
    decode_bytes, decode_file, list_images, resize_u8, EvalTransform, ImageFolder, Interpolation,
    Loader, RgbImage,
};
use senet::Error;

fn golden_files() -> Vec<PathBuf> {
    let list = std::fs::read_to_string(common::golden("images_files.txt")).unwrap();
    list.lines()
        .filter(|l| !l.is_empty())
        .map(|l| common::shared().join(l))
        .collect()
}

#[test]
fn eval_transform_matches_mindcv_golden() {
    let golden = senet::npy::read_f32(&common::golden("images_tensors.npy")).unwrap();
    assert_eq!(golden.shape, vec![8, 3, 224, 224]);
    let t = EvalTransform::default();
    let per = 3 * 224 * 224;
    let (mut max, mut sum) = (0f32, 0f64);
    let mut over_one = 0usize;
    let one_level = 1.0 / 57.12 + 1e-5;
    for (i, path) in golden_files().iter().take(8).enumerate() {
        let ours = t.apply_path(path).unwrap();
        let want = &golden.data[i * per..(i + 1) * per];
        let (mut m, mut s) = (0f32, 0f64);
        for (a, b) in ours.iter().zip(want) {
            let d = (a - b).abs();
            m = m.max(d);
            s += d as f64;
            over_one += (d > one_level) as usize;
        }
        println!(
            "image {i} {}: max |diff| {m:.6} ({:.2} grey levels), mean {:.2e}",
            path.display(),
            m * 57.12,
            s / per as f64
        );
        max = max.max(m);
        sum += s;
    }
    let mean = sum / (8 * per) as f64;
    println!(
        "all 8: max |diff| {max:.6} (~{:.2} grey levels), mean |diff| {mean:.3e}, values beyond one grey level: {over_one}",
        max * 57.12
    );
    assert!(max <= 3.0 / 57.12 + 1e-6, "max |diff| {max}");
    assert!(mean <= 0.005, "mean |diff| {mean}");
}

#[test]
fn jpeg_decodes_with_known_size() {
    let path = sample_dir().join("val/n01440764/n01440764_tench.JPEG");
    let img = decode_file(&path).unwrap();
    let header = turbojpeg_dims(&path);
    assert_eq!((img.width, img.height), header);
    assert_eq!(img.data.len(), img.width * img.height * 3);
    // A photo, not a blank: pixels vary.
    assert!(img.data.iter().any(|&v| v != img.data[0]));
}

/// Width and height from the JPEG's SOF marker, parsed by hand.
fn turbojpeg_dims(path: &Path) -> (usize, usize) {
    let b = std::fs::read(path).unwrap();
    let mut i = 2;
    while i + 9 < b.len() {
        assert_eq!(b[i], 0xFF);
        let m = b[i + 1];
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if (0xC0..=0xCF).contains(&m) && m != 0xC4 && m != 0xC8 && m != 0xCC {
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]) as usize;
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]) as usize;
            return (w, h);
        }
        i += 2 + len;
    }
    panic!("no SOF in {}", path.display());
}

#[test]
fn png_variants_decode_to_exact_rgb() {
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (5u32, 3u32);
    let rgb_of = |x: u32, y: u32| [(x * 50) as u8, (y * 80) as u8, (x * 7 + y * 13) as u8];
    let expected_rgb: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| rgb_of(x, y)))
        .collect();

    let p = dir.path().join("rgb.png");
    ImageBuffer::from_fn(w, h, |x, y| Rgb(rgb_of(x, y)))
        .save(&p)
        .unwrap();
    assert_eq!(decode_file(&p).unwrap().data, expected_rgb);

    let p = dir.path().join("rgba.PNG");
    ImageBuffer::from_fn(w, h, |x, y| {
        let [r, g, b] = rgb_of(x, y);
        Rgba([r, g, b, (x * 60) as u8])
    })
    .save_with_format(&p, image::ImageFormat::Png)
    .unwrap();
    assert_eq!(decode_file(&p).unwrap().data, expected_rgb, "alpha dropped");

    let grey = |x: u32, y: u32| (x * 40 + y * 9) as u8;
    let expected_grey: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| [grey(x, y); 3]))
        .collect();
    let p = dir.path().join("grey.png");
    ImageBuffer::from_fn(w, h, |x, y| Luma([grey(x, y)]))
        .save(&p)
        .unwrap();
    assert_eq!(decode_file(&p).unwrap().data, expected_grey);

    let p = dir.path().join("grey_alpha.png");
    ImageBuffer::from_fn(w, h, |x, y| LumaA([grey(x, y), 7]))
        .save(&p)
        .unwrap();
    assert_eq!(decode_file(&p).unwrap().data, expected_grey);

    // 16-bit: the high byte is kept.
    let p = dir.path().join("rgb16.png");
    ImageBuffer::from_fn(w, h, |x, y| {
        let [r, g, b] = rgb_of(x, y);
        Rgb([r as u16 * 256 + 200, g as u16 * 256 + 3, b as u16 * 256])
    })
    .save(&p)
    .unwrap();
    assert_eq!(decode_file(&p).unwrap().data, expected_rgb);
    let p = dir.path().join("grey16.png");
    ImageBuffer::from_fn(w, h, |x, y| Luma([grey(x, y) as u16 * 256 + 255]))
        .save(&p)
        .unwrap();
    assert_eq!(decode_file(&p).unwrap().data, expected_grey);

    // Palette PNG, written by hand (see palette_png).
    let palette = [[10u8, 20, 30], [200, 100, 0], [1, 2, 3]];
    let idx = |x: u32, y: u32| ((x + y) % 3) as u8;
    let p = dir.path().join("palette.png");
    std::fs::write(&p, palette_png(w, h, &palette.concat(), idx)).unwrap();
    let expected_pal: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| palette[idx(x, y) as usize]))
        .collect();
    assert_eq!(decode_file(&p).unwrap().data, expected_pal);

    // Content, not extension, decides: a PNG named .jpg decodes.
    let p2 = dir.path().join("really_png.jpg");
    std::fs::copy(dir.path().join("rgb.png"), &p2).unwrap();
    assert_eq!(decode_file(&p2).unwrap().data, expected_rgb);
}

/// A minimal 8-bit palette PNG written by hand (stored, uncompressed zlib stream): the `image`
/// crate does not write palette PNGs.
fn palette_png(w: u32, h: u32, palette: &[u8], idx: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0u8); // filter: none
        raw.extend((0..w).map(|x| idx(x, y)));
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &v in &raw {
        a = (a + v as u32) % 65521;
        b = (b + a) % 65521;
    }
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    z.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
    z.extend_from_slice(&raw);
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]); // depth 8, colour type 3 (palette)
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"PLTE", palette);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn grayscale_jpeg_becomes_rgb() {
    // Encode a grey image with libjpeg-turbo, decode: three equal channels, same size.
    let (w, h) = (16usize, 8usize);
    let grey: Vec<u8> = (0..w * h).map(|i| (i * 2) as u8).collect();
    let img = turbojpeg::Image {
        pixels: grey.as_slice(),
        width: w,
        pitch: w,
        height: h,
        format: turbojpeg::PixelFormat::GRAY,
    };
    let jpeg = turbojpeg::compress(img, 95, turbojpeg::Subsamp::Gray).unwrap();
    let rgb = decode_bytes(&jpeg).unwrap();
    assert_eq!((rgb.width, rgb.height), (w, h));
    assert!(rgb.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn corrupt_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(sample_dir().join("val/n01440764/n01440764_tench.JPEG")).unwrap();
    let truncated = dir.path().join("truncated.JPEG");
    std::fs::write(&truncated, &real[..100]).unwrap();
    let half = dir.path().join("half.jpg");
    std::fs::write(&half, &real[..real.len() / 2]).unwrap();
    let garbage = dir.path().join("garbage.jpg");
    std::fs::write(&garbage, b"this is not an image at all").unwrap();
    for p in [&truncated, &half, &garbage] {
        let e = decode_file(p).unwrap_err();
        assert!(matches!(e, Error::Format { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        println!("{msg}");
    }
    let e = decode_file(&dir.path().join("missing.jpg")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));

    // From the loader: the good images before it come out, then one Err naming it, then nothing.
    let good = sample_dir().join("val/n01440764/n01440764_tench.JPEG");
    let samples = vec![
        (good.clone(), 0),
        (good.clone(), 0),
        (truncated.clone(), 1),
        (good.clone(), 0),
    ];
    let mut loader = Loader::new(samples, EvalTransform::default(), 2, 2).unwrap();
    assert_eq!(loader.next().unwrap().unwrap().len(), 2);
    let e = loader.next().unwrap().unwrap_err();
    assert!(e.to_string().contains("truncated.JPEG"), "{e}");
    assert!(loader.next().is_none());
}

#[test]
fn image_folder_without_class_map() {
    let ds = ImageFolder::open(&sample_dir(), "val", None).unwrap();
    assert_eq!(ds.len(), 100);
    assert_eq!(ds.num_classes(), 100);
    let mut sorted = ds.classes.clone();
    sorted.sort();
    assert_eq!(ds.classes, sorted);
    for (i, (path, label)) in ds.samples.iter().enumerate() {
        assert_eq!(*label, i);
        assert_eq!(
            path.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap(),
            ds.classes[i]
        );
    }
    // The golden file list is this order too.
    assert_eq!(
        ds.samples.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        golden_files()
    );
}

#[test]
fn image_folder_with_tsv_class_map() {
    let tsv = common::shared().join("datasets/imagenet_classes.tsv");
    let ds = ImageFolder::open(&sample_dir(), "val", Some(&tsv)).unwrap();
    assert_eq!(ds.len(), 100);
    assert_eq!(ds.num_classes(), 1000);
    let text = std::fs::read_to_string(&tsv).unwrap();
    let index_of = |wnid: &str| -> usize {
        text.lines()
            .find(|l| l.split('\t').nth(1) == Some(wnid))
            .unwrap()
            .split('\t')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(ds.samples[0].1, 0); // n01440764 (tench)
    assert_eq!(ds.class_names[0], "tench");
    for (path, label) in &ds.samples {
        let wnid = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(*label, index_of(wnid), "{wnid}");
        assert_eq!(ds.classes[*label], wnid);
    }
    let labels: Vec<usize> = ds.samples.iter().map(|s| s.1).collect();
    assert!(labels.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn image_folder_with_name_per_line_map_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let val = dir.path().join("val");
    for (class, files) in [
        ("cat", vec!["b.PNG", "a.jpg", "notes.txt"]),
        ("dog", vec!["x.jpeg"]),
    ] {
        std::fs::create_dir_all(val.join(class)).unwrap();
        for f in files {
            std::fs::write(val.join(class).join(f), b"x").unwrap();
        }
    }
    let map = dir.path().join("classes.txt");
    std::fs::write(&map, "dog\ncat\nbird\n").unwrap();
    let ds = ImageFolder::open(dir.path(), "val", Some(&map)).unwrap();
    assert_eq!(ds.num_classes(), 3);
    assert_eq!(ds.classes, vec!["dog", "cat", "bird"]);
    let got: Vec<(String, usize)> = ds
        .samples
        .iter()
        .map(|(p, l)| (p.file_name().unwrap().to_str().unwrap().to_string(), *l))
        .collect();
    assert_eq!(
        got,
        vec![
            ("x.jpeg".into(), 0),
            ("a.jpg".into(), 1),
            ("b.PNG".into(), 1)
        ]
    );

    // Without a map: sorted folders.
    let ds = ImageFolder::open(dir.path(), "val", None).unwrap();
    assert_eq!(ds.classes, vec!["cat", "dog"]);
    assert_eq!(ds.samples[2].1, 1);

    // A folder missing from the map.
    std::fs::write(&map, "dog\n").unwrap();
    let e = ImageFolder::open(dir.path(), "val", Some(&map)).unwrap_err();
    assert!(e.to_string().contains("'cat'"), "{e}");

    // A missing data dir.
    let e = ImageFolder::open(dir.path(), "train", None).unwrap_err();
    assert!(e.to_string().contains("train"), "{e}");
}

#[test]
fn list_images_walks_folders() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    for f in ["z.jpg", "a/y.PNG", "a/b/x.JPEG", "a/readme.md"] {
        std::fs::write(dir.path().join(f), b"x").unwrap();
    }
    let got = list_images(&[dir.path().to_path_buf()]).unwrap();
    let rel: Vec<_> = got
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().to_path_buf())
        .collect();
    assert_eq!(
        rel,
        vec![
            PathBuf::from("a/b/x.JPEG"),
            PathBuf::from("a/y.PNG"),
            PathBuf::from("z.jpg")
        ]
    );
    let file = dir.path().join("a/readme.md");
    assert_eq!(
        list_images(std::slice::from_ref(&file)).unwrap(),
        vec![file]
    );
    let missing = dir.path().join("nope");
    let e = list_images(&[missing]).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

/// The OpenCV fixed-point formula evaluated independently in f64: Keys weights quantised to 1/2048,
/// horizontal then vertical, exact sum, round half up, clamp.
fn reference_resize(src: &[u8], w: usize, h: usize, ch: usize, dw: usize, dh: usize) -> Vec<u8> {
    fn keys(d: f64) -> f64 {
        let (a, d) = (-0.75, d.abs());
        if d <= 1.0 {
            (a + 2.0) * d.powi(3) - (a + 3.0) * d * d + 1.0
        } else if d < 2.0 {
            a * d.powi(3) - 5.0 * a * d * d + 8.0 * a * d - 4.0 * a
        } else {
            0.0
        }
    }
    let taps = |n: usize, dn: usize, o: usize| -> Vec<(usize, f64)> {
        let f = (o as f64 + 0.5) * (n as f64 / dn as f64) - 0.5;
        let s = f.floor();
        (-1..=2)
            .map(|k| {
                let i = (s as i64 + k).clamp(0, n as i64 - 1) as usize;
                let wq = (keys(f - (s + k as f64)) * 2048.0).round();
                (i, wq)
            })
            .collect()
    };
    let mut out = vec![0u8; dw * dh * ch];
    for oy in 0..dh {
        let ty = taps(h, dh, oy);
        for ox in 0..dw {
            let tx = taps(w, dw, ox);
            for c in 0..ch {
                let mut v = 0.0;
                for &(iy, wy) in &ty {
                    let row: f64 = tx
                        .iter()
                        .map(|&(ix, wx)| src[(iy * w + ix) * ch + c] as f64 * wx)
                        .sum();
                    v += row * wy;
                }
                out[(oy * dw + ox) * ch + c] =
                    (v / 4194304.0 + 0.5).floor().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

fn pseudo_random_image(w: usize, h: usize, ch: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..w * h * ch)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

#[test]
fn resize_identity_constant_and_known_values() {
    for interp in [Interpolation::Bicubic, Interpolation::Bilinear] {
        let img = pseudo_random_image(7, 5, 3, 1);
        assert_eq!(resize_u8(&img, 7, 5, 3, 7, 5, interp).unwrap(), img);
        let flat = vec![77u8; 9 * 6 * 3];
        for (dw, dh) in [(4, 3), (20, 13), (9, 2), (5, 11)] {
            let out = resize_u8(&flat, 9, 6, 3, dw, dh, interp).unwrap();
            assert!(out.iter().all(|&v| v == 77), "{interp} {dw}x{dh}");
        }
    }
    // 2x upscale of the row [0, 100] (hand computed):
    // bilinear: coordinates -0.25, 0.25, 0.75, 1.25 -> 0, 25, 75, 100;
    // bicubic: Keys weights (a=-0.75) with edge replication -> -5.3 (saturated 0), 22.66, 77.34, 110.55.
    let row = [0u8, 100];
    assert_eq!(
        resize_u8(&row, 2, 1, 1, 4, 1, Interpolation::Bilinear).unwrap(),
        vec![0, 25, 75, 100]
    );
    assert_eq!(
        resize_u8(&row, 2, 1, 1, 4, 1, Interpolation::Bicubic).unwrap(),
        vec![0, 23, 77, 111]
    );
    // Exact 2x downscale with bilinear is OpenCV's 2x2 box average, rounded half up.
    let sq = [10u8, 21, 30, 40];
    assert_eq!(
        resize_u8(&sq, 2, 2, 1, 1, 1, Interpolation::Bilinear).unwrap(),
        vec![25]
    );
}

#[test]
fn bicubic_matches_independent_reference() {
    for (i, &(w, h, dw, dh)) in [
        (13, 9, 29, 17),
        (40, 30, 17, 11),
        (31, 23, 31, 8),
        (6, 6, 100, 3),
    ]
    .iter()
    .enumerate()
    {
        let img = pseudo_random_image(w, h, 3, i as u64 + 7);
        let ours = resize_u8(&img, w, h, 3, dw, dh, Interpolation::Bicubic).unwrap();
        let want = reference_resize(&img, w, h, 3, dw, dh);
        let diffs: Vec<i32> = ours
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (a as i32 - b as i32).abs())
            .collect();
        let worst = diffs.iter().copied().max().unwrap();
        let differing = diffs.iter().filter(|&&d| d > 0).count();
        println!(
            "{w}x{h} -> {dw}x{dh}: max {worst}, {differing}/{} differ",
            diffs.len()
        );
        // Ours sums the vertical pass in f32 (as OpenCV's SIMD path): a result within 2^-8 or so
        // of a half may round the other way.
        assert!(worst <= 1, "{w}x{h} -> {dw}x{dh}: max {worst}");
        assert!(
            differing * 100 <= diffs.len(),
            "{w}x{h} -> {dw}x{dh}: {differing} differ"
        );
    }
}

#[test]
fn loader_batches_match_single_transforms() {
    let ds = ImageFolder::open(&sample_dir(), "val", None).unwrap();
    let t = EvalTransform::default();
    let loader = Loader::new(ds.samples.clone(), t.clone(), 32, 2).unwrap();
    assert_eq!(loader.num_batches(), 4);
    let mut sizes = Vec::new();
    let mut k = 0;
    for batch in loader {
        let batch = batch.unwrap();
        let n = batch.len();
        sizes.push(n);
        assert_eq!(batch.images.shape, vec![n, 3, 224, 224]);
        let per = 3 * 224 * 224;
        // Check a few images of each batch against the one-by-one transform.
        for j in [0, n / 2, n - 1] {
            let (path, label) = &ds.samples[k + j];
            assert_eq!(&batch.paths[j], path);
            assert_eq!(batch.labels[j], *label);
            let single = t.apply_path(path).unwrap();
            assert_eq!(
                &batch.images.data[j * per..(j + 1) * per],
                single.as_slice()
            );
        }
        k += n;
    }
    assert_eq!(sizes, vec![32, 32, 32, 4]);
}

#[test]
fn eval_transform_on_decoded_image_equals_path() {
    let path = &golden_files()[1];
    let t = EvalTransform::new(
        224,
        0.875,
        "bilinear".parse().unwrap(),
        senet::data::IMAGENET_MEAN,
        senet::data::IMAGENET_STD,
    )
    .unwrap();
    let img: RgbImage = decode_file(path).unwrap();
    assert_eq!(t.apply(&img).unwrap(), t.apply_path(path).unwrap());
}

#[test]
fn cmyk_jpeg_becomes_rgb_as_pil_does() {
    // libjpeg-turbo writes CMYK pixels as a YCCK JPEG (values stored as given, Adobe convention:
    // inverted ink). Decoding takes them as inverted like PIL: R = c * k / 255, etc.
    let (w, h) = (16usize, 16usize);
    let px = [255u8, 128, 0, 255, 200, 100, 50, 128];
    let mut cmyk = Vec::new();
    for i in 0..w * h {
        let p = if (i % w) < w / 2 { &px[..4] } else { &px[4..] };
        cmyk.extend_from_slice(p);
    }
    let img = turbojpeg::Image {
        pixels: cmyk.as_slice(),
        width: w,
        pitch: w * 4,
        height: h,
        format: turbojpeg::PixelFormat::CMYK,
    };
    let jpeg = turbojpeg::compress(img, 100, turbojpeg::Subsamp::None).unwrap();
    assert_eq!(
        turbojpeg::read_header(&jpeg).unwrap().colorspace,
        turbojpeg::Colorspace::YCCK
    );
    let rgb = decode_bytes(&jpeg).unwrap();
    assert_eq!((rgb.width, rgb.height), (w, h));
    let expect = |p: &[u8]| -> [f64; 3] {
        let k = p[3] as f64;
        [
            p[0] as f64 * k / 255.0,
            p[1] as f64 * k / 255.0,
            p[2] as f64 * k / 255.0,
        ]
    };
    for (x, want) in [(2, expect(&px[..4])), (13, expect(&px[4..]))] {
        let got = rgb.pixel(x, 8);
        for c in 0..3 {
            assert!(
                (got[c] as f64 - want[c]).abs() <= 3.0,
                "x={x} c={c}: {got:?} vs {want:?}"
            );
        }
    }
}
