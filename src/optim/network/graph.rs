//! A training step whose figures stay on the device, captured once and replayed
//! ([`TrainNet::step_staged`]): torch_npu's "NPU graph" for senet's step, on CANN's
//! `aclmdlRICapture*` (see [`Backend::capture_begin`] and `docs/npu-performance.md` §6.4).
//!
//! The step reads nothing back unless asked: its inputs (the images and the smoothed one-hot
//! targets, built on the host) go into fixed device buffers with one asynchronous copy from
//! pinned memory before the step, and the per-row losses and logits stay in a fixed device
//! buffer, copied to the host only when the caller reads them (a logged step). With nothing
//! host-side inside, the step can be captured: the first step of a shape runs op by op (the
//! warm-up: activations, fp16 weight copies, workspaces come from the cache), the next one
//! with the same shape and learning rate is captured and replayed, and later ones replay.
//!
//! What a replay cannot change is what the capture froze: the learning rate (a host value of
//! the optimizer's launch), the batch shape (the buffers' addresses and sizes), the loss
//! scale. So a step at another learning rate or of another shape (the short last batch) runs
//! op by op and drops the graph; a graph is recaptured once two consecutive steps agree
//! again. Recipes whose step needs host values every step (an overflow-checking loss scale,
//! gradient clipping, EMA) never capture, and the first refusal of the device (a
//! first-generation 910, CANN 8.0, a capture the runtime invalidated) turns capture off for
//! the network; each reason is reported once ([`TrainNet::take_graph_notes`]).
use super::{targets_at, StepStats, TrainNet};
use crate::backend::{Backend, CrossEntropyParams, Shape4};
use crate::{Error, Result, Tensor};

/// The environment variable that turns the captured step off (`0`) or on (`1`, the default
/// where a trainer or `senet bench` asks for it), named after torch_npu's NPU graphs.
pub const NPU_GRAPH_ENV: &str = "SENET_NPU_GRAPH";

/// `SENET_NPU_GRAPH`: unset or `1` on, `0` off. Errors: any other value, naming it.
pub fn npu_graph_from_env() -> Result<bool> {
    match std::env::var(NPU_GRAPH_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(true),
        Ok(v) if v == "1" => Ok(true),
        Ok(v) if v == "0" => Ok(false),
        Ok(v) => Err(Error::Config(format!(
            "{NPU_GRAPH_ENV}={v}: expected 0 (run each step op by op) or 1 (capture the step)"
        ))),
        Err(e) => Err(Error::Config(format!("{NPU_GRAPH_ENV}: {e}"))),
    }
}

/// What identifies a captured step: the input shape and the learning rate's bits (0 when the
/// learning rate is device data: [`StepGraph::device_lr`]).
type StepKey = (Shape4, u32);

/// Why a step ran op by op instead of replaying (each reported once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fallback {
    /// None: the step was captured (reported once too).
    None,
    /// The recipe needs host values every step.
    Recipe,
    /// The device refused a capture (kept: capture stays off).
    Refused,
    /// The learning rate changed between steps.
    LearningRate,
    /// A batch of another shape.
    Shape,
}

/// The captured step's state.
#[derive(Default)]
pub(super) struct StepGraph {
    /// The switch ([`TrainNet::set_step_graph`]).
    on: bool,
    /// The update reads the learning rate from device memory, set before each step
    /// ([`Backend::set_device_lr`], [`Backend::stage_lr`]): a replayed graph then follows a
    /// schedule that moves every step. Off where the backend has no such update (the
    /// first-generation 910) or capture was refused (the eager update takes fewer launches).
    device_lr: bool,
    /// The device refused a capture: why.
    refused: Option<String>,
    /// The live graph's step.
    live: Option<StepKey>,
    /// The previous staged step's.
    prev: Option<StepKey>,
    /// Fallbacks already reported.
    reported: Vec<Fallback>,
    /// Notes not yet taken.
    notes: Vec<String>,
}

impl<B: Backend> TrainNet<B> {
    /// Turns the captured step of [`TrainNet::step_staged`] on or off (default off; turning
    /// it off destroys a live graph). Errors: the graph's destruction.
    pub fn set_step_graph(&mut self, on: bool) -> Result<()> {
        self.graph.on = on;
        if !on {
            self.drop_graph()?;
        }
        self.set_lr_on_device(on)
    }

