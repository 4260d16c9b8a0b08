//! Training curves from `metrics.jsonl` logs ([`super::train::log`]): loss and learning rate
//! against the global step, train and validation Top-1 / Top-5 against the epoch, as a PNG or
//! SVG picture (`senet plot`, and `curves.png` / `curves.svg` that `senet train` redraws in
//! `ckpt_save_dir` after every epoch). Drawn with `plotters` (bitmap and SVG backends); text in
//! Noto Sans (bundled by the `ttf-noto-sans` crate, Apache-2.0), so no system font is needed.
//!
//! One record per epoch: the loss is the epoch's mean training loss and the learning rate the
//! epoch's last, plotted at the global step the epoch ended on. Several logs: one curve each,
//! one colour per run.
use super::train::{EpochRecord, METRICS_FILE};
use crate::config::Recipe;
use crate::model::Arch;
use crate::{Error, Result};
use image::ImageEncoder as _;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// File names `senet train` draws in `ckpt_save_dir`.
pub const CURVES_PNG: &str = "curves.png";
/// See [`CURVES_PNG`].
pub const CURVES_SVG: &str = "curves.svg";
/// Default picture size in pixels (width, height).
pub const DEFAULT_SIZE: (u32, u32) = (1200, 800);
/// The largest side accepted, pixels.
pub const MAX_SIDE: u32 = 8192;
/// The smallest side accepted, pixels (room for four panels with their axes).
pub const MIN_SIDE: u32 = 320;

/// One run's log.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLog {
    /// The run's model and recipe in a line (from the recipe dump `<model>.yaml` beside the
    /// log, as `senet train` writes it), or the log's folder name when there is none.
    pub label: String,
    /// The epoch records, by global step; a resumed run's repeated epochs keep the later ones.
    pub records: Vec<EpochRecord>,
    /// The log file.
    pub path: PathBuf,
}

/// Reads `metrics.jsonl` at `path`: one JSON object per line (blank lines skipped).
/// Errors: [`Error::Io`] naming the file; [`Error::Format`] naming it and the line for a line
/// that is not an epoch record, or for a log without any.
pub fn read_log(path: &Path) -> Result<RunLog> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut records: Vec<EpochRecord> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: EpochRecord = serde_json::from_str(line).map_err(|e| {
            Error::format(path, format!("line {}: not an epoch record: {e}", i + 1))
        })?;
        // A run resumed from an earlier checkpoint logs those steps again: the later win.
        records.retain(|r| r.step < rec.step);
        records.push(rec);
    }
    if records.is_empty() {
        return Err(Error::format(path, "no epoch records (an empty log)"));
    }
    Ok(RunLog {
        label: run_label(path),
        records,
        path: path.to_path_buf(),
    })
}

/// "<model> on <data_dir's name> (<size> px): <opt> lr <lr> <scheduler>, batch <b>, <E>
/// epochs" from the recipe dump beside `log`, else the log's folder name.
fn run_label(log: &Path) -> String {
    let dir = log.parent().unwrap_or(Path::new("."));
    let recipe = Arch::ALL.iter().find_map(|a| {
        let dump = dir.join(format!("{}.yaml", a.name()));
        Recipe::from_yaml_file(&dump).ok()
    });
    match recipe {
        Some(r) => format!(
            "{} on {} ({} px): {} lr {} {}, batch {}, {} epochs",
            r.model,
            Path::new(&r.data_dir)
                .file_name()
                .map_or(r.dataset.clone(), |n| n.to_string_lossy().into_owned()),
            r.image_resize,
            r.opt.as_str(),
            r.lr,
            r.scheduler.as_str(),
            r.batch_size,
            r.epoch_size
        ),
        None => {
            let name = dir.file_name().unwrap_or(dir.as_os_str());
            name.to_string_lossy().into_owned()
        }
    }
}

/// One curve: a name, whether it is measured on the validation split, and its (x, y) points
/// (non-finite values left out).
struct Series {
    name: String,
    val: bool,
    points: Vec<(f64, f64)>,
}

/// A panel: axis names, where its legend goes (away from where its curves usually end), and
/// its curves.
struct Panel {
    x_desc: &'static str,
    y_desc: &'static str,
    /// Accuracies in percent (rising curves: legend at the lower right, y within 0..100)
    /// rather than a loss or rate.
    percent: bool,
    /// The x axis: every record's step or epoch, of every run (shared by the two panels of
    /// an axis kind).
    x_range: Range<f64>,
    series: Vec<(usize, Series)>,
}

