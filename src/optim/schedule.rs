//! MindCV's per-step learning-rate schedules (`mindcv/scheduler/scheduler_factory.py`
//! `create_scheduler` and the list builders of `dynamic_lr.py`), as one pure function of the
//! recipe. MindCV builds a Python list of floats (f64) and MindSpore's optimizer stores it as an
//! f32 tensor indexed by the global step; this does the same arithmetic in f64 (same `cos`/`pow`
//! from the C library) and rounds each value to f32.
//!
//! The list is a warmup phase followed by the main phase:
//! - warmup (if `warmup_epochs > 0`), `warmup_epochs * steps_per_epoch` steps: linear from
//!   `lr * warmup_factor` to `lr`, `lr_i = start + min(e, W)/W * (lr - start)` with
//!   `e = i / steps_per_epoch` (per step) or `floor(i / steps_per_epoch)` (`lr_epoch_stair`);
//! - main phase over `num_epochs - warmup_epochs` epochs (`i` restarts at 0, `e` as above):
//!   - `constant`: `lr`;
//!   - `cosine_decay` / `warmup_cosine_decay` (identical in MindCV): `num_cycles` cycles of
//!     `decay_epochs` epochs, cycle `c` peaking at `lr * cycle_decay^c`:
//!     `min_lr + 0.5*(peak - min_lr)*(1 + cos(pi * min(e, D) / D))`; the list is cut at the
//!     phase's length or padded with `min_lr`;
//!   - `exponential_decay`: `lr * decay_rate^e`;
//!   - `polynomial_decay`: `lr * (1 - min(e, T)/T)^decay_rate`, `T` = the main phase's epochs
//!     (MindCV ignores `min_lr` here);
//!   - `step_decay`: `lr * decay_rate^floor(floor(e) / decay_epochs)` (always per epoch);
//!   - `multi_step_decay`: `lr * decay_rate^k`, `k` = milestones `<= floor(e)` (always per
//!     epoch; milestones count from the end of warmup, as in MindCV).
use std::f64::consts::PI;

use crate::config::{Recipe, Scheduler};
use crate::error::{Error, Result};

/// The learning rate of every optimizer step, `lr[step]`, for a run of `num_epochs` epochs of
/// `steps_per_epoch` steps, from the recipe's `scheduler`, `lr`, `min_lr`, `warmup_epochs`,
/// `warmup_factor`, `decay_epochs`, `decay_rate`, `multi_step_decay_milestones`,
/// `lr_epoch_stair`, `num_cycles` and `cycle_decay` (see the module docs for the formulas).
///
/// Length: `max(num_epochs, warmup_epochs) * steps_per_epoch` (as MindCV: a warmup longer
/// than the run is kept whole). MindCV's train.py passes `num_epochs = epoch_size` and
/// `steps_per_epoch` = batches per epoch of one device.
///
/// Errors ([`Error::Config`]): a scheduler MindCV's `create_scheduler` rejects (`one_cycle`,
/// `cyclic`: "Invalid scheduler"), `step_decay` with `decay_epochs: 0` (a division by zero in
/// MindCV).
pub fn lr_schedule(recipe: &Recipe, steps_per_epoch: usize, num_epochs: usize) -> Result<Vec<f32>> {
    let spe = steps_per_epoch;
    let lr = recipe.lr;
    let warmup = recipe.warmup_epochs as usize;
    let stair = recipe.lr_epoch_stair;
    // Epoch position of step i: fractional (per-step) or floored (lr_epoch_stair).
    let epoch = |i: usize, stair: bool| {
        let e = i as f64 / spe as f64;
        if stair {
            e.floor()
        } else {
            e
        }
    };

    let mut out: Vec<f64> = Vec::with_capacity(num_epochs.max(warmup) * spe);
    if warmup > 0 {
        let start = lr * recipe.warmup_factor;
        let end = lr;
        let w = warmup as f64;
        out.extend((0..warmup * spe).map(|i| start + epoch(i, stair).min(w) / w * (end - start)));
    }

    let main = num_epochs.saturating_sub(warmup);
    let steps = main * spe;
    let rate = recipe.decay_rate;
    match recipe.scheduler {
        Scheduler::Constant => out.extend(std::iter::repeat_n(lr, steps)),
        Scheduler::CosineDecay | Scheduler::WarmupCosineDecay => {
            let d = recipe.decay_epochs as usize;
            let cycles = recipe.num_cycles as usize;
            let first = out.len();
            'cycles: for c in 0..cycles {
                let peak = lr * recipe.cycle_decay.powf(c as f64);
                let delta = 0.5 * (peak - recipe.min_lr);
                for i in 0..spe * d {
                    if out.len() - first >= steps {
                        break 'cycles;
                    }
                    let t = epoch(i, stair).min(d as f64);
                    out.push(recipe.min_lr + delta * (1.0 + (PI * t / d as f64).cos()));
                }
            }
            if main > cycles * d {
                out.extend(std::iter::repeat_n(
                    recipe.min_lr,
                    (main - cycles * d) * spe,
                ));
            }
        }
        Scheduler::ExponentialDecay => {
            out.extend((0..steps).map(|i| lr * rate.powf(epoch(i, stair))));
        }
        Scheduler::PolynomialDecay => {
            let t = main as f64;
            out.extend((0..steps).map(|i| lr * (1.0 - epoch(i, stair).min(t) / t).powf(rate)));
        }
        Scheduler::StepDecay => {
            let d = recipe.decay_epochs;
            if d == 0 && steps > 0 {
                return Err(Error::Config(
                    "scheduler 'step_decay' needs decay_epochs >= 1 (MindCV divides by it)".into(),
                ));
            }
            out.extend((0..steps).map(|i| {
                let e = epoch(i, true);
                lr * rate.powf((e / d as f64).floor())
            }));
        }
        Scheduler::MultiStepDecay => {
            let mut milestones = recipe.multi_step_decay_milestones.clone();
            milestones.sort_unstable();
            out.extend((0..steps).map(|i| {
                let e = epoch(i, true);
                let passed = milestones.iter().filter(|&&m| m as f64 <= e).count();
                lr * rate.powf(passed as f64)
            }));
        }
        other @ (Scheduler::OneCycle | Scheduler::Cyclic) => {
            return Err(Error::Config(format!(
                "scheduler '{other}' is not supported: MindCV's create_scheduler accepts only \
                 constant, cosine_decay, warmup_cosine_decay, exponential_decay, \
                 polynomial_decay, step_decay and multi_step_decay (Invalid scheduler)"
            )));
        }
    }
    Ok(out.into_iter().map(|v| v as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_schedule_lengths() {
        let mut r = Recipe::builtin("seresnet18").unwrap();
        assert_eq!(lr_schedule(&r, 7, 150).unwrap().len(), 1050);
        r.warmup_epochs = 3;
        assert_eq!(lr_schedule(&r, 7, 10).unwrap().len(), 70);
        assert_eq!(lr_schedule(&r, 7, 2).unwrap().len(), 21);
        r.scheduler = Scheduler::OneCycle;
        let e = lr_schedule(&r, 7, 10).unwrap_err().to_string();
        assert!(e.contains("one_cycle"), "{e}");
    }
}
