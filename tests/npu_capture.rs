//! The captured training step ("NPU graph", `TrainNet::step_staged` on CANN's
//! `aclmdlRICapture*`) on the emulated NPU: an O2 seresnet18 step at batch 2, 64x64.
//!
//! Why equality is bit for bit: a replay runs the very tasks the capture recorded (the
//! emulator re-queues them, as the runtime does), and the staged step issues the same aclnn
//! ops with the same arguments, in the same order, as the op-by-op `TrainNet::step` (the only
//! difference is where the smoothed targets come from: one upload with the images instead of
//! an upload of their own, the same f32 values). The emulator computes each op
//! deterministically (fixed reduction order, no threads racing), so the same ops on the same
//! inputs give the same bits.
mod common;

use common::emu::{control, lock, step_counts_with};
use senet::backend::ascend::{AscendBackend, Precision};
use senet::backend::Backend;
use senet::model::{Arch, SeNet};
use senet::optim::{StepStats, TrainConfig, TrainNet};
use senet::Tensor;

const CLASSES: usize = 10;

fn train_net(graph: bool) -> TrainNet<AscendBackend> {
    let net = SeNet::new(Arch::from_name("seresnet18").unwrap(), CLASSES, 7).unwrap();
    let be = AscendBackend::new(0, Precision::Fp16).unwrap();
    let decay = |name: &str| !name.contains("beta") && !name.contains("gamma");
    let mut tn = TrainNet::new(&net, be, TrainConfig::mindcv_senet(), decay).unwrap();
    tn.set_step_graph(graph).unwrap();
    tn
}

/// Batch `i` of `n` images (deterministic).
fn batch(i: u64, n: usize) -> (Tensor, Vec<usize>) {
    let x = common::emu::values(n * 3 * 64 * 64, 100 + i);
    let labels = (0..n).map(|k| (k * 3 + i as usize) % CLASSES).collect();
    (Tensor::from_vec(&[n, 3, 64, 64], x).unwrap(), labels)
}

/// Every parameter and Momentum accumulator, as bits.
fn state(tn: &TrainNet<AscendBackend>) -> Vec<(String, Vec<u32>)> {
    let mut net = SeNet::new(tn.arch(), CLASSES, 0).unwrap();
    tn.read_params(&mut net.params).unwrap();
    let bits = |t: &Tensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let mut out: Vec<_> = net
        .params
        .iter()
        .map(|(s, t)| (s.name.clone(), bits(t)))
        .collect();
    for (name, m) in tn.moments().unwrap() {
        out.push((format!("moments.{name}"), bits(&m)));
    }
    out
}

/// One step: (images in the batch, learning rate).
type Plan = [(usize, f32)];

/// Runs `plan` op by op (`TrainNet::step`) and with the step graph
/// (`TrainNet::step_staged`, figures read every step); asserts the figures, parameters and
/// moments are equal bit for bit; returns which staged steps replayed a graph and the notes.
fn compare(plan: &Plan) -> (Vec<bool>, Vec<String>) {
    let mut eager = train_net(false);
    let mut staged = train_net(true);
    let mut replayed = Vec::new();
    for (i, &(n, lr)) in plan.iter().enumerate() {
        let (x, labels) = batch(i as u64, n);
        let a = eager.step(&x, &labels, lr).unwrap();
        let b: StepStats = staged.step_staged(&x, &labels, lr, true).unwrap().unwrap();
        assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "loss of step {i}");
        assert_eq!(a.correct, b.correct, "hits of step {i}");
        replayed.push(staged.replaying());
    }
    let (s, e) = (state(&staged), state(&eager));
    for ((name, a), (_, b)) in s.iter().zip(&e) {
        assert!(a == b, "{name} differs after {} steps", plan.len());
    }
    (replayed, staged.take_graph_notes())
}

#[test]
fn captured_steps_equal_op_by_op_steps_bit_for_bit() {
    let _g = lock();
    let (replayed, notes) = compare(&[(2, 0.1); 5]);
    // Step 1 warms up, step 2 is captured (and replayed), 3-5 replay.
    assert_eq!(replayed, [false, true, true, true, true]);
    assert_eq!(
        notes,
        ["NPU graph: the training step (Shape4 { n: 2, c: 3, h: 64, w: 64 }) is captured and replayed"]
    );
}

