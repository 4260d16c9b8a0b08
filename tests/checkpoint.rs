//! Checkpoint tests against files written by MindSpore itself (`shared/golden/`).
mod common;

use senet::checkpoint::{
    load_model, load_params, read_checkpoint, read_ckpt, read_safetensors, save_params,
    save_params_with, write_ckpt, write_safetensors, LoadOptions, SaveOptions,
};
use senet::model::{Arch, SeNet};
use senet::tensor::{DType, RawTensor};
use senet::Error;
use std::io::Read;
use std::path::{Path, PathBuf};

fn formula18() -> SeNet {
    SeNet::formula(Arch::SeResNet18, 1000).unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Asserts every parameter of `a` is bit-equal to `b`'s.
fn assert_params_bit_equal(a: &SeNet, b: &SeNet) {
    assert_eq!(a.params.len(), b.params.len());
    for ((sa, ta), (sb, tb)) in a.params.iter().zip(b.params.iter()) {
        assert_eq!(sa.name, sb.name);
        assert_eq!(ta.shape, tb.shape, "{}", sa.name);
        assert!(
            bits(&ta.data) == bits(&tb.data),
            "values of {} differ",
            sa.name
        );
    }
}

/// Every array of `mixed_expected.npz`: (name, descr, shape, raw little-endian bytes).
fn expected_mixed() -> Vec<(String, String, Vec<usize>, Vec<u8>)> {
    let mut npz = npyz::npz::NpzArchive::open(common::golden("mixed_expected.npz")).unwrap();
    let names: Vec<String> = npz.array_names().map(String::from).collect();
    let mut out = Vec::new();
    for name in names {
        let npy = npz.by_name(&name).unwrap().unwrap();
        let descr = npy.dtype().descr().trim_matches('\'').to_string();
        let shape = npy.shape().iter().map(|&d| d as usize).collect();
        let mut bytes = Vec::new();
        npy.into_inner().read_to_end(&mut bytes).unwrap();
        out.push((name, descr, shape, bytes));
    }
    out
}

fn check_mixed(path: &Path) {
    let ck = read_ckpt(path).unwrap();
    let expected = expected_mixed();
    assert_eq!(expected.len(), 8);
    assert_eq!(
        ck.tensors.len(),
        expected.len(),
        "{:?}",
        ck.names().collect::<Vec<_>>()
    );
    assert!(ck.skipped.is_empty());
    for (name, descr, shape, bytes) in &expected {
        let t = ck.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(&t.shape, shape, "{name}");
        let want_dtype = match (name.as_str(), descr.as_str()) {
            ("bf16_tensor", "<f4") => DType::BF16,
            (_, "<f4") => DType::F32,
            (_, "<f2") => DType::F16,
            (_, "<i4") => DType::I32,
            (_, "<i8") => DType::I64,
            (_, "|b1") => DType::Bool,
            other => panic!("unexpected npz dtype {other:?}"),
        };
        assert_eq!(t.dtype, want_dtype, "{name}");
        if t.dtype == DType::BF16 {
            // The npz gives bf16 as float32: compare the exact f32 bits after conversion.
            let got: Vec<u8> = t
                .to_f32()
                .unwrap()
                .data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            assert_eq!(&got, bytes, "{name}");
        } else {
            assert_eq!(&t.bytes, bytes, "{name}");
        }
    }
    // A few values spelled out, so the test does not only compare the file with itself.
    let gs = ck.get("global_step").unwrap();
    assert_eq!(gs.shape, vec![1]);
    assert_eq!(gs.bytes, 1234i32.to_le_bytes().to_vec());
    let lr = ck.get("learning_rate").unwrap().to_f32().unwrap();
    assert_eq!(lr.data.len(), 10);
    assert_eq!(lr.data[0], 0.075);
    assert_eq!(lr.data[9], 0.0);
    assert_eq!(ck.get("bool_tensor").unwrap().bytes, vec![1, 0, 1]);
    let i64t = ck.get("int64_tensor").unwrap();
    assert_eq!(
        i64t.to_f32().unwrap().data,
        vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    );
    let w = ck.get("layer1.0.conv1.weight").unwrap().to_f32().unwrap();
    let m = ck
        .get("moments.layer1.0.conv1.weight")
        .unwrap()
        .to_f32()
        .unwrap();
    assert_eq!(w.shape, vec![64, 64, 3, 3]);
    let f = formula18();
    let fw = f.params.get("layer1.0.conv1.weight").unwrap();
    assert_eq!(bits(&w.data), bits(&fw.data));
    assert!(w.data.iter().zip(&m.data).all(|(a, b)| a * 0.5 == *b));
}

#[test]
fn mixed_ckpt_reads_exactly_as_expected() {
    check_mixed(&common::golden("mixed.ckpt"));
    assert_eq!(read_ckpt(&common::golden("mixed.ckpt")).unwrap().crc, None);
}

#[test]
fn mixed_crc_ckpt_reads_exactly_as_expected_and_verifies_crc() {
    check_mixed(&common::golden("mixed_crc.ckpt"));
    assert_eq!(
        read_ckpt(&common::golden("mixed_crc.ckpt")).unwrap().crc,
        Some(0xf3a0_3774)
    );
}

#[test]
fn formula_ckpt_loads_to_formula_values() {
    let mut net = SeNet::new(Arch::SeResNet18, 1000, 0).unwrap();
    let report = load_model(
        &mut net,
        &common::golden("seresnet18_formula.ckpt"),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(report.loaded, net.params.len());
    assert!(report.ignored.is_empty());
    assert!(report.converted.is_empty());
    assert!(!report.skipped_any());
    assert_params_bit_equal(&net, &formula18());
    let w = net.params.get("layer0.0.weight").unwrap();
    // README's check values (printed to 7-8 significant digits).
    for (got, want) in w
        .data
        .iter()
        .zip([-0.02547394f32, -0.09771207, 0.08338909, 0.09845293])
    {
        assert!((got - want).abs() < 1e-7, "{got} vs {want}");
    }
}

#[test]
fn saved_ckpt_is_byte_identical_to_mindspore() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s18.ckpt");
    save_params(&formula18().params, &path).unwrap();
    let ours = std::fs::read(&path).unwrap();
    let theirs = std::fs::read(common::golden("seresnet18_formula.ckpt")).unwrap();
    assert_eq!(ours.len(), theirs.len());
    assert!(
        ours == theirs,
        "first difference at byte {:?}",
        ours.iter().zip(&theirs).position(|(a, b)| a != b)
    );
    assert_no_temporaries(path.parent().unwrap());

    // With the CRC record: MindSpore's body + b"crc_num" + CRC-32 as 10 big-endian bytes.
    let crc_path = dir.path().join("s18_crc.ckpt");
    save_params_with(
        &formula18().params,
        &crc_path,
        &SaveOptions { crc_check: true },
    )
    .unwrap();
    let with_crc = std::fs::read(&crc_path).unwrap();
    assert_eq!(&with_crc[..theirs.len()], &theirs[..]);
    assert_eq!(&with_crc[theirs.len()..theirs.len() + 7], b"crc_num");
    let crc = crc32fast::hash(&theirs) as u128;
    assert_eq!(&with_crc[theirs.len() + 7..], &crc.to_be_bytes()[6..]);
}

#[test]
fn rewriting_mixed_gives_mindspores_bytes_with_and_without_crc() {
    let dir = tempfile::tempdir().unwrap();
    let ck = read_ckpt(&common::golden("mixed.ckpt")).unwrap();
    let entries = || ck.tensors.iter().map(|(n, t)| (n.as_str(), t));
    let plain = dir.path().join("m.ckpt");
    write_ckpt(&plain, entries(), false).unwrap();
    assert!(std::fs::read(&plain).unwrap() == std::fs::read(common::golden("mixed.ckpt")).unwrap());
    let crc = dir.path().join("m_crc.ckpt");
    write_ckpt(&crc, entries(), true).unwrap();
    assert!(
        std::fs::read(&crc).unwrap() == std::fs::read(common::golden("mixed_crc.ckpt")).unwrap()
    );
}

fn raw(dtype: DType, shape: &[usize], bytes: Vec<u8>) -> RawTensor {
    RawTensor {
        dtype,
        shape: shape.to_vec(),
        bytes,
    }
}

/// Entries of every kind: f32, f16, bf16, f64, ints, bool, scalars, an empty tensor.
fn assorted() -> Vec<(String, RawTensor)> {
    let f16: Vec<u8> = [1.5f32, -2.25, 65504.0]
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = [3.0f32, -0.5, 1e30, 7.0]
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    vec![
        (
            "w".into(),
            raw(
                DType::F32,
                &[2, 3],
                (0..6)
                    .flat_map(|i| (i as f32 * 0.25).to_le_bytes())
                    .collect(),
            ),
        ),
        ("h".into(), raw(DType::F16, &[3], f16)),
        ("b".into(), raw(DType::BF16, &[2, 2], bf16)),
        (
            "d".into(),
            raw(
                DType::F64,
                &[2],
                [1e-300f64, -3.5]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
        ),
        ("i8".into(), raw(DType::I8, &[4], vec![0x80, 0xff, 0, 127])),
        ("u16".into(), raw(DType::U16, &[2], vec![1, 2, 3, 4])),
        (
            "i64".into(),
            raw(
                DType::I64,
                &[1, 2],
                [-5i64, i64::MAX]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
        ),
        ("flag".into(), raw(DType::Bool, &[3], vec![1, 0, 1])),
        (
            "global_step".into(),
            raw(DType::I32, &[], 42i32.to_le_bytes().to_vec()),
        ),
        (
            "momentum".into(),
            raw(DType::F32, &[], 0.9f32.to_le_bytes().to_vec()),
        ),
        ("empty".into(), raw(DType::F32, &[0], vec![])),
    ]
}

#[test]
fn ckpt_round_trip_of_every_dtype_with_and_without_crc() {
    let dir = tempfile::tempdir().unwrap();
    let entries = assorted();
    for crc in [false, true] {
        let path = dir.path().join(format!("a{crc}.ckpt"));
        write_ckpt(&path, entries.iter().map(|(n, t)| (n.as_str(), t)), crc).unwrap();
        let back = read_ckpt(&path).unwrap();
        assert_eq!(back.tensors, entries);
        assert!(back.skipped.is_empty());
        assert_eq!(back.crc.is_some(), crc);
    }
    // A scalar is written as MindSpore does: dims [0] (key 0x08, value 0), then "Int32".
    let bytes = std::fs::read(dir.path().join("afalse.ckpt")).unwrap();
    let needle = [
        b"global_step".as_slice(),
        &[0x12, 0x0f, 0x08, 0x00, 0x12, 0x05],
        b"Int32",
    ]
    .concat();
    assert!(bytes.windows(needle.len()).any(|w| w == needle.as_slice()));
}

#[test]
fn safetensors_round_trip_and_same_load_as_ckpt() {
    let dir = tempfile::tempdir().unwrap();
    let entries = assorted();
    let path = dir.path().join("a.safetensors");
    write_safetensors(&path, entries.iter().map(|(n, t)| (n.as_str(), t))).unwrap();
    let back = read_safetensors(&path).unwrap();
    // In the order written (recorded in the metadata), not the file's layout order.
    assert_eq!(back.tensors, entries);
    assert_eq!(back.metadata.get("format").map(String::as_str), Some("ms"));
    assert_no_temporaries(path.parent().unwrap());

    // The model saved as safetensors loads to the same values as the MindSpore .ckpt.
    let st = dir.path().join("s18.safetensors");
    save_params(&formula18().params, &st).unwrap();
    let mut a = SeNet::new(Arch::SeResNet18, 1000, 1).unwrap();
    let mut b = SeNet::new(Arch::SeResNet18, 1000, 2).unwrap();
    let ra = load_model(&mut a, &st, &LoadOptions::default()).unwrap();
    let rb = load_model(
        &mut b,
        &common::golden("seresnet18_formula.ckpt"),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(ra, rb);
    assert_params_bit_equal(&a, &b);
    assert_params_bit_equal(&a, &formula18());
    // and reading both files gives the same named tensors, in MindSpore's order
    let ck = read_checkpoint(&common::golden("seresnet18_formula.ckpt")).unwrap();
    let sf = read_checkpoint(&st).unwrap();
    assert_eq!(ck.tensors, sf.tensors);
}

#[test]
fn half_precision_checkpoint_converts_to_f32() {
    let dir = tempfile::tempdir().unwrap();
    let f = formula18();
    let raws: Vec<(String, RawTensor)> = f
        .params
        .iter()
        .map(|(s, t)| {
            let b: Vec<u8> = t
                .data
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect();
            (s.name.clone(), raw(DType::BF16, &t.shape, b))
        })
        .collect();
    let path = dir.path().join("bf16.ckpt");
    write_ckpt(&path, raws.iter().map(|(n, t)| (n.as_str(), t)), false).unwrap();
    let mut net = SeNet::new(Arch::SeResNet18, 1000, 0).unwrap();
    let rep = load_model(&mut net, &path, &LoadOptions::default()).unwrap();
    assert_eq!(rep.converted.len(), f.params.len());
    assert!(rep.converted.iter().all(|(_, d)| *d == DType::BF16));
    for ((s, got), (_, want)) in net.params.iter().zip(f.params.iter()) {
        let exp: Vec<f32> = want
            .data
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_f32())
            .collect();
        assert!(bits(&got.data) == bits(&exp), "{}", s.name);
    }
}

/// Formula params of seresnet18 as raw f32, edited by `edit`, written to a temporary `.ckpt`.
fn custom_ckpt(
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut Vec<(String, RawTensor)>),
) -> PathBuf {
    let f = formula18();
    let mut entries: Vec<(String, RawTensor)> = f
        .params
        .iter()
        .map(|(s, t)| (s.name.clone(), RawTensor::from_f32(t)))
        .collect();
    edit(&mut entries);
    let path = dir.join(name);
    write_ckpt(&path, entries.iter().map(|(n, t)| (n.as_str(), t)), false).unwrap();
    path
}

#[test]
fn training_state_is_ignored_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = custom_ckpt(dir.path(), "train.ckpt", |e| {
        let moments: Vec<(String, RawTensor)> = e
            .iter()
            .map(|(n, t)| (format!("moments.{n}"), t.clone()))
            .collect();
        e.extend(moments);
        e.push((
            "global_step".into(),
            raw(DType::I32, &[1], 7i32.to_le_bytes().to_vec()),
        ));
        e.push(("learning_rate".into(), raw(DType::F32, &[2], vec![0; 8])));
        e.push((
            "momentum".into(),
            raw(DType::F32, &[], 0.9f32.to_le_bytes().to_vec()),
        ));
        e.push((
            "scale_sense".into(),
            raw(DType::F32, &[], 1024f32.to_le_bytes().to_vec()),
        ));
        e.push((
            "adam_m.classifier.bias".into(),
            raw(DType::F32, &[1], vec![0; 4]),
        ));
    });
    let mut net = SeNet::new(Arch::SeResNet18, 1000, 0).unwrap();
    let n = net.params.len();
    let rep = load_model(&mut net, &path, &LoadOptions::default()).unwrap();
    assert_eq!(rep.loaded, n);
    assert_eq!(rep.ignored.len(), n + 5);
    assert!(rep.ignored.contains(&"global_step".to_string()));
    assert!(rep.ignored.contains(&"moments.layer0.0.weight".to_string()));
    assert_params_bit_equal(&net, &formula18());
}

#[test]
fn ema_weights_replace_the_plain_ones_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = custom_ckpt(dir.path(), "ema.ckpt", |e| {
        let ema: Vec<(String, RawTensor)> = e
            .iter()
            .map(|(n, t)| {
                let mut v = t.to_f32().unwrap();
                v.data.iter_mut().for_each(|x| *x *= 0.5);
                (format!("ema.{n}"), RawTensor::from_f32(&v))
            })
            .collect();
        e.extend(ema);
    });
    let f = formula18();
    let n = f.params.len();
    // Without `ema`: the plain weights, the ema.* entries ignored.
    let mut plain = SeNet::new(Arch::SeResNet18, 1000, 0).unwrap();
    let rep = load_model(&mut plain, &path, &LoadOptions::default()).unwrap();
    assert_eq!((rep.loaded, rep.ignored.len()), (n, n));
    assert_params_bit_equal(&plain, &f);
    // With `ema`: ema.<name> -> <name>, the plain weights ignored.
    let mut ema = SeNet::new(Arch::SeResNet18, 1000, 0).unwrap();
    let opts = LoadOptions {
        ema: true,
        ..Default::default()
    };
    let rep = load_model(&mut ema, &path, &opts).unwrap();
    assert_eq!((rep.loaded, rep.ignored.len()), (n, n));
    for ((s, got), (_, want)) in ema.params.iter().zip(f.params.iter()) {
        let half: Vec<f32> = want.data.iter().map(|x| x * 0.5).collect();
        assert!(bits(&got.data) == bits(&half), "{}", s.name);
    }
    // Asking for EMA weights from a checkpoint without any is an error that says so.
    let mut net = SeNet::new(Arch::SeResNet18, 1000, 0).unwrap();
    let err = load_model(&mut net, &common::golden("seresnet18_formula.ckpt"), &opts).unwrap_err();
    assert!(err.to_string().contains("no 'ema.*' entries"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn nonexistent_path_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.ckpt");
    let mut net = SeNet::new(Arch::SeResNet18, 1000, 0).unwrap();
    let err = load_model(&mut net, &path, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.ckpt"), "{err}");
    let err = read_safetensors(&dir.path().join("nope.safetensors")).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }) && err.to_string().contains("nope.safetensors"),
        "{err}"
    );
}

