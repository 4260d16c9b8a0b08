//! The Ascend backend on the CANN emulator (`sys/emulator`, `libsenet_cann_emu.so`) (its ops,
//! one by one, are in `ascend_ops.rs`): eval logits of the five variants and one training step against
//! MindCV's golden files (fp32), the O2 fp16 mode against the same files within fp16's
//! precision, failure injection and resource accounting, and the first-generation 910 path.
//!
//! One process: senet's loader reads `SENET_CANN_LIB` once, so every test calls
//! `common::emu::install()` (through [`lock`]) before its first backend call. The tests hold a
//! process-wide lock while they run, because the emulator's live-resource counters are global.
mod common;

use common::step::{
    depth, golden_array, logit_bound, rel_l2, sample, HF32_STEP_TOL, O2_STEP_TOL, U_FP16, U_HF32,
};

use std::process::Command;

use senet::backend::ascend::{self, AscendBackend, CubeMath, Precision};
use senet::backend::cpu::CpuBackend;
use senet::backend::{Backend, MaxPool2dParams, Shape4};
use senet::config::WeightDecayFilter;
use senet::model::{formula_input, Arch, InferenceNet, Params, SeNet, StemPool};
use senet::optim::{decays, TrainConfig, TrainNet};
use senet::Error;

use common::emu::{fp32, lock, max_abs, values};