#[test]
fn a_replayed_step_launches_nothing_from_the_host() {
    let _g = lock();
    let mut tn = train_net(true);
    for i in 0..3 {
        let (x, labels) = batch(i, 2);
        tn.step_staged(&x, &labels, 0.1, false).unwrap();
    }
    assert!(tn.replaying());
    let before = tn.backend().counters().unwrap();
    let steps = 4;
    for i in 3..3 + steps {
        let (x, labels) = batch(i, 2);
        assert!(tn.step_staged(&x, &labels, 0.1, false).unwrap().is_none());
    }
    let c = tn.backend().counters().unwrap().since(&before);
    // Per step: one replay and two uploads (the images, then the 10 targets of each image
    // from the next 32-byte boundary; the learning rate's 64-byte block), nothing else: no
    // launch, no synchronise (nothing is logged), no blocking copy, no allocation.
    let images = 2 * 3 * 64 * 64;
    assert_eq!(c.replays, steps);
    assert_eq!(c.launches, 0);
    assert_eq!(c.synchronizes, 0);
    assert_eq!(c.blocking_copies, 0);
    assert_eq!(c.allocations, 0);
    assert_eq!(
        c.h2d_bytes,
        steps * ((images + 2 * CLASSES as u64) * 4 + 64)
    );
    assert_eq!(c.d2h_bytes, 0);
    // A logged step reads the losses and logits back: one synchronise, one copy.
    let (x, labels) = batch(9, 2);
    let before = tn.backend().counters().unwrap();
    let s = tn.step_staged(&x, &labels, 0.1, true).unwrap().unwrap();
    assert!(s.loss.is_finite());
    let c = tn.backend().counters().unwrap().since(&before);
    assert_eq!((c.synchronizes, c.blocking_copies, c.launches), (1, 1, 0));
    assert_eq!(c.d2h_bytes, (8 + 2 * CLASSES as u64) * 4);
}

#[test]
fn steps_that_log_nothing_equal_op_by_op_steps() {
    let _g = lock();
    // Nothing synchronises for six steps: every upload's pinned buffer is still in flight
    // (the emulator runs queued copies only at a synchronise, reading the host memory then),
    // so a buffer rewritten too early would feed later images to earlier steps.
    let mut eager = train_net(false);
    let mut staged = train_net(true);
    for i in 0..6 {
        let (x, labels) = batch(i, 2);
        eager.step(&x, &labels, 0.1).unwrap();
        assert!(staged
            .step_staged(&x, &labels, 0.1, false)
            .unwrap()
            .is_none());
    }
    assert!(staged.replaying());
    assert!(state(&staged) == state(&eager));
}

#[test]
fn op_by_op_steps_that_log_nothing_do_not_synchronise() {
    let _g = lock();
    let mut tn = train_net(false);
    for i in 0..2 {
        let (x, labels) = batch(i, 2);
        tn.step_staged(&x, &labels, 0.1, false).unwrap();
    }
    let before = tn.backend().counters().unwrap();
    for i in 2..8 {
        let (x, labels) = batch(i, 2);
        tn.step_staged(&x, &labels, 0.1, false).unwrap();
    }
    let c = tn.backend().counters().unwrap().since(&before);
    assert_eq!((c.synchronizes, c.blocking_copies, c.replays), (0, 0, 0));
    // The same launches as the op-by-op `step` (the targets read from the input buffer leave
    // the images' fp16 copy valid for the backward).
    let mut plain = train_net(false);
    let (x, labels) = batch(0, 2);
    plain.step(&x, &labels, 0.1).unwrap();
    let before = plain.backend().counters().unwrap();
    plain.step(&x, &labels, 0.1).unwrap();
    let per_step = plain.backend().counters().unwrap().since(&before).launches;
    assert_eq!(c.launches, 6 * per_step);
}

#[test]
fn a_changed_shape_runs_op_by_op_and_recaptures_and_a_changed_learning_rate_replays() {
    let _g = lock();
    let plan = [
        (2, 0.1),
        (2, 0.1),
        (2, 0.1),
        // The schedule moves: the replay reads the new learning rate from the device.
        (2, 0.05),
        (2, 0.05),
        (2, 0.05),
        // The short last batch, then the full size again (new activations: a warm-up).
        (1, 0.05),
        (2, 0.05),
        (2, 0.05),
    ];
    let (replayed, notes) = compare(&plan);
    assert_eq!(
        replayed,
        [false, true, true, true, true, true, false, false, true]
    );
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("captured and replayed"), "{notes:?}");
    assert!(notes[1].contains("shape"), "{notes:?}");
}