/// The curve of `y` (None: not recorded) against `x`, when some value is recorded.
fn series(
    name: String,
    records: &[EpochRecord],
    x: impl Fn(&EpochRecord) -> f64,
    y: impl Fn(&EpochRecord) -> Option<f64>,
) -> Option<Series> {
    let points: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| y(r).map(|v| (x(r), v)))
        .filter(|(_, v)| v.is_finite())
        .collect();
    let val = name.contains("val ");
    (!points.is_empty()).then_some(Series { name, val, points })
}

/// The four panels of `runs`; curve names carry the run's number when there are several.
fn panels(runs: &[RunLog]) -> [Panel; 4] {
    let step = |r: &EpochRecord| r.step as f64;
    let epoch = |r: &EpochRecord| r.epoch as f64;
    let all = |x: &dyn Fn(&EpochRecord) -> f64| {
        padded(runs.iter().flat_map(|run| run.records.iter().map(x)))
    };
    let (steps, epochs) = (all(&step), all(&epoch));
    let mut out = [
        ("global step", "loss", false, &steps),
        ("global step", "learning rate", false, &steps),
        ("epoch", "Top-1 accuracy (%)", true, &epochs),
        ("epoch", "Top-5 accuracy (%)", true, &epochs),
    ]
    .map(|(x_desc, y_desc, percent, x_range)| Panel {
        x_desc,
        y_desc,
        percent,
        x_range: x_range.clone(),
        series: Vec::new(),
    });
    for (run_index, run) in runs.iter().enumerate() {
        let name = |what: &str| match runs.len() {
            1 => what.to_string(),
            _ => format!("run {}: {what}", run_index + 1),
        };
        let recs = &run.records;
        let curves = [
            (0, series(name("train loss"), recs, step, |r| Some(r.loss))),
            (0, series(name("val loss"), recs, step, |r| r.val_loss)),
            (1, series(name("learning rate"), recs, step, |r| Some(r.lr))),
            (
                2,
                series(name("train top-1"), recs, epoch, |r| Some(r.train_top1)),
            ),
            (2, series(name("val top-1"), recs, epoch, |r| r.val_top1)),
            (3, series(name("val top-5"), recs, epoch, |r| r.val_top5)),
        ];
        for (panel, s) in curves {
            if let Some(s) = s {
                out[panel].series.push((run_index, s));
            }
        }
    }
    out
}

/// The least and greatest of `values` (None when there is none).
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |b, v| match b {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// `lo..hi` padded by 5% (a single value by 5% of itself, or 1 for 0); 0..1 for no value.
fn padded(values: impl Iterator<Item = f64>) -> Range<f64> {
    let Some((lo, hi)) = bounds(values) else {
        return 0.0..1.0;
    };
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else if lo == 0.0 {
        1.0
    } else {
        lo.abs() * 0.05
    };
    (lo - pad)..(hi + pad)
}

/// A tick label: integers as integers, small or large values in scientific notation, others
/// with at most 4 decimals.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if v.fract() == 0.0 && a < 1e7 {
        format!("{v:.0}")
    } else if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else {
        let t = format!("{v:.4}");
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Distinct hues, one per run (then repeated).
const HUES: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// The colour of run `run`'s curves: its hue, lightened for validation curves.
fn colour(run: usize, val: bool) -> RGBColor {
    let RGBColor(r, g, b) = HUES[run % HUES.len()];
    let light = |c: u8| if val { c + (255 - c) / 2 } else { c };
    RGBColor(light(r), light(g), light(b))
}

type DrawResult<T, DB> =
    std::result::Result<T, DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> DrawResult<(), DB> {
    let values = || {
        p.series
            .iter()
            .flat_map(|(_, s)| s.points.iter().map(|q| q.1))
    };
    let mut ys = padded(values());
    if let (true, Some((lo, hi))) = (p.percent, bounds(values())) {
        // Padding stops at 0% and 100%, unless a value lies beyond.
        ys = ys.start.max(0.0).min(lo)..ys.end.min(100.0).max(hi);
    }
    let xs = p.x_range.clone();
    // Whole epochs on the epoch axis: at most one label per epoch.
    let x_labels = match p.x_desc {
        "epoch" => ((xs.end - xs.start) as usize + 1).clamp(2, 10),
        _ => 10,
    };
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(xs, ys)?;
    chart
        .configure_mesh()
        .x_desc(p.x_desc)
        .y_desc(p.y_desc)
        .x_labels(x_labels)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    for (run, s) in &p.series {
        let c = colour(*run, s.val);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))?
            .label(s.name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 16, y + 4)], c.filled()));
        // Markers show single points too: circles for training, triangles for validation.
        if s.val {
            chart.draw_series(
                s.points
                    .iter()
                    .map(|&q| TriangleMarker::new(q, 5, c.filled())),
            )?;
        } else {
            chart.draw_series(s.points.iter().map(|&q| Circle::new(q, 3, c.filled())))?;
        }
    }
    if !p.series.is_empty() {
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .position(if p.percent {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            })
            .draw()?;
    }
    Ok(())
}