#[test]
fn unknown_extension_is_an_error_naming_the_path() {
    let mut net = SeNet::new(Arch::SeResNet18, 1000, 0).unwrap();
    let err = load_model(&mut net, Path::new("weights.pth"), &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::Format { .. }) && err.to_string().contains("weights.pth"),
        "{err}"
    );
    let err = save_params(&net.params, Path::new("/tmp/weights.bin")).unwrap_err();
    assert!(err.to_string().contains("weights.bin"), "{err}");
}

#[test]
fn truncated_ckpt_names_file_tensor_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let data = std::fs::read(common::golden("seresnet18_formula.ckpt")).unwrap();
    // Cut inside the first tensor's content: 'layer0.0.weight' declares 64*3*7*7*4 = 37632 bytes.
    let path = dir.path().join("cut.ckpt");
    std::fs::write(&path, &data[..1000]).unwrap();
    let err = read_ckpt(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Format { .. }), "{err:?}");
    assert!(
        msg.contains("cut.ckpt") && msg.contains("truncated"),
        "{msg}"
    );
    assert!(
        msg.contains("'layer0.0.weight'") && msg.contains("declares 37632 bytes"),
        "{msg}"
    );
    // Cut at half the file: still a format error through the loader.
    std::fs::write(&path, &data[..data.len() / 2]).unwrap();
    let mut net = SeNet::new(Arch::SeResNet18, 1000, 0).unwrap();
    let before = net.params.get("layer0.0.weight").unwrap().clone();
    let err = load_model(&mut net, &path, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!(
        net.params.get("layer0.0.weight").unwrap(),
        &before,
        "failed load modified the model"
    );
    // Cut inside a safetensors file.
    let st = dir.path().join("cut.safetensors");
    save_params(&formula18().params, &st).unwrap();
    let b = std::fs::read(&st).unwrap();
    std::fs::write(&st, &b[..b.len() - 100]).unwrap();
    let err = read_safetensors(&st).unwrap_err();
    assert!(
        matches!(err, Error::Format { .. }) && err.to_string().contains("cut.safetensors"),
        "{err}"
    );
}