/// A learning rate that moves every step (MindCV's per-step cosine schedule): the step is
/// captured once and every replay reads that step's learning rate from the device (staged by
/// an asynchronous copy), so the replayed steps equal the op-by-op steps at each learning rate,
/// bit for bit ([`compare`]); a stale learning rate would make them differ from step 3 on.
#[test]
fn a_cosine_schedule_replays_with_each_steps_learning_rate() {
    let _g = lock();
    let plan: Vec<(usize, f32)> = (0..5).map(|i| (2, 0.1 / (1 + i) as f32)).collect();
    let (replayed, _) = compare(&plan);
    assert_eq!(replayed, [false, true, true, true, true]);
    assert!(train_net(true).lr_on_device());
}

#[test]
fn a_failed_capture_falls_back_with_the_runtime_message() {
    let _g = lock();
    // The optimizer's launch is refused during the capture of step 2. With the learning rate
    // on the device only the staged network's update calls aclnnForeachAddList (the op-by-op
    // twin's is aclnnFusedSgd): the call after the warm-up step's is the captured step's first.
    let per_step = {
        let mut tn = train_net(true);
        let (x, labels) = batch(0, 2);
        let before = control().calls("aclnnForeachAddList");
        tn.step_staged(&x, &labels, 0.1, true).unwrap();
        control().calls("aclnnForeachAddList") - before
    };
    assert!(per_step > 0);
    control().inject("aclnnForeachAddList", per_step as u32, 507903);
    let (replayed, notes) = compare(&[(2, 0.1); 4]);
    // Capture stays off for the network; every step runs op by op and equals the twin's.
    assert_eq!(replayed, [false; 4]);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("could not be captured"), "{notes:?}");
    assert!(notes[0].contains("aclnnForeachAddList"), "{notes:?}");
}

#[test]
fn a_synchronise_during_a_capture_invalidates_it_and_the_backend_carries_on() {
    let _g = lock();
    let be = AscendBackend::new(0, Precision::Fp32).unwrap();
    let mut x = be.upload(&[1.0, 2.0, 3.0]).unwrap();
    be.capture_begin().unwrap();
    be.scale(&mut x, 3, 2.0).unwrap();
    let mut host = [0f32; 3];
    let err = be.download(&x, &mut host).unwrap_err().to_string();
    assert!(
        err.contains("ACL_ERROR_RT_CAPTURE_MODE_NOT_SUPPORT"),
        "{err}"
    );
    let err = be.capture_end().unwrap_err().to_string();
    assert!(
        err.contains("ACL_ERROR_RT_STREAM_CAPTURE_INVALIDATED"),
        "{err}"
    );
    assert!(!be.graph_live());
    // Nothing recorded ran; the same work op by op does.
    be.download(&x, &mut host).unwrap();
    assert_eq!(host, [1.0, 2.0, 3.0]);
    be.scale(&mut x, 3, 2.0).unwrap();
    be.download(&x, &mut host).unwrap();
    assert_eq!(host, [2.0, 4.0, 6.0]);
    // A capture that succeeds replays on the current contents.
    be.capture_begin().unwrap();
    be.scale(&mut x, 3, 2.0).unwrap();
    be.capture_end().unwrap();
    be.download(&x, &mut host).unwrap();
    assert_eq!(host, [2.0, 4.0, 6.0], "captured work does not run");
    be.graph_replay().unwrap();
    be.graph_replay().unwrap();
    be.download(&x, &mut host).unwrap();
    assert_eq!(host, [8.0, 16.0, 24.0]);
    be.graph_destroy().unwrap();
    assert!(be.graph_replay().is_err());
}

#[test]
fn senet_bench_counts_a_replayed_step() {
    let c = step_counts_with("Ascend910B1", "seresnet18", 2, 64, "O2", (3, 5), true);
    eprintln!("per replayed step: {:?}", c.calls);
    let per_step = &c.report["per_step"];
    assert_eq!(c.report["npu_graph"], "replayed (NPU graph)");
    // The backend's counters (what an NPU run reports) after the capture, and the emulator's
    // difference of a 5-step and a 3-step run: both replays.
    assert_eq!(per_step["iterations"], 3);
    assert_eq!(per_step["launches"], 0.0);
    assert_eq!(per_step["replays"], 1.0);
    assert_eq!(c.launches(), 0.0);
    assert_eq!(c.of("aclmdlRIExecuteAsync"), 1.0);
    // The inputs and the learning rate: two asynchronous copies from pinned memory; bench
    // reads the loss every step (one synchronise, one copy); nothing allocated.
    assert_eq!(c.of("aclrtMemcpyAsync"), 2.0);
    assert_eq!(c.synchronizes(), 1.0);
    assert_eq!(c.of("aclrtMemcpy"), 1.0);
    assert_eq!(c.of("aclrtMalloc"), 0.0);
    assert_eq!(c.of("aclrtMallocHost"), 0.0);
    assert_eq!(
        per_step["h2d_bytes"],
        (2.0 * 3.0 * 64.0 * 64.0 + 2.0 * 1000.0) * 4.0 + 64.0
    );
}

