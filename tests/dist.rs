//! Data-parallel training through the `senet` binary, as users launch it (HCCL's rank-table
//! launch on the emulated NPUs: `tests/dist_hccl.rs`; what both share: `tests/common/dist.rs`).
//!
//! Without MPI (any build): `distribute: True` without a launcher is an error showing the
//! `mpirun` command, a launcher's variables with `distribute: False` and several ranks are an
//! error, and (built without the `mpi` feature) a launched `--distribute` run says how to build
//! with MPI.
//!
//! With the `mpi` feature (`cargo test --features mpi --test dist`), each test starts real
//! 2-process jobs with `mpirun -n 2 --allow-run-as-root --oversubscribe`:
//! - 2 ranks with batch b produce, after k = 3 steps, the parameters (and Momentum
//!   accumulators, and validation figures) of 1 process with batch 2b, to 1e-5 relative on the
//!   CPU after one step and with direct data gradients ([`SAME_ARITHMETIC`]), to 1.1e-4 after
//!   3 steps with the Winograd data gradients ([`winograd_steps`]; on the emulated NPU see
//!   [`hf32_steps`]), with
//!   BatchNorm frozen (`--freeze_bn`: the moving statistics normalise, so no statistic depends
//!   on how the batch is split); only rank 0 logs and writes files;
//! - a rank that dies (fault injection `SENET_TEST_ABORT_AT_STEP`) ends the job with a non-zero
//!   status within 60 s, as does a rank that hangs (`SENET_TEST_HANG_AT_STEP`, the others'
//!   collective timeout `SENET_DIST_TIMEOUT` set to 3 s) and a rank that disagrees with the
//!   others.
//!
//! When `mpirun` is missing these tests say so and pass, unless `SENET_REQUIRE_MPI` is set
//! (CI sets it), in which case they fail; so does a build without the `mpi` feature.
mod common;

use common::cli::SENET;
use common::dist::*;

#[test]
fn distribute_without_a_launcher_shows_the_mpirun_command() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = write_recipe(tmp.path(), &tmp.path().join("none"), 1);
    let r = recipe.to_str().unwrap();
    let out = senet(&["train", "-c", r, "--distribute"], &[]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "mpirun --allow-run-as-root -n 8 {SENET} train -c {r} --distribute"
        )),
        "{t}"
    );
    assert!(t.contains("--distribute False"), "{t}");
    if !cfg!(feature = "mpi") {
        assert!(t.contains("cargo build --release --features mpi"), "{t}");
    }
    // The recipe key alone: the command gains --distribute.
    std::fs::write(
        &recipe,
        std::fs::read_to_string(&recipe).unwrap() + "distribute: True\n",
    )
    .unwrap();
    let out = senet(&["train", "-c", r], &[]);
    let t = text(&out);
    assert!(
        t.contains(&format!("-n 8 {SENET} train -c {r} --distribute")),
        "{t}"
    );
}

#[test]
fn several_ranks_without_distribute_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = write_recipe(tmp.path(), &tmp.path().join("none"), 1);
    let env = [("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2")];
    let out = senet(&["train", "-c", recipe.to_str().unwrap()], &env);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("distribute is False") && t.contains("rank 1 of 2"),
        "{t}"
    );
}

#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_says_how_to_build_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = write_recipe(tmp.path(), &tmp.path().join("none"), 1);
    let env = [("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")];
    let out = senet(
        &["train", "-c", recipe.to_str().unwrap(), "--distribute"],
        &env,
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("built without MPI support")
            && t.contains("cargo build --release --features mpi"),
        "{t}"
    );
    assert!(
        std::env::var_os("SENET_REQUIRE_MPI").is_none(),
        "SENET_REQUIRE_MPI is set but this test build has no `mpi` feature: run \
         `cargo test --features mpi --test dist`"
    );
    eprintln!(
        "note: the 2-process MPI tests need `cargo test --features mpi --test dist` (OpenMPI)"
    );
}

