//! The host cost of a steady-state Ascend training step (issue 14): an O2 step of seresnet18 at
//! batch 2, 64x64, on the emulated 910B (A2), counted by the emulator (`SENET_EMU_STATS`) as
//! the difference between a 4-step and a 2-step `senet bench --train` run, and by the backend
//! itself (`senet bench --json`'s `per_step`), which must agree with the emulator.
mod common;

use common::emu::{step_counts, StepCounts};

fn a2_step() -> StepCounts {
    step_counts("Ascend910B1", "seresnet18", 2, 64, "O2", (2, 4))
}

#[test]
fn o2_step_on_the_910b_costs_the_host_what_the_backend_reports() {
    let c = a2_step();
    eprintln!("per step: {:?}", c.calls);
    let per_step = &c.report["per_step"];
    let backend = |k: &str| {
        per_step[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k}: {per_step}"))
    };
    // The backend's own counters (what a real NPU run reports) are the emulator's.
    assert_eq!(backend("launches"), c.launches());
    assert_eq!(backend("synchronizes"), c.synchronizes());
    assert_eq!(backend("blocking_copies"), c.of("aclrtMemcpy"));
    assert_eq!(backend("allocations"), c.of("aclrtMalloc"));
    assert_eq!(per_step["iterations"], 3);
    // Steady state: no device allocation.
    assert_eq!(c.of("aclrtMalloc"), 0.0);
    // One synchronise and one blocking copy: the per-row losses and the logits (for the top-1
    // hits) in one read-back block; the images and the loss targets go up asynchronously from
    // pinned staging buffers allocated during the first step (before: 4 synchronising blocking
    // copies, one for each of those).
    assert_eq!(c.synchronizes(), 1.0);
    assert_eq!(c.of("aclrtMemcpy"), 1.0);
    assert_eq!(c.of("aclrtMemcpyAsync"), 2.0);
    assert_eq!(c.of("aclrtMallocHost"), 0.0);
    // Bytes: up, the fp32 images (2 x 3 x 64 x 64) and the fp32 targets (2 x 1000); down, the
    // 2 losses padded to 8 values (32 bytes) and the fp32 logits.
    assert_eq!(
        backend("h2d_bytes"),
        (2.0 * 3.0 * 64.0 * 64.0 + 2.0 * 1000.0) * 4.0
    );
    assert_eq!(backend("d2h_bytes"), (8.0 + 2.0 * 1000.0) * 4.0);
    // The optimizer: one aclnnFusedSgd (bench decays every parameter: one group), no
    // per-parameter arithmetic (before: 5 launches for each of the 94 parameters).
    assert_eq!(c.of("aclnnFusedSgd"), 1.0);
    // 491 launches: 500 until each global-average-pool backward (8 SE squeezes and the head)
    // became one aclnnAdaptiveAvgPool2dBackward instead of a broadcast copy and a Muls.
    assert_eq!(c.of("aclnnAdaptiveAvgPool2dBackward"), 9.0);
    assert_eq!(c.launches(), 491.0);
}

/// The trainer's step: the same O2 step with MindCV's two parameter groups (weight decay on the
/// weights, off for BatchNorm and biases: `weight_decay_filter: norm_and_bias`, as the
/// repository's CIFAR-10 and Fashion-MNIST recipes set it), i.e. one more `aclnnFusedSgd`
/// than the bench's single group. Counted in process by the backend's counters (the test
/// above shows they are the emulator's) over steps 3 and 4, on the default emulated SoC
/// (Ascend910B1, as above).
#[test]
fn trainer_o2_step_with_two_weight_decay_groups_stays_within_500_launches() {
    use senet::backend::ascend::{AscendBackend, Precision};
    use senet::backend::Backend;
    use senet::config::WeightDecayFilter;
    use senet::model::{Arch, SeNet};
    use senet::optim::{decays, TrainConfig, TrainNet};
    use senet::tensor::Tensor;

    let _g = common::emu::lock();
    let net = SeNet::new(Arch::SeResNet18, 1000, 0).unwrap();
    let cfg = TrainConfig::mindcv_senet();
    let be = AscendBackend::new(0, Precision::Fp16).unwrap();
    let mut tn = TrainNet::new(&net, be, cfg, |name| {
        decays(name, WeightDecayFilter::NormAndBias, None)
    })
    .unwrap();
    let x = Tensor::from_vec(&[2, 3, 64, 64], common::emu::values(2 * 3 * 64 * 64, 7)).unwrap();
    let labels = [3usize, 640];
    let fused = || common::emu::control().calls("aclnnFusedSgd");
    for _ in 0..2 {
        tn.step(&x, &labels, 0.01).unwrap();
    }
    let (before, fused_before) = (tn.backend().counters().unwrap(), fused());
    for _ in 0..2 {
        tn.step(&x, &labels, 0.01).unwrap();
    }
    let c = tn.backend().counters().unwrap().since(&before);
    assert_eq!(
        fused() - fused_before,
        4,
        "two groups, one FusedSgd each, per step"
    );
    assert_eq!(c.launches, 2 * 492, "{c:?}");
    assert_eq!(c.allocations, 0, "{c:?}");
    assert_eq!(c.synchronizes, 2, "{c:?}");
    assert_eq!(c.blocking_copies, 2, "{c:?}");
}