fn golden_logits(arch: Arch) -> senet::Tensor {
    senet::npy::read_f32(&common::golden(&format!("{}_eval_logits.npy", arch.name()))).unwrap()
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

#[test]
fn devices_reports_the_emulated_npu() {
    let _g = lock();
    let r = ascend::devices().unwrap();
    assert!(r.device_count >= 1, "{r:?}");
    assert_eq!(r.soc_name, "Ascend910B1");
    assert!(!r.first_gen_910);
    assert!(
        r.libraries.iter().all(|p| p == common::emu::library()),
        "{r:?}"
    );
    let be = fp32();
    assert_eq!(be.soc_name(), "Ascend910B1");
    let err = AscendBackend::new(r.device_count as i32, Precision::Fp32).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
}

// ---- eval logits against MindCV -----------------------------------------------------------

#[test]
fn fp32_eval_logits_match_mindcv_for_all_variants() {
    let _g = lock();
    let x = formula_input("input", &[2, 3, 224, 224]);
    for arch in Arch::ALL {
        let net = SeNet::formula(arch, 1000).unwrap();
        let mut inf = InferenceNet::new(&net, fp32()).unwrap();
        let logits = inf.forward(&x).unwrap();
        let golden = golden_logits(arch);
        assert_eq!(logits.shape, golden.shape);
        let max = max_abs(&logits.data, &golden.data);
        // The emulated SoC is an A2: FLOAT convolutions run as HFLOAT32 (see logit_bound).
        let bound = logit_bound(&golden.data, depth(arch), 2.0, U_HF32);
        eprintln!(
            "{} fp32: max |ascend - MindCV| = {max:.3e} (bound {bound:.3e})",
            arch.name()
        );
        assert!(
            max <= bound,
            "{}: max abs diff {max} > {bound}",
            arch.name()
        );
        for (ours, gold) in logits.data.chunks(1000).zip(golden.data.chunks(1000)) {
            assert_eq!(argmax(ours), argmax(gold), "{}", arch.name());
        }
    }
}

#[test]
fn fp32_timm_networks_run_timms_stem_pool() {
    // timm's stem pools go to aclnn's max pool as they are (resnet.py: padding 1; senet.py:
    // ceil mode): on the 226x228 input of tests/data/timm (stem output 113 x 114, where both
    // differ from MindCV's), senet's network on the emulated NPU gives timm's logits. The
    // formula weights under MindCV's names are the tensors timm held (tests/timm.rs checks
    // them against timm's state_dict()).
    let _g = lock();
    let x = formula_input("timm_226x228", &[1, 3, 226, 228]);
    for (stem, arch, pool) in [
        ("seresnet18", Arch::SeResNet18, StemPool::Pad1),
        (
            "legacy_seresnext26_32x4d",
            Arch::SeResNeXt26_32x4d,
            StemPool::CeilMode,
        ),
    ] {
        let mut net = SeNet::formula(arch, 1000).unwrap();
        net.stem_pool = pool;
        let logits = InferenceNet::new(&net, fp32())
            .unwrap()
            .forward(&x)
            .unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/data/timm/{stem}_226x228_logits.npy"));
        let golden = senet::npy::read_f32(&path).unwrap();
        assert_eq!(logits.shape, golden.shape);
        let max = max_abs(&logits.data, &golden.data);
        let scale = golden.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!(
            "{stem} fp32 on the NPU: max |ascend - timm| / max |timm| = {:.3e}",
            max / scale
        );
        // The bound of tests/timm.rs (f32 sums in other orders; derived there).
        assert!(max <= 1e-3 * scale, "{stem}: {max}");
    }
}

#[test]
fn o2_eval_keeps_top1_within_an_fp16_bound() {
    let _g = lock();
    let x = formula_input("input", &[2, 3, 224, 224]);
    for arch in Arch::ALL {
        let net = SeNet::formula(arch, 1000).unwrap();
        let be = AscendBackend::new(0, Precision::Fp16).unwrap();
        let mut inf = InferenceNet::new(&net, be).unwrap();
        let logits = inf.forward(&x).unwrap();
        let golden = golden_logits(arch);
        let max = max_abs(&logits.data, &golden.data);
        let depth = depth(arch);
        let bound = logit_bound(&golden.data, depth, 2.0, U_FP16);
        eprintln!(
            "{} O2: max |ascend fp16 - MindCV| = {max:.3e} (bound {bound:.3e})",
            arch.name()
        );
        for (row, (ours, gold)) in logits
            .data
            .chunks(1000)
            .zip(golden.data.chunks(1000))
            .enumerate()
        {
            assert_eq!(argmax(ours), argmax(gold), "{} row {row}", arch.name());
        }
        assert!(max <= bound, "{}: {max} > {bound}", arch.name());
    }
}

// ---- one training step against MindSpore --------------------------------------------------

/// One training step of seresnet18 (10 classes) as `tests/train_step.rs` runs it on the CPU;
/// returns (loss error, worst gradient rel. L2, worst after-step rel. L2) against the golden
/// files, asserting each against the given tolerances; `exempt` lists tensors whose gradient
/// and after-step value are held to looser relative L2 tolerances (with the reason at the call).
/// `SENET_DEBUG_GRADS=1` prints every gradient's error.
fn train_step_against_golden(
    precision: Precision,
    loss_scale: f32,
    tol: (f64, f64, f64),
    exempt: &[(&str, f64, f64)],
) -> (f64, f64, f64) {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::golden("meta.json")).unwrap())
            .unwrap();
    let train = &meta["train"];
    let labels: Vec<usize> = train["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let net = SeNet::formula(Arch::SeResNet18, 10).unwrap();
    let x = formula_input("train_input", &[4, 3, 64, 64]);
    let cfg = TrainConfig {
        loss_scale,
        ..TrainConfig::mindcv_senet()
    };
    let be = AscendBackend::new(0, precision).unwrap();
    let mut tn =
        TrainNet::new(&net, be, cfg, |n| decays(n, WeightDecayFilter::Auto, None)).unwrap();
    let stats = tn.forward_backward(&x, &labels).unwrap();
    let golden_loss = train["loss_value"].as_f64().unwrap();
    let loss_err = ((stats.loss - golden_loss) / golden_loss).abs();
    eprintln!(
        "{precision:?}: loss {} vs MindSpore {golden_loss}",
        stats.loss
    );
    assert!(loss_err <= tol.0, "loss relative error {loss_err}");
    let mut archive =
        npyz::npz::NpzArchive::open(common::golden("seresnet18_train_step.npz")).unwrap();
    let grad_l2 = train["grad_l2"].as_object().unwrap();
    let mut worst_grad = (0.0f64, String::new());
    let mut bad = Vec::new();
    for spec in net.params.specs().iter().filter(|s| s.kind.trainable()) {
        let mut g = tn.gradient(&spec.name).unwrap();
        g.data.iter_mut().for_each(|v| *v /= loss_scale);
        let golden = golden_array(&mut archive, &format!("grad/{}", spec.name));
        let err = rel_l2(&sample(&g.data), &golden);
        let norm = g
            .data
            .iter()
            .map(|v| (*v as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let want = grad_l2[&spec.name].as_f64().unwrap();
        if ((norm - want) / want).abs() > tol.1 {
            bad.push(format!("{}: |grad| {norm} vs {want}", spec.name));
        }
        if err > worst_grad.0 {
            worst_grad = (err, spec.name.clone());
        }
        let limit = exempt
            .iter()
            .find(|(name, _, _)| *name == spec.name)
            .map_or(tol.1, |&(_, t, _)| t);
        if std::env::var_os("SENET_DEBUG_GRADS").is_some() {
            eprintln!("{}: {err:.3e} norm {norm:.4e} vs {want:.4e}", spec.name);
        }
        if err > limit {
            bad.push(format!(
                "{}: gradient relative L2 error {err:.3e}",
                spec.name
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    tn.apply_momentum(0.1).unwrap();
    let mut after: Params = net.params.clone();
    tn.read_params(&mut after).unwrap();
    let mut worst_after = (0.0f64, String::new());
    for (spec, t) in after.iter() {
        let golden = golden_array(&mut archive, &format!("after/{}", spec.name));
        let err = rel_l2(&sample(&t.data), &golden);
        if err > worst_after.0 {
            worst_after = (err, spec.name.clone());
        }
        let limit = exempt
            .iter()
            .find(|(name, _, _)| *name == spec.name)
            .map_or(tol.2, |&(_, _, t)| t);
        assert!(
            err <= limit,
            "{}: value after the step, relative L2 error {err}",
            spec.name
        );
    }
    eprintln!(
        "{precision:?}: loss rel. error {loss_err:.2e}, worst gradient rel. L2 {:.2e} ({}), \
         worst after-step rel. L2 {:.2e} ({})",
        worst_grad.0, worst_grad.1, worst_after.0, worst_after.1
    );
    (loss_err, worst_grad.0, worst_after.0)
}

#[test]
fn fp32_train_step_matches_mindspore() {
    let _g = lock();
    // See HF32_STEP_TOL.
    train_step_against_golden(Precision::Fp32, 1.0, HF32_STEP_TOL, &[]);
}

#[test]
fn o2_train_step_stays_close_to_mindspore() {
    let _g = lock();
    // O2 with the recipe's fixed loss scale 1024: fp16 convolutions, Dense layers, pooling and
    // activations, fp32 BatchNorm, loss, master weights and update; see O2_STEP_TOL.
    train_step_against_golden(Precision::Fp16, 1024.0, O2_STEP_TOL, &[]);
}

// ---- failures and resource accounting -----------------------------------------------------

#[test]
fn injected_failures_name_the_call_and_nothing_leaks() {
    let _g = lock();
    let emu = common::emu::control();
    let (alloc0, obj0) = (emu.live_allocations(), emu.live_objects());
    {
        // aclrtMalloc refusing on a backend with nothing cached: the error names the call.
        let be = fp32();
        emu.inject("aclrtMalloc", 0, 207001);
        let err = be.alloc(1000).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, Error::Device { call, code: 207001, .. } if call == "aclrtMalloc"),
            "{text}"
        );
        assert!(text.contains("ACL_ERROR_RT_MEMORY_ALLOCATION"), "{text}");
        // With blocks cached, one failure is absorbed (the cache is freed and the call
        // retried); a second failure in a row surfaces.
        drop(be.alloc(4096).unwrap());
        emu.inject("aclrtMalloc", 0, 207001);
        let b = be.alloc(1 << 20).unwrap();
        drop(b);
        drop(be.alloc(8192).unwrap());
        emu.inject("aclrtMalloc", 0, 207001);
        emu.inject("aclrtMalloc", 0, 207001);
        let err = be.alloc(3 << 20).unwrap_err();
        assert!(
            matches!(&err, Error::Device { call, .. } if call == "aclrtMalloc"),
            "{err}"
        );
    }
    {
        // An operator failing in phase 2 on a whole network: the error names it.
        let net = SeNet::formula(Arch::SeResNet18, 10).unwrap();
        let mut inf = InferenceNet::new(&net, fp32()).unwrap();
        let x = formula_input("input", &[1, 3, 64, 64]);
        emu.inject("aclnnConvolution", 3, 561000);
        let err = inf.forward(&x).unwrap_err();
        assert!(
            matches!(&err, Error::Device { call, code: 561000, .. } if call == "aclnnConvolution"),
            "{err}"
        );
        // ... and phase 1.
        emu.inject("aclnnMaxPool2dWithMaskGetWorkspaceSize", 0, 161002);
        let err = inf.forward(&x).unwrap_err();
        assert!(
            err.to_string()
                .contains("aclnnMaxPool2dWithMaskGetWorkspaceSize failed with 161002 (ACLNN_ERR_PARAM_INVALID)"),
            "{err}"
        );
        // The network still works afterwards.
        inf.forward(&x).unwrap();
    }
    {
        // A training step, then everything dropped.
        let net = SeNet::formula(Arch::SeResNet18, 10).unwrap();
        let cfg = TrainConfig {
            loss_scale: 1.0,
            clip_value: Some(1.0),
            ema_decay: Some(0.999),
            ..TrainConfig::mindcv_senet()
        };
        let mut tn = TrainNet::new(&net, fp32(), cfg, |_| true).unwrap();
        let x = formula_input("train_input", &[2, 3, 32, 32]);
        tn.step(&x, &[1, 2], 0.1).unwrap();
        assert!(emu.live_allocations() > alloc0);
    }
    emu.clear();
    assert_eq!(emu.live_allocations(), alloc0, "device allocations leaked");
    assert_eq!(emu.live_objects(), obj0, "aclnn objects leaked");
    assert_eq!(emu.live_bytes() > 0, alloc0 > 0);
}

// ---- the float32 cube switches (CubeMath) -------------------------------------------------

/// `conv_allow_hf32 = false`: KEEP_DTYPE for FLOAT convolutions off the first-generation 910.
const CONV_KEEP_DTYPE: CubeMath = CubeMath {
    conv_allow_hf32: false,
    matmul_allow_hf32: false,
};

/// Eval logits of `arch` (1000 classes, MindCV's formula weights and input) on `be`.
fn eval_logits(arch: Arch, be: AscendBackend) -> Vec<f32> {
    let net = SeNet::formula(arch, 1000).unwrap();
    let mut inf = InferenceNet::new(&net, be).unwrap();
    inf.forward(&formula_input("input", &[2, 3, 224, 224]))
        .unwrap()
        .data
}

/// Asserts `logits` are within `bound` of MindCV's for `arch`, with the same top-1.
fn assert_near_golden(arch: Arch, logits: &[f32], bound: f32, what: &str) {
    let golden = golden_logits(arch);
    let max = max_abs(logits, &golden.data);
    eprintln!(
        "{} {what}: max |ascend - MindCV| = {max:.3e} (bound {bound:.3e})",
        arch.name()
    );
    assert!(max <= bound, "{} {what}: {max} > {bound}", arch.name());
    for (ours, gold) in logits.chunks(1000).zip(golden.data.chunks(1000)) {
        assert_eq!(argmax(ours), argmax(gold), "{} {what}", arch.name());
    }
}

#[test]
fn matmul_allow_hf32_runs_the_dense_layers_in_hf32_within_the_hf32_bound() {
    let _g = lock();
    let arch = Arch::SeResNet18;
    let hf32 = CubeMath {
        matmul_allow_hf32: true,
        ..CubeMath::default()
    };
    let be = AscendBackend::with_cube_math(0, Precision::Fp32, hf32).unwrap();
    let logits = eval_logits(arch, be);
    // Every weighted layer (convolutions, the SE Dense layers, the classifier) now rounds its
    // two operands to HFLOAT32 and accumulates in FLOAT: logit_bound's 2 roundings of 2^-12
    // per layer (for the default run, whose Dense layers are true FLOAT, the same bound is
    // pessimistic).
    let golden = golden_logits(arch);
    let bound = logit_bound(&golden.data, depth(arch), 2.0, U_HF32);
    assert_near_golden(arch, &logits, bound, "matmul_allow_hf32");
    // The switch reached aclnnMm/aclnnAddmm: rounding the Dense operands to 11 mantissa bits
    // changes the logits (USE_HF32 vs KEEP_DTYPE, aclnnMm.md:158-162).
    assert_ne!(logits, eval_logits(arch, fp32()));
}

#[test]
fn conv_allow_hf32_off_is_refused_on_a2_naming_the_contract() {
    let _g = lock();
    let err = AscendBackend::with_cube_math(0, Precision::Fp32, CONV_KEEP_DTYPE).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Invalid(_)), "{text}");
    // The SoC and its product line, the operator, the mode, the contract section and lines.
    for part in [
        "Ascend910B1 (product line A2)",
        "aclnnConvolution for cubeMathType KEEP_DTYPE (0) with FLOAT inputs",
        "conv_allow_hf32 = false",
        "aclnn-contract.md, Part B aclnnConvolution cubeMathType table",
        "aclnnConvolution.md:436-439",
    ] {
        assert!(text.contains(part), "'{part}' not in: {text}");
    }
    // O2 computes FLOAT16, where every cube mode is plain FLOAT16: the switch does not apply.
    let be = AscendBackend::with_cube_math(0, Precision::Fp16, CONV_KEEP_DTYPE).unwrap();
    assert_eq!(be.precision(), Precision::Fp16);
}

#[test]
fn conv_allow_hf32_off_on_the_950_computes_true_fp32() {
    let _g = lock();
    run_child(
        "ascend950_keep_dtype_child",
        &[("SENET_EMU_SOC", "Ascend950PR")],
    );
}

#[test]
#[ignore = "run by conv_allow_hf32_off_on_the_950_computes_true_fp32 in a child process"]
fn ascend950_keep_dtype_child() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    let _g = lock();
    let arch = Arch::SeResNet18;
    // KEEP_DTYPE with FLOAT: no rule against it for the 950 (aclnnConvolution.md:460-462 lists
    // none; aclnnConvolutionBackward.md:579-582 "no constraint"), so the cube computes FLOAT.
    let be = AscendBackend::with_cube_math(0, Precision::Fp32, CONV_KEEP_DTYPE).unwrap();
    let logits = eval_logits(arch, be);
    // Against the CPU backend's FLOAT forward: two FLOAT computations, each within
    // logit_bound's accumulation term alone (no operand rounding), so twice that apart.
    let net = SeNet::formula(arch, 1000).unwrap();
    let mut cpu = InferenceNet::new(&net, CpuBackend::new(1).unwrap()).unwrap();
    let want = cpu
        .forward(&formula_input("input", &[2, 3, 224, 224]))
        .unwrap();
    let bound = 2.0 * logit_bound(&want.data, depth(arch), 0.0, 0.0);
    let max = max_abs(&logits, &want.data);
    eprintln!("KEEP_DTYPE on the 950: max |ascend - cpu| = {max:.3e} (bound {bound:.3e})");
    assert!(max <= bound, "{max} > {bound}");
    // ... and closer to it than the HF32 default (operands rounded to 2^-12, not 2^-24).
    let hf32 = max_abs(&eval_logits(arch, fp32()), &want.data);
    eprintln!("USE_HF32 on the 950: max |ascend - cpu| = {hf32:.3e}");
    assert!(max < hf32, "{max} vs {hf32}");
}

// ---- first-generation 910 ------------------------------------------------------------------

const CHILD_VAR: &str = "SENET_ASCEND_TEST_CHILD";

/// Runs the ignored test `name` of this binary in a child process with `env` set (the emulator
/// reads `SENET_EMU_SOC` / `SENET_EMU_CANN_VERSION` when CANN is initialised), asserting it
/// passed.
fn run_child(name: &str, env: &[(&str, &str)]) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().copied())
        .env(CHILD_VAR, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    eprintln!("{text}");
}