#[test]
fn senet_bench_runs_op_by_op_where_cann_has_no_capture() {
    for (soc, cann) in [("Ascend910A", "8.0"), ("Ascend910B1", "8.0")] {
        let out = common::cli::command(&[
            "bench",
            "--device",
            "ascend",
            "--train",
            "--model",
            "seresnet18",
            "--batch_size",
            "2",
            "--image_size",
            "64",
            "--amp_level",
            "O2",
            "--warmup",
            "0",
            "--iters",
            "3",
            "--json",
        ])
        .env(senet_cann_sys::EXPLICIT_PATH_VAR, common::emu::library())
        .env_remove("DEVICE_ID")
        .env("SENET_EMU_SOC", soc)
        .env("SENET_EMU_CANN_VERSION", cann)
        .env_remove("SENET_NPU_GRAPH")
        .output()
        .unwrap();
        let report: serde_json::Value = serde_json::from_str(common::cli::ok(&out).trim()).unwrap();
        let how = report["npu_graph"].as_str().unwrap_or_default();
        assert!(
            how.contains("could not be captured"),
            "{soc} {cann}: {report}"
        );
        assert!(
            how.contains("ACL_ERROR_RT_FEATURE_NOT_SUPPORT"),
            "{soc}: {how}"
        );
        assert_eq!(report["per_step"]["replays"], 0.0, "{soc}");
        assert!(report["per_step"]["launches"].as_f64().unwrap() > 0.0);
    }
}

/// `senet train` on the emulated 910B (O2, batch 2, 64x64, 4 classes of one photo: 2 steps an
/// epoch) at a constant learning rate, with `SENET_NPU_GRAPH` = `graph`: the log and the final
/// checkpoint.
fn train(graph: &str, dir: &std::path::Path) -> (String, senet::checkpoint::Checkpoint) {
    let out_dir = dir.join(format!("out-{graph}"));
    let mut args = common::small_train_args(dir, &out_dir);
    args.extend([
        "--epoch_size",
        "3",
        "--scheduler",
        "constant",
        "--log_interval",
        "1",
    ]);
    let out = common::cli::command(&args)
        .env(senet_cann_sys::EXPLICIT_PATH_VAR, common::emu::library())
        .env_remove("DEVICE_ID")
        .env("SENET_NPU_GRAPH", graph)
        .output()
        .unwrap();
    let text = common::cli::ok(&out);
    let ck = senet::checkpoint::read_checkpoint(&out_dir.join("seresnet18-3_2.ckpt")).unwrap();
    (text, ck)
}

#[test]
fn senet_train_replays_the_captured_step_and_saves_the_same_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    common::small_dataset(dir.path());
    let (log_on, on) = train("1", dir.path());
    let (log_off, off) = train("0", dir.path());
    // Step 1 has no previous learning rate (op by op, guarded), step 2 warms the staged step
    // up, step 3 is captured: reported once.
    assert_eq!(log_on.matches("NPU graph").count(), 1, "{log_on}");
    assert!(log_on.contains("captured and replayed"), "{log_on}");
    assert!(!log_off.contains("NPU graph"), "{log_off}");
    assert_eq!(on.tensors.len(), off.tensors.len());
    for ((name, a), (name_b, b)) in on.tensors.iter().zip(&off.tensors) {
        assert_eq!(name, name_b);
        assert!(a == b, "{name} differs");
    }
    // The six steps' losses in the log are the same too.
    let losses = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("batch: ["))
            .map(|l| l.split(", time:").next().unwrap_or(l).to_string())
            .collect()
    };
    assert_eq!(losses(&log_on).len(), 6, "{log_on}");
    assert_eq!(losses(&log_on), losses(&log_off));
}
