//! The training math, independent of the device: the network in training mode and its
//! update ([`TrainNet`]: forward keeping what the backward needs, the explicit backward, the
//! gradient all-reduce hook, `nn.Momentum` with weight decay, EMA), MindCV's learning-rate
//! schedules ([`lr_schedule`]), which parameters get weight decay ([`decays`]) and MindSpore's
//! loss-scale managers ([`LossScaler`]). The per-op gradients live on the
//! [`crate::backend::Backend`] trait; the training job (epochs, data, checkpoints) is
//! [`crate::engine::train`].
//!
//! Named after MindCV's `mindcv/optim` (the optimizer and its weight-decay groups) and
//! PyTorch's `torch.optim` (optimizers and learning-rate schedulers): everything here serves
//! the optimizer step.
mod decay;
mod loss_scale;
mod network;
mod schedule;

pub use decay::decays;
pub use loss_scale::{LossScaler, DYNAMIC_SCALE_FACTOR, DYNAMIC_SCALE_WINDOW};
pub use network::{npu_graph_from_env, StepStats, TrainConfig, TrainNet, NPU_GRAPH_ENV};
pub use schedule::lr_schedule;
