//! `senet devices`, `validate`, `train` and `bench` with `--device ascend`, end to end through
//! the CANN emulator (`sys/emulator`), and the errors where CANN is absent.
mod common;

use common::cli::{ok, s};
use common::step::{depth, logit_bound, U_FP16, U_HF32};
use senet::model::Arch;
use std::path::{Path, PathBuf};

use std::process::Output;

/// Runs `senet` with `SENET_CANN_LIB` set to `cann` (the emulator, or a missing path).
fn senet(cann: &Path, args: &[&str]) -> Output {
    common::cli::command(args)
        .env(senet_cann_sys::EXPLICIT_PATH_VAR, cann)
        .env_remove("DEVICE_ID")
        .output()
        .expect("run senet")
}

fn emulator() -> PathBuf {
    common::emu::library().to_path_buf()
}

fn missing() -> PathBuf {
    std::env::temp_dir().join("senet-no-cann-here/libascendcl.so")
}

#[test]
fn devices_lists_the_emulated_npus_or_says_why_cann_is_absent() {
    let out = ok(&senet(&emulator(), &["devices", "--json"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ascend"]["available"], true, "{out}");
    assert_eq!(v["ascend"]["device_count"], 8);
    assert_eq!(v["ascend"]["soc_name"], "Ascend910B1");
    assert_eq!(v["ascend"]["first_gen_910"], false);

    let out = ok(&senet(&missing(), &["devices"]));
    assert!(out.contains("ascend: unavailable"), "{out}");
    assert!(out.contains("CANN not found"), "{out}");
    assert!(out.contains("senet-no-cann-here"), "{out}");
    assert!(out.contains("set_env.sh"), "{out}");
}

#[test]
fn device_ascend_without_cann_is_an_error_and_auto_falls_back_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("r18.ckpt");
    ok(&senet(
        &missing(),
        &[
            "init",
            "--model",
            "seresnet18",
            "--num_classes",
            "4",
            "-o",
            s(&ckpt),
        ],
    ));
    common::small_dataset(dir.path());
    let base = [
        "validate",
        "--model",
        "seresnet18",
        "--data_dir",
        s(dir.path()),
        "--ckpt_path",
        s(&ckpt),
        "--json",
    ];
    let out = senet(&missing(), &[&base[..], &["--device", "ascend"]].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CANN not found"), "{err}");
    assert!(err.contains("set_env.sh"), "{err}");

    // No recipe (MindCV 0.3 has no device_target): auto falls back to the CPU quietly; with
    // device_target Ascend it says why (tests/mindcv_cli.rs covers DEVICE_ID too).
    let out = senet(&missing(), &base);
    let json = ok(&out);
    assert!(json.contains("\"device\":\"cpu\""), "{json}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = senet(
        &missing(),
        &[&base[..], &["--device_target", "Ascend"]].concat(),
    );
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("note: device_target Ascend") && err.contains("CANN not found"),
        "{err}"
    );
}

#[test]
fn validate_on_the_emulated_npu_equals_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("r18.ckpt");
    ok(&senet(
        &emulator(),
        &[
            "init",
            "--model",
            "seresnet18",
            "--num_classes",
            "4",
            "--seed",
            "7",
            "-o",
            s(&ckpt),
        ],
    ));
    common::small_dataset(dir.path());
    // `senet` on the emulator, as the product `soc` under CANN `cann` (the first-generation 910
    // has aclnnConvolution only in CANN 8.0).
    let on = |soc: &str, cann: &str, args: &[&str]| {
        ok(&common::cli::command(args)
            .env(senet_cann_sys::EXPLICIT_PATH_VAR, emulator())
            .env_remove("DEVICE_ID")
            .env("SENET_EMU_SOC", soc)
            .env("SENET_EMU_CANN_VERSION", cann)
            .output()
            .expect("run senet"))
    };
    let a2 = ("Ascend910B1", "9.1");
    let first_gen = ("Ascend910A", "8.0");
    let validate = |(soc, cann): (&str, &str), device: &str| -> serde_json::Value {
        let out = on(
            soc,
            cann,
            &[
                "validate",
                "--model",
                "seresnet18",
                "--data_dir",
                s(dir.path()),
                "--ckpt_path",
                s(&ckpt),
                "--batch_size",
                "3",
                "--device",
                device,
                "--json",
            ],
        );
        serde_json::from_str(out.trim()).unwrap()
    };
    // The logits of the same images (`senet predict`, the same eval transform), for the bound
    // and its scale.
    let logits = |(soc, cann): (&str, &str), device: &str| {
        let file = dir.path().join(format!("logits-{soc}-{device}.npy"));
        on(
            soc,
            cann,
            &[
                "predict",
                "--model",
                "seresnet18",
                "--ckpt_path",
                s(&ckpt),
                "--device",
                device,
                "--save_logits",
                s(&file),
                s(&dir.path().join("val")),
            ],
        );
        senet::npy::read_f32(&file).unwrap().data
    };
    let cpu = validate(a2, "cpu");
    let zc = logits(a2, "cpu");
    // On the emulated A2 the convolutions run in HFLOAT32 (USE_HF32): 2 operand roundings of
    // 2^-12 per layer; on the first-generation 910 in FLOAT16: 3 roundings of 2^-11 (operands
    // and result); FLOAT accumulation on both (logit_bound says how these add up).
    for (product, roundings, u) in [(a2, 2.0, U_HF32), (first_gen, 3.0, U_FP16)] {
        let npu = validate(product, "ascend");
        assert_eq!(npu["device"], "ascend:0 (float32)");
        assert_eq!(npu["num_samples"], 4);
        assert_eq!(npu["top1"], cpu["top1"], "{product:?}");
        assert_eq!(npu["top5"], cpu["top5"], "{product:?}");
        let za = logits(product, "ascend");
        let bound = logit_bound(&zc, depth(Arch::SeResNet18), roundings, u);
        let max = zc
            .iter()
            .zip(&za)
            .fold(0.0f32, |m, (c, a)| m.max((c - a).abs()));
        assert!(
            max <= bound,
            "{product:?}: max |logit diff| {max} > {bound}"
        );
        // The loss is the mean of per-image cross entropies, whose gradient in the logits,
        // softmax(z) - target (a smoothed one-hot summing to 1), has L1 norm <= 2: each loss
        // moves by at most 2 max|Δz|, and so does their mean.
        let (a, b) = (npu["loss"].as_f64().unwrap(), cpu["loss"].as_f64().unwrap());
        let loss_bound = 2.0 * f64::from(bound);
        assert!(
            (a - b).abs() <= loss_bound,
            "{product:?}: {a} vs {b} (bound {loss_bound:e})"
        );
    }
}

#[test]
fn train_on_the_emulated_npu_in_amp_o2_writes_a_float32_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    common::small_dataset(dir.path());
    let out_dir = dir.path().join("out");
    let mut args = common::small_train_args(dir.path(), &out_dir);
    args.extend(["--max_steps", "2", "--device_id", "3"]);
    let out = senet(&emulator(), &args);
    let text = ok(&out);
    assert!(text.contains("ascend:3 (float16 AMP O2)"), "{text}");
    let ckpt = out_dir.join("seresnet18-1_2.ckpt");
    let ck = senet::checkpoint::read_checkpoint(&ckpt).unwrap();
    // AMP O2 keeps float32 master weights: every parameter is saved as float32.
    let w = ck.get("layer0.0.weight").expect("layer0.0.weight");
    assert_eq!(w.dtype, senet::tensor::DType::F32);
    assert_eq!(w.shape, [64, 3, 7, 7]);
    // The run stepped: Momentum accumulators were saved and are not all zero.
    let moments: Vec<_> = ck
        .tensors
        .iter()
        .filter(|(n, _)| n.starts_with("moments."))
        .collect();
    assert!(moments.len() > 50, "{} moments", moments.len());
    assert!(moments
        .iter()
        .any(|(_, t)| t.to_f32().unwrap().data.iter().any(|v| *v != 0.0)));
}

