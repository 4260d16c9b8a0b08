//! Training-side logic that is independent of the device: MindCV's learning-rate schedules
//! ([`lr_schedule`]) and which parameters get weight decay ([`decays`]). The per-op gradients
//! live on the [`crate::backend::Backend`] trait.
mod decay;
mod schedule;

pub use decay::decays;
pub use schedule::lr_schedule;
