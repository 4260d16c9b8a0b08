//! [`Recipe::validate`]: value ranges and combinations the jobs rely on.
use super::{DeviceTarget, EraseValue, Recipe};
use crate::data::MAX_SIDE;
use crate::error::{Error, Result};
use crate::model::MAX_CLASSES;

/// The largest `batch_size` accepted (images per batch and rank).
pub const MAX_BATCH_SIZE: usize = 1 << 20;
/// The largest `epoch_size` accepted.
pub const MAX_EPOCHS: u32 = 1_000_000;

impl Recipe {
    /// Checks value ranges and combinations the jobs rely on; an [`Error::Config`] names the
    /// first offending key and its value.
    pub fn validate(&self) -> Result<()> {
        fn bad(key: &str, value: impl std::fmt::Debug, why: &str) -> Result<()> {
            Err(Error::Config(format!("key '{key}' = {value:?}: {why}")))
        }
        let prob = |x: f64| (0.0..=1.0).contains(&x);
        let range = |r: [f64; 2]| r[0] > 0.0 && r[0] <= r[1] && r.iter().all(|x| x.is_finite());
        if self.mode > 1 {
            return bad("mode", self.mode, "must be 0 (graph) or 1 (pynative)");
        }
        if !(self.crop_pct > 0.0 && self.crop_pct <= 1.0) {
            return bad("crop_pct", self.crop_pct, "must be in (0, 1]");
        }
        // Upper bounds are guards far above any real run, so that sizes computed from them
        // (images x pixels, epochs x steps) stay far from overflow.
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return bad(
                "batch_size",
                self.batch_size,
                &format!("must be between 1 and {MAX_BATCH_SIZE}"),
            );
        }
        if !(32..=MAX_SIDE).contains(&self.image_resize) {
            return bad(
                "image_resize",
                self.image_resize,
                &format!("must be between 32 and {MAX_SIDE} pixels"),
            );
        }
        if let Some(n) = self.num_classes.filter(|n| !(1..=MAX_CLASSES).contains(n)) {
            return bad(
                "num_classes",
                n,
                &format!("must be between 1 and {MAX_CLASSES}"),
            );
        }
        if self.epoch_size > MAX_EPOCHS {
            return bad(
                "epoch_size",
                self.epoch_size,
                &format!("must be at most {MAX_EPOCHS}"),
            );
        }
        if self.ckpt_save_dir.is_empty() {
            return bad(
                "ckpt_save_dir",
                &self.ckpt_save_dir,
                "must name a folder (\".\" for the current one)",
            );
        }
        if self.in_channels < 1 {
            return bad("in_channels", self.in_channels, "must be at least 1");
        }
        for (key, v) in [
            ("hflip", self.hflip),
            ("vflip", self.vflip),
            ("re_prob", self.re_prob),
            ("cutmix_prob", self.cutmix_prob),
            ("ema_decay", self.ema_decay),
        ] {
            if !prob(v) {
                return bad(key, v, "must be in [0, 1]");
            }
        }
        for (key, v) in [
            ("drop_rate", self.drop_rate),
            ("drop_path_rate", self.drop_path_rate),
        ] {
            if let Some(x) = v.filter(|x| !(0.0..1.0).contains(x)) {
                return bad(key, x, "must be in [0, 1)");
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("label_smoothing", self.label_smoothing, "must be in [0, 1)");
        }
        for (key, r) in [
            ("scale", self.scale),
            ("ratio", self.ratio),
            ("re_scale", self.re_scale),
            ("re_ratio", self.re_ratio),
        ] {
            if !range(r) {
                return bad(key, r, "must be [lo, hi] with 0 < lo <= hi");
            }
        }
        if self.mean.len() != self.in_channels {
            return bad("mean", &self.mean, "needs one value per input channel");
        }
        if self.std.len() != self.in_channels || self.std.iter().any(|s| s.is_nan() || *s <= 0.0) {
            return bad(
                "std",
                &self.std,
                "needs one positive value per input channel",
            );
        }
        if let EraseValue::Named(name) = &self.re_value {
            if name != "random" {
                return bad("re_value", name, "must be a number, a list or 'random'");
            }
        }
        for (key, v) in [
            ("mixup", self.mixup),
            ("cutmix", self.cutmix),
            ("lr", self.lr),
            ("min_lr", self.min_lr),
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
            ("warmup_factor", self.warmup_factor),
            ("clip_value", self.clip_value),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(key, v, "must be a finite number >= 0");
            }
        }
        if !(self.loss_scale > 0.0 && self.loss_scale.is_finite()) {
            return bad("loss_scale", self.loss_scale, "must be > 0");
        }
        for (key, v) in [
            ("epoch_size", self.epoch_size),
            ("val_interval", self.val_interval),
            ("ckpt_save_interval", self.ckpt_save_interval),
            (
                "gradient_accumulation_steps",
                self.gradient_accumulation_steps,
            ),
            ("num_cycles", self.num_cycles),
        ] {
            if v < 1 {
                return bad(key, v, "must be at least 1");
            }
        }
        if let Some(cj) = &self.color_jitter {
            if let Err(why) = cj.factors() {
                return Err(Error::Config(format!("key 'color_jitter' = {cj}: {why}")));
            }
        }
        self.check_implemented()
    }

    /// Values MindCV accepts that no senet job implements, refused by name rather than
    /// ignored: `dataset` `mnist`/`cifar10`/`cifar100` (MindCV's readers of those binary formats;
    /// senet reads image folders, which MindCV reads for `imagenet` or any other name),
    /// `dataset_download: True`, `device_target: GPU`.
    fn check_implemented(&self) -> Result<()> {
        fn refuse(key: &str, value: impl std::fmt::Display, why: &str) -> Result<()> {
            Err(Error::Config(format!(
                "key '{key}' = {value}: not supported by senet ({why})"
            )))
        }
        let dataset = self.dataset.to_ascii_lowercase();
        if ["mnist", "cifar10", "cifar100"].contains(&dataset.as_str()) {
            return refuse(
                "dataset",
                &self.dataset,
                "senet reads image folders <data_dir>/<split>/<class>/<image>: set dataset: \
                 imagenet and lay the images out that way",
            );
        }
        if self.dataset_download {
            return refuse(
                "dataset_download",
                true,
                "no downloads: lay the images out as <data_dir>/<split>/<class>/<image>",
            );
        }
        if self.device_target == Some(DeviceTarget::Gpu) {
            return refuse("device_target", "GPU", "it runs on Ascend or the CPU");
        }
        Ok(())
    }
}
