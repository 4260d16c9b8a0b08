//! `senet models`: the variants with their parameter counts and compute at 224x224.
use crate::model::{Arch, SeNet};
use crate::Result;

/// One row of the model table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    /// MindCV model name.
    pub name: String,
    /// Parameters including BN moving statistics (MindCV's README "params" figure), 1000 classes.
    pub params: usize,
    /// Trainable parameters only.
    pub trainable_params: usize,
    /// Forward compute at 224x224 in GFLOPs (2 x multiply-accumulates).
    pub gflops_224: f64,
}

/// The table for all five variants (1000 classes).
pub fn list() -> Result<Vec<ModelInfo>> {
    Arch::ALL
        .iter()
        .map(|&arch| {
            let net = SeNet::new(arch, 1000, 0)?;
            let trainable = net
                .params
                .iter()
                .filter(|(s, _)| s.kind.trainable())
                .map(|(_, t)| t.numel())
                .sum();
            Ok(ModelInfo {
                name: arch.name().to_string(),
                params: net.params.numel(),
                trainable_params: trainable,
                gflops_224: 2.0 * net.macs(224) as f64 / 1e9,
            })
        })
        .collect()
}