#[cfg(feature = "mpi")]
mod mpi {
    use super::*;
    use common::cli::extract_cifar10;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};
    use std::time::{Duration, Instant};

    /// `mpirun`, or None (with a message) when it is missing and `SENET_REQUIRE_MPI` is unset.
    fn mpirun() -> Option<PathBuf> {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("mpirun"))
                .find(|p| p.is_file())
        });
        if found.is_none() {
            assert!(
                std::env::var_os("SENET_REQUIRE_MPI").is_none(),
                "SENET_REQUIRE_MPI is set but mpirun is not on the PATH: apt-get install \
                 libopenmpi-dev openmpi-bin"
            );
            eprintln!("SKIPPED: mpirun not found (apt-get install openmpi-bin to run this test)");
        }
        found
    }

    /// `mpirun -n 2 --allow-run-as-root --oversubscribe [mpirun_args] senet <args>`, killed
    /// after `limit`. Returns the output and the wall time.
    fn mpirun_job(
        mpirun: &Path,
        mpirun_args: &[&str],
        args: &[&str],
        limit: Duration,
    ) -> (Output, Duration) {
        let mut c = Command::new(mpirun);
        c.args(["-n", "2", "--allow-run-as-root", "--oversubscribe"])
            .args(mpirun_args)
            .arg(SENET)
            .args(args);
        run_limited(c, limit)
    }

    /// Runs `c` (launcher variables of an enclosing job removed), killed after `limit`.
    fn run_limited(mut c: Command, limit: Duration) -> (Output, Duration) {
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for key in ["RANK_TABLE_FILE", "RANK_ID", "RANK_SIZE", "MS_ROLE"] {
            c.env_remove(key);
        }
        let t0 = Instant::now();
        let mut child = c.spawn().expect("start mpirun");
        // Read the pipes on threads so that a chatty job cannot block on them.
        let mut so = child.stdout.take().unwrap();
        let mut se = child.stderr.take().unwrap();
        let ro = std::thread::spawn(move || {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut so, &mut b).ok();
            b
        });
        let re = std::thread::spawn(move || {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut se, &mut b).ok();
            b
        });
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > limit {
                child.kill().ok();
                let s = child.wait().unwrap();
                let out = Output {
                    status: s,
                    stdout: ro.join().unwrap(),
                    stderr: re.join().unwrap(),
                };
                panic!(
                    "the mpirun job did not end within {limit:?}: killed\n{}",
                    text(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let out = Output {
            status,
            stdout: ro.join().unwrap(),
            stderr: re.join().unwrap(),
        };
        (out, t0.elapsed())
    }

    /// The body of [`collectives_over_two_ranks`] on each rank (started by mpirun with
    /// `SENET_DIST_WORKER=1`; does nothing in a normal test run).
    #[test]
    fn collectives_worker() {
        use half::f16;
        use senet::backend::cpu::CpuBackend;
        use senet::dist::{self, GradBuffer, GradientReducer, HostStagedReducer};
        if std::env::var_os("SENET_DIST_WORKER").is_none() {
            return;
        }
        let comm = dist::init(true).unwrap();
        let (rank, size) = (comm.rank(), comm.size());
        assert_eq!((comm.name(), size), ("mpi", 2));
        let r = rank as f32;
        // f32 in place, longer than one message would need; f64 exact; f16 widened.
        let mut v: Vec<f32> = (0..100_003).map(|i| i as f32 + r * 0.5).collect();
        comm.all_reduce_sum_f32(&mut v).unwrap();
        assert!(v
            .iter()
            .enumerate()
            .all(|(i, x)| *x == 2.0 * i as f32 + 0.5));
        let mut d = [1e15 + rank as f64, 0.25];
        comm.all_reduce_sum_f64(&mut d).unwrap();
        assert_eq!(d, [2e15 + 1.0, 0.5]);
        let mut h = [f16::from_f32(1.5 + r), f16::from_f32(-2.0)];
        comm.all_reduce_sum_f16(&mut h).unwrap();
        assert_eq!((h[0].to_f32(), h[1].to_f32()), (4.0, -4.0));
        // Broadcast from rank 1.
        let mut b = vec![r; 5];
        comm.broadcast_f32(&mut b, 1).unwrap();
        assert_eq!(b, vec![1.0; 5]);
        let mut bytes = [rank as u8; 3];
        comm.broadcast_bytes(&mut bytes, 0).unwrap();
        assert_eq!(bytes, [0; 3]);
        assert!(comm.broadcast_f32(&mut b, 2).is_err());
        comm.barrier().unwrap();
        // Agreement: both ranks get the same verdict.
        dist::agree(&*comm, "a count", 7).unwrap();
        let e = dist::agree(&*comm, "a count", 7 + rank as u64)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("disagree on a count") && e.contains("rank 0 has 7"),
            "{e}"
        );
        assert!(dist::agree_on(&*comm, "a text", &format!("rank {rank}")).is_err());
        // The gradient reducer in buckets of 3 values: the mean of both ranks' gradients.
        let be = CpuBackend::new(1).unwrap();
        let mut red = HostStagedReducer::new(comm.clone(), 12).unwrap();
        let (mut g1, mut g2) = (vec![1.0 + r, 2.0 + r], vec![10.0 * (1.0 + r); 4]);
        let mut grads = [
            GradBuffer::<CpuBackend> {
                name: "a",
                grad: &mut g1,
                len: 2,
            },
            GradBuffer {
                name: "b",
                grad: &mut g2,
                len: 4,
            },
        ];
        GradientReducer::all_reduce_mean(&mut red, &be, &mut grads).unwrap();
        assert_eq!(g1, [1.5, 2.5]);
        assert_eq!(g2, [15.0; 4]);
        eprintln!("rank {rank}: collectives ok");
    }

    #[test]
    fn collectives_over_two_ranks() {
        let Some(mpirun) = mpirun() else { return };
        let me = std::env::current_exe().unwrap();
        let mut c = Command::new(&mpirun);
        c.args(["-n", "2", "--allow-run-as-root", "--oversubscribe"])
            .args(["-x", "SENET_DIST_WORKER=1"])
            .arg(&me)
            .args(["--exact", "mpi::collectives_worker", "--nocapture"]);
        let (out, _) = run_limited(c, Duration::from_secs(60));
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert_eq!(t.matches("collectives ok").count(), 2, "{t}");
    }

    #[test]
    fn two_ranks_with_batch_b_match_one_process_with_batch_2b() {
        two_ranks_against_one_process(THREE_STEPS, None, &winograd_steps());
    }

    /// The same job with the data gradients by direct sums: the same arithmetic but for the
    /// order of the sums over the batch, even after 3 steps.
    #[test]
    fn two_ranks_with_direct_data_gradients_do_the_same_arithmetic() {
        two_ranks_against_one_process(THREE_STEPS, Some("direct"), &SAME_ARITHMETIC);
    }

    /// One step with the default (Winograd) data gradients: the same arithmetic but for the
    /// order of the sums over the batch (each image's gradients are the same bits).
    #[test]
    fn one_step_of_two_ranks_is_the_same_arithmetic() {
        two_ranks_against_one_process(ONE_STEP, None, &SAME_ARITHMETIC);
    }

    /// `job` by 2 ranks of batch 4 (1 thread each) and by 1 process of batch 8 (2 threads),
    /// with `SENET_CPU_DGRAD=dgrad` when given, compared within `tol`.
    fn two_ranks_against_one_process(job: Job, dgrad: Option<&str>, tol: &Tolerance) {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let recipe = small_job(tmp.path(), job);
        let one = tmp.path().join("one");
        let two = tmp.path().join("two");
        let env: Vec<(&str, &str)> = dgrad.map(|d| ("SENET_CPU_DGRAD", d)).into_iter().collect();
        one_process(&recipe, &one, &[], &env);
        let export = dgrad.map(|d| format!("SENET_CPU_DGRAD={d}"));
        let export_args: Vec<&str> = export.iter().flat_map(|e| ["-x", e.as_str()]).collect();
        let (out, secs) = mpirun_job(
            &mpirun,
            &export_args,
            &rank_args(&recipe, &two, &[]),
            Duration::from_secs(300),
        );
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        eprintln!("2-rank job: {:.1}s", secs.as_secs_f64());
        // Rank 0 alone reports and writes.
        assert_eq!(t.matches("Model: seresnet18").count(), 1, "{t}");
        assert!(t.contains("data parallel over 2 ranks (mpi)"), "{t}");
        assert!(t.contains("global batch 8"), "{t}");
        assert_equivalent(&one, &two, job, tol);
    }

    /// The same job on the emulated NPUs under mpirun: MPI carries the host collectives and
    /// HCCL's root info (`HcclGetRootInfo` on rank 0, `HcclCommInitRootInfo` everywhere); the
    /// gradients are all-reduced by HCCL in device buckets. Rank r drives NPU r (its local rank).
    #[test]
    fn mpirun_on_the_emulated_npu_uses_hccl_and_matches_one_process() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let recipe = small_job(tmp.path(), THREE_STEPS);
        let emu = emulator();
        let one = tmp.path().join("one");
        let two = tmp.path().join("two");
        one_process(
            &recipe,
            &one,
            &["--device", "ascend"],
            &[("SENET_CANN_LIB", emu.as_str())],
        );
        let export = format!("SENET_CANN_LIB={emu}");
        let (out, secs) = mpirun_job(
            &mpirun,
            &["-x", &export],
            &rank_args(&recipe, &two, &["--device", "ascend"]),
            Duration::from_secs(300),
        );
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        eprintln!("2-rank HCCL job: {:.1}s", secs.as_secs_f64());
        assert!(
            t.contains("data parallel over 2 ranks (mpi; gradients over hccl)"),
            "{t}"
        );
        assert!(t.contains("ascend:0"), "{t}");
        assert_equivalent(&one, &two, THREE_STEPS, &hf32_steps());
    }

    /// Two ranks told to use the same NPU (`--device_id 3` for every rank, as an exported
    /// `DEVICE_ID` would do) stop at once, saying which ranks share which device.
    #[test]
    fn two_ranks_on_one_npu_are_refused() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let recipe = small_job(tmp.path(), THREE_STEPS);
        let out_dir = tmp.path().join("out");
        let export = format!("SENET_CANN_LIB={}", emulator());
        let (out, _) = mpirun_job(
            &mpirun,
            &["-x", &export],
            &rank_args(
                &recipe,
                &out_dir,
                &["--device", "ascend", "--device_id", "3"],
            ),
            Duration::from_secs(120),
        );
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("ranks 0 and 1 both use device 3"), "{t}");
    }

    #[test]
    fn a_killed_rank_ends_the_job_within_60_seconds() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let data = extract_cifar10(tmp.path(), &["cifar10/train/*/000[0-3].jpg"]);
        // Long enough that rank 0 is still training when rank 1 dies at step 2.
        let recipe = write_recipe(tmp.path(), &data, 20);
        let (out, secs) = mpirun_job(
            &mpirun,
            &["-x", "SENET_TEST_ABORT_AT_STEP=2"],
            &[
                "train",
                "-c",
                recipe.to_str().unwrap(),
                "--val_while_train",
                "False",
                "--batch_size",
                "4",
                "--threads",
                "1",
                "--distribute",
                "--ckpt_save_dir",
                tmp.path().join("ck").to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        let t = text(&out);
        eprintln!("job ended after {:.1}s:\n{t}", secs.as_secs_f64());
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("SENET_TEST_ABORT_AT_STEP"), "{t}");
        // Rank 0 did not finish the 20 epochs.
        assert!(!t.contains("Finished at global step"), "{t}");
    }

    #[test]
    fn a_stuck_rank_ends_the_job_after_the_collective_timeout() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let data = extract_cifar10(tmp.path(), &["cifar10/train/*/000[0-3].jpg"]);
        let recipe = write_recipe(tmp.path(), &data, 20);
        let (out, secs) = mpirun_job(
            &mpirun,
            &[
                "-x",
                "SENET_TEST_HANG_AT_STEP=2",
                "-x",
                "SENET_DIST_TIMEOUT=3",
            ],
            &[
                "train",
                "-c",
                recipe.to_str().unwrap(),
                "--val_while_train",
                "False",
                "--batch_size",
                "4",
                "--threads",
                "1",
                "--distribute",
                "--ckpt_save_dir",
                tmp.path().join("ck").to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        let t = text(&out);
        eprintln!("job ended after {:.1}s", secs.as_secs_f64());
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("hanging (SENET_TEST_HANG_AT_STEP)"), "{t}");
        assert!(
            t.contains("senet rank 0 of 2: an all-reduce") && t.contains("more than 3 s"),
            "{t}"
        );
    }

    #[test]
    fn ranks_that_disagree_abort_the_job() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let data = extract_cifar10(tmp.path(), &["cifar10/train/*/000[0-3].jpg"]);
        let recipe = write_recipe(tmp.path(), &data, 1);
        let r = recipe.to_str().unwrap();
        let ck = tmp.path().join("ck");
        let ck = ck.to_str().unwrap();
        // MPMD: rank 1 gets another batch size, hence another number of steps per epoch.
        let common = [
            "train",
            "-c",
            r,
            "--val_while_train",
            "False",
            "--threads",
            "1",
            "--distribute",
            "--ckpt_save_dir",
            ck,
        ];
        let mut args: Vec<&str> = common.to_vec();
        args.extend(["--batch_size", "4", ":", "-n", "1", SENET]);
        args.extend(common);
        args.extend(["--batch_size", "2"]);
        // `-n 2` of mpirun_job would start two of the first program: MPMD needs -n 1 each.
        let mut c = Command::new(&mpirun);
        c.args(["--allow-run-as-root", "--oversubscribe", "-n", "1", SENET])
            .args(&args);
        let (out, _) = run_limited(c, Duration::from_secs(60));
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("disagree on the run"), "{t}");
        assert!(t.contains("aborting the job"), "{t}");
    }
}
