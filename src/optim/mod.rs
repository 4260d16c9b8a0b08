//! Training-side logic that is independent of the device: MindCV's learning-rate schedules
//! ([`lr_schedule`]) and which parameters get weight decay ([`decays`]). The per-op gradients
//! live on the [`crate::backend::Backend`] trait.
mod decay;
pub mod loss_scale;
pub mod metrics;
pub mod network;
mod schedule;

pub use decay::decays;
pub use loss_scale::LossScaler;
pub use network::{StepStats, TrainConfig, TrainNet};
pub use schedule::lr_schedule;