#[test]
fn crc_mismatch_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = std::fs::read(common::golden("mixed_crc.ckpt")).unwrap();
    let n = data.len();
    data[n / 2] ^= 0x01; // inside layer1.0.conv1.weight's content
    let path = dir.path().join("bad_crc.ckpt");
    std::fs::write(&path, &data).unwrap();
    let err = read_ckpt(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("bad_crc.ckpt") && msg.contains("CRC mismatch"),
        "{msg}"
    );
}

#[test]
fn misshaped_classifier_is_a_mismatch_listing_both_tensors() {
    let mut net = SeNet::new(Arch::SeResNet18, 10, 0).unwrap();
    let err = load_model(
        &mut net,
        &common::golden("seresnet18_formula.ckpt"),
        &LoadOptions::default(),
    )
    .unwrap_err();
    let Error::Mismatch {
        path,
        model,
        details,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(path.ends_with("seresnet18_formula.ckpt"));
    assert!(model.contains("seresnet18"), "{model}");
    let lines: Vec<&str> = details.lines().collect();
    assert_eq!(
        lines,
        vec![
            "mis-shaped parameter 'classifier.weight': expected [10, 512], found [1000, 512]",
            "mis-shaped parameter 'classifier.bias': expected [10], found [1000]",
        ]
    );
}

/// The checkpoint of another variant: a first line naming the variant its entries fit, the
/// first 10 problems, and a count of the rest (not ~280 lines).
#[test]
fn another_variants_checkpoint_names_that_variant_and_is_cut_short() {
    let mut net = SeNet::new(Arch::SeResNet50, 1000, 0).unwrap();
    let err = load_model(
        &mut net,
        &common::golden("seresnet18_formula.ckpt"),
        &LoadOptions::default(),
    )
    .unwrap_err();
    let Error::Mismatch { details, .. } = &err else {
        panic!("{err:?}")
    };
    let lines: Vec<&str> = details.lines().collect();
    assert_eq!(lines.len(), 12, "{details}");
    assert_eq!(
        lines[0],
        "the checkpoint's entries are exactly the parameters of seresnet18 (1000 classes): pass \
         --model seresnet18, or give the checkpoint of this model"
    );
    // Every problem of the load, counted by kind from the two variants' parameter lists (same
    // names where they share one, mostly other shapes).
    let specs50 = senet::model::param_specs(Arch::SeResNet50, 1000);
    let specs18 = senet::model::param_specs(Arch::SeResNet18, 1000);
    let names18: std::collections::HashMap<&str, &Vec<usize>> = specs18
        .iter()
        .map(|s| (s.name.as_str(), &s.shape))
        .collect();
    let names50: std::collections::HashSet<&str> =
        specs50.iter().map(|s| s.name.as_str()).collect();
    let missing = specs50
        .iter()
        .filter(|s| !names18.contains_key(s.name.as_str()))
        .count();
    let misshaped = specs50
        .iter()
        .filter(|s| {
            names18
                .get(s.name.as_str())
                .is_some_and(|sh| **sh != s.shape)
        })
        .count();
    let unexpected = specs18
        .iter()
        .filter(|s| !names50.contains(s.name.as_str()))
        .count();
    let total = missing + misshaped + unexpected;
    assert_eq!(
        lines[11],
        format!(
            "... and {} more ({missing} missing, {misshaped} mis-shaped or not float, \
             {unexpected} unexpected in all)",
            total - 10
        )
    );
}

#[test]
fn missing_extra_and_misshaped_are_all_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = custom_ckpt(dir.path(), "bad.ckpt", |e| {
        e.retain(|(n, _)| n != "layer2.0.bn1.moving_variance" && n != "layer0.1.gamma");
        e.push(("foo.bar".into(), raw(DType::F32, &[3], vec![0; 12])));
        let t = e
            .iter_mut()
            .find(|(n, _)| n == "layer3.1.se_module.conv_reduce.weight")
            .unwrap();
        t.1.shape = vec![256, 16];
        let t = e
            .iter_mut()
            .find(|(n, _)| n == "layer4.0.bn2.beta")
            .unwrap();
        t.1 = raw(DType::I32, &[512], vec![0; 2048]);
    });
    let mut net = SeNet::new(Arch::SeResNet18, 1000, 0).unwrap();
    let err = load_model(&mut net, &path, &LoadOptions::default()).unwrap_err();
    let Error::Mismatch { details, .. } = &err else {
        panic!("{err:?}")
    };
    let lines: Vec<&str> = details.lines().collect();
    assert_eq!(lines.len(), 5, "{details}");
    for want in [
        "missing parameter 'layer0.1.gamma': expected shape [64]",
        "missing parameter 'layer2.0.bn1.moving_variance': expected shape [128]",
        "mis-shaped parameter 'layer3.1.se_module.conv_reduce.weight': expected [16, 256], found [256, 16]",
        "parameter 'layer4.0.bn2.beta': expected a float tensor of shape [512], found Int32 [512]",
        "unexpected entry 'foo.bar': Float32 [3]",
    ] {
        assert!(lines.contains(&want), "no line {want:?} in\n{details}");
    }
    assert!(err.to_string().contains("bad.ckpt"));
}