/// One-iteration `senet bench` of seresnet18 at 32x32 on the emulated NPU, with `extra` flags.
fn bench(extra: &[&str]) -> Output {
    let args = [
        "bench",
        "--model",
        "seresnet18",
        "--device",
        "ascend",
        "--image_size",
        "32",
        "--warmup",
        "0",
        "--iters",
        "1",
        "--json",
    ];
    senet(&emulator(), &[&args[..], extra].concat())
}

#[test]
fn bench_runs_on_the_emulated_npu() {
    let out = ok(&bench(&[]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["device"], "ascend:0 (float32)");
    assert!(v["images_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_float32_cube_switches_reach_the_npu_and_an_undocumented_mode_is_refused() {
    let out = ok(&bench(&["--matmul_allow_hf32", "True"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["device"],
        "ascend:0 (float32, conv_allow_hf32=true, matmul_allow_hf32=true)"
    );
    // KEEP_DTYPE for a FLOAT forward convolution is documented unsupported on A2 (the emulated
    // Ascend910B1): refused before any work, with the contract's lines.
    let out = bench(&["--conv_allow_hf32", "false"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "conv_allow_hf32 = false asks aclnnConvolution for cubeMathType KEEP_DTYPE (0)"
        ) && err.contains("Ascend910B1 (product line A2)")
            && err.contains("aclnnConvolution.md:436-439"),
        "{err}"
    );
    // Not a boolean: an error naming the flag and the spellings it takes (MindCV's str2bool,
    // so `True`/`False` as in a recipe are accepted).
    let out = bench(&["--conv_allow_hf32", "maybe"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--conv_allow_hf32") && err.contains("yes/true/1 or no/false/0"),
        "{out:?}"
    );
}