fn draw_all<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[RunLog],
) -> DrawResult<(), DB> {
    root.fill(&WHITE)?;
    // The title: the run's model and recipe; for several runs one line each, in its colour.
    let lines: Vec<(String, RGBColor)> = match runs {
        [one] => vec![(one.label.clone(), BLACK)],
        _ => runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let text = format!("run {}: {} [{}]", i + 1, r.label, r.path.display());
                (text, colour(i, false))
            })
            .collect(),
    };
    let (top, body) = root.split_vertically(20 + 26 * lines.len() as u32);
    for (i, (text, c)) in lines.into_iter().enumerate() {
        let style = ("sans-serif", 20).into_font().color(&c);
        top.draw(&Text::new(text, (16, 10 + 26 * i as i32), style))?;
    }
    let panels = panels(runs);
    for (area, panel) in body.split_evenly((2, 2)).iter().zip(&panels) {
        draw_panel(area, panel)?;
    }
    root.present()
}

/// Registers the bundled font under "sans-serif" (once).
fn register_font() -> Result<()> {
    static FONT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *FONT.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, ttf_noto_sans::REGULAR)
            .is_ok()
    });
    ok.then_some(())
        .ok_or_else(|| Error::Invalid("the bundled Noto Sans font cannot be parsed".into()))
}

/// Picture formats, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.png`: RGB, 8 bits.
    Png,
    /// `.svg`.
    Svg,
}

impl Format {
    /// The format of `path` from its extension. Errors: [`Error::Invalid`] naming it otherwise.
    pub fn of(path: &Path) -> Result<Format> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
        {
            Some(e) if e == "png" => Ok(Format::Png),
            Some(e) if e == "svg" => Ok(Format::Svg),
            _ => Err(Error::Invalid(format!(
                "{}: the picture must be a .png or .svg file",
                path.display()
            ))),
        }
    }
}

/// Draws `runs` (at least one) into `out` (`.png` or `.svg`, by extension), `size` = (width,
/// height) pixels, each within [`MIN_SIDE`]..=[`MAX_SIDE`]; atomic (temporary file, then rename).
/// Errors: [`Error::Config`] for another extension, no run or a size out of range; [`Error::Io`]
/// naming the file; [`Error::Invalid`] when drawing fails.
pub fn draw(runs: &[RunLog], out: &Path, size: (u32, u32)) -> Result<()> {
    let format = Format::of(out)?;
    if runs.is_empty() {
        return Err(Error::Config("no training log to draw".into()));
    }
    let (w, h) = size;
    if !(MIN_SIDE..=MAX_SIDE).contains(&w) || !(MIN_SIDE..=MAX_SIDE).contains(&h) {
        return Err(Error::Config(format!(
            "picture size {w}x{h}: each side must be {MIN_SIDE} to {MAX_SIDE} pixels"
        )));
    }
    register_font()?;
    let failed = |e: String| Error::Invalid(format!("drawing {}: {e}", out.display()));
    let bytes = match format {
        Format::Svg => {
            let mut svg = String::new();
            draw_all(
                SVGBackend::with_string(&mut svg, size).into_drawing_area(),
                runs,
            )
            .map_err(|e| failed(e.to_string()))?;
            svg.into_bytes()
        }
        Format::Png => {
            let mut rgb = vec![255u8; w as usize * h as usize * 3];
            draw_all(
                BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area(),
                runs,
            )
            .map_err(|e| failed(e.to_string()))?;
            let mut png = Vec::new();
            image::codecs::png::PngEncoder::new(&mut png)
                .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
                .map_err(|e| failed(e.to_string()))?;
            png
        }
    };
    crate::fsutil::write_atomic(out, &bytes)
}

/// What `senet train` calls after each epoch (rank 0): redraws `curves.png` and `curves.svg`
/// in `save_dir` from its `metrics.jsonl`, at [`DEFAULT_SIZE`]. Returns the two paths.
/// Errors: as [`read_log`] and [`draw`].
pub fn redraw_run(save_dir: &Path) -> Result<[PathBuf; 2]> {
    let run = read_log(&save_dir.join(METRICS_FILE))?;
    let paths = [save_dir.join(CURVES_PNG), save_dir.join(CURVES_SVG)];
    for p in &paths {
        draw(std::slice::from_ref(&run), p, DEFAULT_SIZE)?;
    }
    Ok(paths)
}