#[test]
fn partial_load_skips_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let path = custom_ckpt(dir.path(), "p.ckpt", |e| {
        e.retain(|(n, _)| n != "layer0.1.beta");
        e.push(("extra.thing".into(), raw(DType::F32, &[1], vec![0; 4])));
    });
    let init = SeNet::new(Arch::SeResNet18, 10, 0).unwrap();
    let mut net = init.clone();
    let opts = LoadOptions {
        partial: true,
        ..Default::default()
    };
    let rep = load_params(&mut net.params, &path, &opts).unwrap();
    assert_eq!(rep.loaded, net.params.len() - 3);
    assert_eq!(rep.missing, vec![("layer0.1.beta".to_string(), vec![64])]);
    let names: Vec<&str> = rep.misfits.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["classifier.weight", "classifier.bias"]);
    assert_eq!(rep.misfits[0].expected, vec![10, 512]);
    assert_eq!(rep.misfits[0].found, vec![1000, 512]);
    assert_eq!(rep.unexpected.len(), 1);
    assert_eq!(rep.unexpected[0].0, "extra.thing");
    assert_eq!(rep.skipped_lines().len(), 4);
    assert!(rep
        .to_string()
        .contains("skipped mis-shaped parameter 'classifier.weight'"));
    let f = formula18();
    for (s, t) in net.params.iter() {
        let kept =
            ["layer0.1.beta", "classifier.weight", "classifier.bias"].contains(&s.name.as_str());
        let want = if kept {
            init.params.get(&s.name).unwrap()
        } else {
            f.params.get(&s.name).unwrap()
        };
        assert!(bits(&t.data) == bits(&want.data), "{}", s.name);
    }
}

