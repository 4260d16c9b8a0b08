//! The SENet network description: variants ([`arch`]), the parameter tree ([`params`]),
//! initialisation ([`init`]), and the inference network built on a backend ([`inference`]).
//! Follows MindCV `mindcv/models/senet.py`.
pub mod arch;
pub mod inference;
pub mod init;
pub mod params;

pub use arch::Arch;
pub use params::{ParamKind, ParamSpec, Params};

use crate::Result;

/// A SENet: the variant, its number of classes and its parameters (names and shapes = MindCV's).
#[derive(Debug, Clone)]
pub struct SeNet {
    /// The variant.
    pub arch: Arch,
    /// Outputs of the classifier.
    pub num_classes: usize,
    /// Every parameter, BN moving statistics included, by MindCV name.
    pub params: Params,
}

impl SeNet {
    /// A model initialised as MindCV does (`_initialize_weights`), deterministic per `seed`.
    pub fn new(arch: Arch, num_classes: usize, seed: u64) -> Result<SeNet> {
        let params = Params::new(params::param_specs(arch, num_classes), |s| {
            init::mindcv_init(s, seed)
        })?;
        Ok(SeNet {
            arch,
            num_classes,
            params,
        })
    }

    /// A model holding the golden formula weights of `shared/golden/README.md`.
    pub fn formula(arch: Arch, num_classes: usize) -> Result<SeNet> {
        let params = Params::new(params::param_specs(arch, num_classes), init::formula_param)?;
        Ok(SeNet {
            arch,
            num_classes,
            params,
        })
    }

    /// Multiply-accumulate count of one forward pass on a `size`x`size` image, in MACs
    /// (convs, SE Dense layers and the classifier; pooling and element-wise ops excluded).
    pub fn macs(&self, size: usize) -> u64 {
        inference::count_macs(self.arch, self.num_classes, size)
    }
}
