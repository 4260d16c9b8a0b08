//! Training curves (`senet plot`, `curves.png` / `curves.svg` of `senet train`) drawn from
//! synthetic `metrics.jsonl` logs: the pictures' size, their curves and axes, and the errors.
use std::path::{Path, PathBuf};
use std::process::Command;

use senet::config::Recipe;
use senet::engine::curves::{self, RunLog};
use senet::engine::train::EpochRecord;

/// An epoch record: loss falling, accuracy rising; validated when `val`.
fn record(epoch: u64, val: bool) -> EpochRecord {
    let e = epoch as f64;
    EpochRecord {
        epoch,
        step: 50 * epoch,
        loss: 2.0 / e,
        lr: 0.1 / e,
        train_top1: 10.0 * e,
        val_top1: val.then_some(9.0 * e),
        val_top5: val.then_some(20.0 * e),
        val_loss: val.then_some(2.2 / e),
        seconds: 10.0,
        images_per_second: 100.0,
    }
}

/// `dir/metrics.jsonl` of `records`, and the recipe dump `seresnet18.yaml` as `senet train`
/// writes it (unless `recipe` is false).
fn write_run(dir: &Path, records: &[EpochRecord], recipe: bool) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    if recipe {
        let r = Recipe::from_yaml_str(
            "model: seresnet18\ndata_dir: /data/cifar10\nimage_resize: 64\nlr: 0.1\n\
             opt: momentum\nscheduler: warmup_cosine_decay\nbatch_size: 64\nepoch_size: 3\n",
        )
        .unwrap();
        std::fs::write(dir.join("seresnet18.yaml"), r.to_yaml()).unwrap();
    }
    let lines: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let path = dir.join("metrics.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// The curves of an SVG: `senet`'s curves are the only 2-pixel polylines (the mesh is 1 pixel).
fn curve_count(svg: &str) -> usize {
    svg.split("<polyline")
        .skip(1)
        .filter(|p| p[..p.find("/>").unwrap()].contains("stroke-width=\"2\""))
        .count()
}

/// The texts of an SVG, trimmed.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let body = &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()];
            body.trim().to_string()
        })
        .collect()
}

#[test]
fn svg_has_every_curve_labelled_axes_and_the_run_in_the_title() {
    let dir = tempfile::tempdir().unwrap();
    let recs = [record(1, false), record(2, true), record(3, true)];
    let log = write_run(&dir.path().join("a"), &recs, true);
    let run = curves::read_log(&log).unwrap();
    assert_eq!(
        run.label,
        "seresnet18 on cifar10 (64 px): momentum lr 0.1 warmup_cosine_decay, batch 64, 3 epochs"
    );
    let out = dir.path().join("one.svg");
    curves::draw(std::slice::from_ref(&run), &out, (900, 600)).unwrap();
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(
        svg.starts_with("<svg width=\"900\" height=\"600\""),
        "{}",
        &svg[..80]
    );
    // train loss, val loss, learning rate, train top-1, val top-1, val top-5.
    assert_eq!(curve_count(&svg), 6);
    let t = texts(&svg);
    assert_eq!(t[0], run.label);
    for axis in [
        "global step",
        "epoch",
        "loss",
        "learning rate",
        "Top-1 accuracy (%)",
        "Top-5 accuracy (%)",
    ] {
        assert!(t.iter().any(|x| x == axis), "no axis label {axis:?}");
    }
    for legend in [
        "train loss",
        "val loss",
        "train top-1",
        "val top-1",
        "val top-5",
    ] {
        assert!(t.iter().any(|x| x == legend), "no legend {legend:?}");
    }

    // A second run without validation and without a recipe dump: its three curves join, and
    // each run is a title line.
    let log_b = write_run(
        &dir.path().join("b"),
        &[record(1, false), record(2, false)],
        false,
    );
    let runs = [run, curves::read_log(&log_b).unwrap()];
    let out = dir.path().join("two.svg");
    curves::draw(&runs, &out, (1000, 700)).unwrap();
    let svg = std::fs::read_to_string(&out).unwrap();
    assert_eq!(curve_count(&svg), 9);
    let t = texts(&svg);
    assert!(t[0].starts_with("run 1: seresnet18 on cifar10"), "{}", t[0]);
    assert_eq!(t[1], format!("run 2: b [{}]", log_b.display()));
    assert!(t.iter().any(|x| x == "run 2: train top-1"));
}