#[test]
fn first_gen_910_path_gives_the_same_logits() {
    let _g = lock();
    run_child(
        "first_gen_910_child",
        // aclnnConvolution exists on the first-generation 910 only in CANN 8.0 (contract
        // Part F 3: the current docs list it as unsupported there).
        &[
            ("SENET_EMU_SOC", "Ascend910A"),
            ("SENET_EMU_CANN_VERSION", "8.0"),
        ],
    );
}

#[test]
fn first_gen_910_under_a_newer_cann_names_the_release_it_needs() {
    let _g = lock();
    run_child(
        "first_gen_910_newer_cann_child",
        &[
            ("SENET_EMU_SOC", "Ascend910ProB"),
            ("SENET_EMU_CANN_VERSION", "9.1"),
        ],
    );
}

#[test]
#[ignore = "run by first_gen_910_under_a_newer_cann_names_the_release_it_needs in a child process"]
fn first_gen_910_newer_cann_child() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    let _g = lock();
    let net = SeNet::formula(Arch::SeResNet18, 10).unwrap();
    let mut inf = InferenceNet::new(&net, fp32()).unwrap();
    let err = inf
        .forward(&formula_input("input", &[1, 3, 32, 32]))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, Error::Device { call, code: 161002, .. }
            if call == "aclnnConvolutionGetWorkspaceSize"),
        "{text}"
    );
    assert!(
        text.contains("Ascend910ProB is a first-generation Ascend 910"),
        "{text}"
    );
    assert!(text.contains("install CANN 8.0"), "{text}");
}