#[test]
fn partial_load_of_an_unrelated_file_still_fails() {
    let mut net = SeNet::new(Arch::SeResNet18, 1000, 0).unwrap();
    let opts = LoadOptions {
        partial: true,
        ..Default::default()
    };
    // mixed.ckpt holds one seresnet18 weight: that loads, the rest is reported.
    let rep = load_model(&mut net, &common::golden("mixed.ckpt"), &opts).unwrap();
    assert_eq!(rep.loaded, 1);
    assert_eq!(
        rep.ignored,
        vec![
            "moments.layer1.0.conv1.weight",
            "global_step",
            "learning_rate"
        ]
    );
    assert_eq!(rep.missing.len(), net.params.len() - 1);
    let unexpected: Vec<&str> = rep.unexpected.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        unexpected,
        vec!["half_tensor", "bf16_tensor", "int64_tensor", "bool_tensor"]
    );
    // A file with no model parameter at all is an error even with `partial`.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.ckpt");
    let t = raw(DType::F32, &[2], vec![0; 8]);
    write_ckpt(&path, [("encoder.w", &t)], false).unwrap();
    let err = load_model(&mut net, &path, &opts).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no checkpoint entry matches") && msg.contains("'encoder.w'"),
        "{msg}"
    );
}

/// No temporary file of an atomic write is left in `dir`.
fn assert_no_temporaries(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "left behind: {name}");
    }
}