#[test]
fn png_has_the_asked_size_and_the_curves() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_run(dir.path(), &[record(1, true), record(2, true)], true);
    let out = dir.path().join("curves.png");
    curves::draw(&[curves::read_log(&log).unwrap()], &out, (640, 480)).unwrap();
    let img = image::open(&out).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (640, 480));
    // The first run's training curves are drawn in its hue (31, 119, 180).
    let hue = img.pixels().filter(|p| p.0 == [31, 119, 180]).count();
    assert!(hue > 200, "{hue} pixels of the run's colour");
}

#[test]
fn train_redraw_writes_both_pictures_atomically() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &[record(1, true)], true);
    let paths = curves::redraw_run(dir.path()).unwrap();
    assert_eq!(paths[0], dir.path().join("curves.png"));
    assert_eq!(paths[1], dir.path().join("curves.svg"));
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // No temporary file left behind.
    assert_eq!(
        names,
        [
            "curves.png",
            "curves.svg",
            "metrics.jsonl",
            "seresnet18.yaml"
        ]
    );
    let (w, h) = curves::DEFAULT_SIZE;
    assert_eq!(image::image_dimensions(&paths[0]).unwrap(), (w, h));
}

#[test]
fn a_resumed_run_keeps_the_later_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut again = record(2, true);
    again.loss = 0.5;
    let recs = [
        record(1, false),
        record(2, false),
        record(3, false),
        again,
        record(3, true),
    ];
    let run = curves::read_log(&write_run(dir.path(), &recs, false)).unwrap();
    let steps: Vec<u64> = run.records.iter().map(|r| r.step).collect();
    assert_eq!(steps, [50, 100, 150]);
    assert_eq!(run.records[1].loss, 0.5);
    assert_eq!(run.records[2].val_top1, Some(27.0));
}

#[test]
fn bad_logs_and_requests_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = |p: &Path| curves::read_log(p).unwrap_err().to_string();
    let missing = dir.path().join("none.jsonl");
    assert!(err(&missing).contains(&*missing.to_string_lossy()));
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let e = err(&empty);
    assert!(
        e.contains(&*empty.to_string_lossy()) && e.contains("no epoch records"),
        "{e}"
    );
    let bad = dir.path().join("bad.jsonl");
    let good = serde_json::to_string(&record(1, false)).unwrap();
    std::fs::write(&bad, format!("{good}\n{{\"epoch\": 2, \"loss\": \n")).unwrap();
    let e = err(&bad);
    assert!(
        e.contains(&*bad.to_string_lossy()) && e.contains("line 2"),
        "{e}"
    );

    let run: RunLog = curves::read_log(&write_run(dir.path(), &[record(1, false)], false)).unwrap();
    let runs = std::slice::from_ref(&run);
    let e = curves::draw(runs, &dir.path().join("x.jpg"), (800, 600)).unwrap_err();
    let e = e.to_string();
    assert!(
        e.starts_with(&*dir.path().join("x.jpg").to_string_lossy()),
        "{e}"
    );
    assert!(e.contains("the picture must be a .png or .svg file"), "{e}");
    let e = curves::draw(runs, &dir.path().join("x.png"), (800, 100_000)).unwrap_err();
    assert!(e.to_string().contains("800x100000"), "{e}");
    assert!(curves::draw(&[], &dir.path().join("x.svg"), (800, 600)).is_err());
}

#[test]
fn senet_plot_draws_and_reports_the_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_run(&dir.path().join("a"), &[record(1, true)], true);
    let out = dir.path().join("a.svg");
    let run = |args: &[&Path]| {
        Command::new(env!("CARGO_BIN_EXE_senet"))
            .arg("plot")
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&[&a, Path::new("-o"), &out]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("seresnet18 on cifar10"));
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "not json\n").unwrap();
    let o = run(&[&a, &bad, Path::new("-o"), &out]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("bad.jsonl: line 1"),
        "{e}"
    );
}