    /// Whether the update reads the learning rate from device memory (so that a captured step
    /// serves every learning rate): on with the step graph where the backend can.
    pub fn lr_on_device(&self) -> bool {
        self.graph.device_lr
    }

    /// Turns device-lr mode on (where the backend refuses it, e.g. a first-generation 910,
    /// it stays off: the learning rate is then part of the captured step's key) or off.
    fn set_lr_on_device(&mut self, on: bool) -> Result<()> {
        if on == self.graph.device_lr {
            return Ok(());
        }
        match self.backend.set_device_lr(on) {
            Ok(()) => self.graph.device_lr = on,
            Err(e) if on => {
                self.note(
                    Fallback::LearningRate,
                    &format!("the learning rate stays an argument ({e}): a step replays only at the captured learning rate"),
                );
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Whether the backend keeps a step's loss on the device ([`Backend::loss_on_device`]), so
    /// that [`TrainNet::step_staged`] stages and may capture the step.
    pub fn loss_on_device(&self) -> bool {
        self.backend.loss_on_device()
    }

    /// Whether the last [`TrainNet::step_staged`] replayed a captured graph.
    pub fn replaying(&self) -> bool {
        self.graph.live.is_some() && self.graph.live == self.graph.prev
    }

    /// Why steps ran op by op with the step graph on, each reason once, and the first
    /// capture, since the last call (for the run's log).
    pub fn take_graph_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.graph.notes)
    }

    /// One training step ([`TrainNet::step`]'s arithmetic, bit for bit) whose loss and top-1
    /// hits are read back only when `read`: returns them then (one synchronise and one
    /// copy), None otherwise. On a backend that keeps the loss on the device
    /// ([`Backend::loss_on_device`]) the step queues no synchronise, blocking copy or
    /// allocation in steady state; with the step graph on ([`TrainNet::set_step_graph`]) it
    /// is captured and replayed as the module doc says. With an overflow-checking loss scale
    /// (which must read the gradients every step) or on the CPU it is [`TrainNet::step`], and
    /// returns the figures whatever `read`.
    /// Errors: as [`TrainNet::step`].
    pub fn step_staged(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        lr: f32,
        read: bool,
    ) -> Result<Option<StepStats>> {
        if !self.backend.loss_on_device() || self.scaler.checks_overflow() {
            if self.graph.on && self.scaler.checks_overflow() {
                self.note(Fallback::Recipe, "the loss scale checks overflow every step (its skip decision is read by the host)");
            }
            return self.step(x, labels, lr).map(Some);
        }
        let xs = self.check_batch(x, labels)?;
        let key = (
            xs,
            if self.graph.device_lr {
                0
            } else {
                lr.to_bits()
            },
        );
        if let Some(live) = self.graph.live.filter(|&k| k != key) {
            if live.0 != xs {
                self.note(Fallback::Shape, &format!("a batch of shape {xs:?} differs from the captured {:?} (each shape change runs op by op and recaptures)", live.0));
            } else {
                self.note(Fallback::LearningRate, "the learning rate changed since the capture: a replay would use the captured one (capture resumes once two steps share a learning rate)");
            }
            self.drop_graph()?;
        }
        self.ensure_acts(xs)?;
        let head = self.stage(x, labels)?;
        if self.graph.device_lr {
            self.backend.stage_lr(lr, self.cfg.momentum)?;
        }
        if self.graph.live == Some(key) {
            self.backend.graph_replay()?;
        } else if self.capture_wanted(key) {
            self.capture(head, lr, key)?;
        } else {
            self.device_step(head, lr)?;
        }
        self.graph.prev = Some(key);
        if !read {
            return Ok(None);
        }
        let a = self.acts.as_ref().expect("allocated");
        let mut host = vec![0f32; head.on_device_layout().1];
        self.backend.download(&a.readback, &mut host)?;
        let (loss, correct) = head.read_on_device(&host, labels)?;
        Ok(Some(StepStats {
            loss,
            correct,
            overflow: false,
        }))
    }

    /// Destroys the captured graph, if any.
    pub(super) fn drop_graph(&mut self) -> Result<()> {
        self.graph.live = None;
        self.backend.graph_destroy()
    }

    /// Whether this step is to be captured: the switch on, the device not refusing, a recipe
    /// without per-step host values, and the previous step of the same shape and learning rate
    /// (the warm-up). Notes why not.
    fn capture_wanted(&mut self, key: StepKey) -> bool {
        if !self.graph.on || self.graph.refused.is_some() {
            return false;
        }
        if self.cfg.clip_value.is_some() || self.cfg.ema_decay.is_some() {
            self.note(Fallback::Recipe, "gradient clipping and EMA compute per-step host values (the global norm, the EMA decay)");
            return false;
        }
        self.graph.prev == Some(key)
    }

    /// Writes the images and the smoothed targets into the input buffer (one asynchronous
    /// upload) and returns the loss's parameters.
    fn stage(&mut self, x: &Tensor, labels: &[usize]) -> Result<CrossEntropyParams> {
        let a = self.acts.as_mut().expect("allocated");
        let xs = a.input_shape;
        let head = CrossEntropyParams {
            n: xs.n,
            classes: self.num_classes,
            label_smoothing: self.cfg.label_smoothing,
            scale: self.scaler.scale(),
        };
        let at = targets_at(xs);
        let mut host = Vec::new();
        host.try_reserve_exact(at + xs.n * self.num_classes)
            .map_err(|_| Error::Invalid("out of host memory staging a batch".into()))?;
        host.extend_from_slice(&x.data);
        host.resize(at, 0.0);
        host.extend(head.smoothed_targets(labels));
        self.backend.write(&mut a.input, &host)?;
        Ok(head)
    }

    /// The step on the device, from the staged inputs: forward, loss (left on the device),
    /// backward, update at `lr`.
    fn device_step(&mut self, head: CrossEntropyParams, lr: f32) -> Result<()> {
        self.forward(None)?;
        {
            let be = &self.backend;
            let a = self.acts.as_mut().expect("allocated");
            let at = targets_at(a.input_shape);
            let [dlogits, _, _] = &mut a.g_small;
            be.softmax_cross_entropy_on_device(
                head,
                &a.logits,
                (&a.input, at),
                dlogits,
                &mut a.readback,
            )?;
        }
        self.backward(None)?;
        self.apply_momentum(lr)
    }

    /// Captures [`TrainNet::device_step`] and replays it. When the device refuses or the
    /// capture fails, capture is turned off for this network (noted) and the step runs op by
    /// op: nothing recorded ran.
    fn capture(&mut self, head: CrossEntropyParams, lr: f32, key: StepKey) -> Result<()> {
        match self.try_capture(head, lr) {
            Ok(()) => {
                self.graph.live = Some(key);
                if !self.graph.reported.contains(&Fallback::None) {
                    self.graph.reported.push(Fallback::None);
                    self.graph.notes.push(format!(
                        "NPU graph: the training step ({:?}) is captured and replayed",
                        key.0
                    ));
                }
                self.backend.graph_replay()
            }
            Err(e) => {
                self.graph.refused = Some(e.to_string());
                self.note(
                    Fallback::Refused,
                    &format!("the step could not be captured ({e})"),
                );
                self.drop_graph()?;
                if self.graph.device_lr {
                    // Op by op from now on: the fused update (the staged learning rate is
                    // this step's, so either update may run it).
                    self.set_lr_on_device(false)?;
                }
                self.device_step(head, lr)
            }
        }
    }

    fn try_capture(&mut self, head: CrossEntropyParams, lr: f32) -> Result<()> {
        self.backend.capture_begin()?;
        let step = self.device_step(head, lr);
        let end = self.backend.capture_end();
        step.and(end)
    }

    /// Records a fallback reason, once per kind.
    fn note(&mut self, why: Fallback, text: &str) {
        if !self.graph.on || self.graph.reported.contains(&why) {
            return;
        }
        self.graph.reported.push(why);
        self.graph
            .notes
            .push(format!("NPU graph: running steps op by op: {text}"));
    }
}
