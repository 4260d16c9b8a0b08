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
    // 4 synchronising blocking copies (the input, the loss targets, the per-row losses, the
    // logits).
    assert_eq!(c.synchronizes(), 4.0);
    assert_eq!(c.of("aclrtMemcpy"), 4.0);
    // The optimizer: one aclnnFusedSgd (bench decays every parameter: one group), no
    // per-parameter arithmetic (before: 5 launches for each of the 94 parameters).
    assert_eq!(c.of("aclnnFusedSgd"), 1.0);
    assert_eq!(c.launches(), 622.0);
}