#[test]
#[ignore = "run by first_gen_910_path_gives_the_same_logits in a child process"]
fn first_gen_910_child() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    let _g = lock();
    let emu = common::emu::control();
    let be = fp32();
    assert_eq!(be.soc_name(), "Ascend910A");
    assert!(ascend::devices().unwrap().first_gen_910);
    let x = formula_input("input", &[2, 3, 224, 224]);
    // First-generation 910 cubes have no fp32 mode: FLOAT convolutions are computed in FLOAT16
    // there (aclnnConvolution's CANN 8.0 row, the only release that has it on this product), so
    // the logits match MindCV to fp16 precision (logit_bound with 3 roundings per layer), with
    // the same top-1.
    for arch in [Arch::SeResNet18, Arch::SeResNeXt26_32x4d] {
        let net = SeNet::formula(arch, 1000).unwrap();
        let mut inf =
            InferenceNet::new(&net, AscendBackend::new(0, Precision::Fp32).unwrap()).unwrap();
        let logits = inf.forward(&x).unwrap();
        let golden = golden_logits(arch);
        let max = max_abs(&logits.data, &golden.data);
        let bound = logit_bound(&golden.data, depth(arch), 3.0, U_FP16);
        eprintln!(
            "{} on Ascend910A: max |ascend - MindCV| = {max:.3e} (bound {bound:.3e})",
            arch.name()
        );
        assert!(max <= bound, "{}: {max}", arch.name());
        for (ours, gold) in logits.data.chunks(1000).zip(golden.data.chunks(1000)) {
            assert_eq!(argmax(ours), argmax(gold), "{}", arch.name());
        }
    }
    // The switches' other settings: conv_allow_hf32 = false -> USE_FP16 and
    // matmul_allow_hf32 = true -> ALLOW_FP32_DOWN_PRECISION (torch_npu's table); the contract
    // marks both FLOAT cells "fp16", the same arithmetic as the defaults (Part A 3), so the same
    // bound holds and the logits are the default run's exactly.
    let other = CubeMath {
        conv_allow_hf32: false,
        matmul_allow_hf32: true,
    };
    let arch = Arch::SeResNet18;
    let logits = eval_logits(
        arch,
        AscendBackend::with_cube_math(0, Precision::Fp32, other).unwrap(),
    );
    let golden = golden_logits(arch);
    let bound = logit_bound(&golden.data, depth(arch), 3.0, U_FP16);
    assert_near_golden(
        arch,
        &logits,
        bound,
        "USE_FP16 convs, down-precision matmuls",
    );
    assert_eq!(logits, eval_logits(arch, fp32()));
    assert!(emu.calls("aclnnMaxPool2dWithMask") > 0);
    assert_eq!(emu.calls("aclnnMaxPool2dWithIndices"), 0);
    // The backward path on the mask too.
    let cpu = CpuBackend::new(1).unwrap();
    let xs = Shape4::new(1, 2, 6, 7);
    // Distinct values: the argmax has no ties.
    let xv: Vec<f32> = (0..xs.numel())
        .map(|j| ((j * 37) % 89) as f32 - 30.0)
        .collect();
    let ys = Shape4::new(1, 2, 3, 4);
    let dyv = values(ys.numel(), 5);
    let mut want = vec![0.0; xs.numel()];
    cpu.max_pool2d_backward(MaxPool2dParams::same(3, 2), &xv, xs, &dyv, &mut want)
        .unwrap();
    let (xb, dyb) = (be.upload(&xv).unwrap(), be.upload(&dyv).unwrap());
    let mut dx = be.alloc(xs.numel()).unwrap();
    be.max_pool2d_backward(MaxPool2dParams::same(3, 2), &xb, xs, &dyb, &mut dx)
        .unwrap();
    let mut got = vec![0.0; xs.numel()];
    be.download(&dx, &mut got).unwrap();
    // FLOAT is computed as FLOAT16 by the mask backward here (aclnnMaxPool2dWithMaskBackward.md
    // :301): each gradient is rounded to FLOAT16 (relative u), summed where windows overlap,
    // and the sum rounded again: |got - want| <= 2u Σ|dy| over the contributions, which is the
    // CPU's backward of |dy|.
    let dy_abs: Vec<f32> = dyv.iter().map(|v| v.abs()).collect();
    let mut mag = vec![0.0; xs.numel()];
    cpu.max_pool2d_backward(MaxPool2dParams::same(3, 2), &xv, xs, &dy_abs, &mut mag)
        .unwrap();
    for (j, ((g, w), m)) in got.iter().zip(&want).zip(&mag).enumerate() {
        assert!(
            (g - w).abs() <= 2.0 * U_FP16 * m,
            "dx[{j}]: {g} vs {w}\n{got:?}\n{want:?}"
        );
    }
    // And the forward, exactly (the values are small integers: fp16 represents them).
    let mut want = vec![0.0; ys.numel()];
    cpu.max_pool2d(MaxPool2dParams::same(3, 2), &xv, xs, &mut want)
        .unwrap();
    let mut y = be.alloc(ys.numel()).unwrap();
    be.max_pool2d(MaxPool2dParams::same(3, 2), &xb, xs, &mut y)
        .unwrap();
    let mut got = vec![0.0; ys.numel()];
    be.download(&y, &mut got).unwrap();
    assert_eq!(got, want);
    assert!(emu.calls("aclnnMaxPool2dWithMaskBackward") > 0);
    // One O2 training step: the cube computes FLOAT16 operands on this product as on A2, the
    // rest in fp32, so the O2 step's tolerances hold here too.
    train_step_against_golden(Precision::Fp16, 1024.0, O2_STEP_TOL, &[]);
    // No foreach operators on this product (aclnn-contract.md "### aclnnForeach*": ❌ in every
    // row), so no learning rate in device memory for a captured step: refused, naming the SoC.
    let err = be.set_device_lr(true).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(m) if m.contains("Ascend910A")
            && m.contains("### aclnnForeach*")),
        "{err}"
    );
    assert!(matches!(be.stage_lr(0.1, 0.9), Err(Error::Invalid(_))));
}

// ---- CANN missing ---------------------------------------------------------------------------

#[test]
fn missing_cann_is_a_clean_error() {
    let _g = lock();
    run_child(
        "missing_cann_child",
        &[(
            senet_cann_sys::EXPLICIT_PATH_VAR,
            "/nonexistent/senet/libascendcl.so",
        )],
    );
}

#[test]
#[ignore = "run by missing_cann_is_a_clean_error in a child process"]
fn missing_cann_child() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    // No emulator here: SENET_CANN_LIB names a file that does not exist.
    for err in [
        AscendBackend::new(0, Precision::Fp32).unwrap_err(),
        ascend::devices().unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(matches!(err, Error::DeviceUnavailable(_)), "{text}");
        assert!(text.contains("CANN not found"), "{text}");
        assert!(text.contains("/nonexistent/senet/libascendcl.so"), "{text}");
        assert!(text.contains("set_env.sh"), "{text}");
    }
}

// ---- the C ABI on the emulated NPU --------------------------------------------------------

#[test]
fn c_abi_runs_the_model_on_the_emulated_npu() {
    use senet::ffi::model::{
        senet_model_create, senet_model_forward, senet_model_free, senet_model_load,
        senet_model_set_device,
    };
    use senet::ffi::{SenetDevice, SenetModel, SenetStatus};
    use std::ffi::CString;

    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("r18.ckpt");
    let net = SeNet::formula(Arch::SeResNet18, 10).unwrap();
    senet::checkpoint::save_params(&net.params, &ckpt).unwrap();
    let x = formula_input("input", &[2, 3, 64, 64]);
    let variant = CString::new("seresnet18").unwrap();
    let path = CString::new(ckpt.to_str().unwrap()).unwrap();
    let logits = |device: SenetDevice| -> Vec<f32> {
        let mut model: *mut SenetModel = std::ptr::null_mut();
        // SAFETY: valid C strings and out-pointer; buffers of the stated lengths.
        unsafe {
            assert_eq!(
                senet_model_create(variant.as_ptr(), 10, &mut model),
                SenetStatus::Ok
            );
            assert_eq!(senet_model_load(model, path.as_ptr()), SenetStatus::Ok);
            assert_eq!(
                senet_model_set_device(model, device as i32, 0),
                SenetStatus::Ok
            );
            let mut out = vec![0f32; 20];
            assert_eq!(
                senet_model_forward(
                    model,
                    x.data.as_ptr(),
                    x.data.len(),
                    2,
                    64,
                    64,
                    out.as_mut_ptr(),
                    out.len()
                ),
                SenetStatus::Ok
            );
            assert_eq!(senet_model_free(model), SenetStatus::Ok);
            out
        }
    };
    let npu = logits(SenetDevice::Ascend);
    let cpu = logits(SenetDevice::Cpu);
    let max = max_abs(&npu, &cpu);
    // FLOAT on the emulated A2: HFLOAT32 convolutions (see logit_bound), against the CPU's.
    let bound = logit_bound(&cpu, depth(Arch::SeResNet18), 2.0, U_HF32);
    assert!(
        max <= bound,
        "C ABI on the NPU vs the CPU: max abs {max} > {bound}"
    );
    // Freeing the model released every device buffer and aclnn object.
    let ctl = common::emu::control();
    assert_eq!(ctl.live_objects(), 0);
}
