//! The SENet network description: variants ([`arch`]), the parameter tree ([`params`]),
//! initialisation ([`init`]), and the inference network built on a backend ([`inference`]).
//! Follows MindCV `mindcv/models/senet.py`.
pub mod arch;
pub mod inference;
pub mod init;
pub mod params;

pub use arch::{Arch, StemPool};
pub use params::{ParamKind, ParamSpec, Params};

use crate::{Error, Result};

/// The largest class count accepted (the classifier alone is then 2048 x 10^6 floats, 8 GB).
pub const MAX_CLASSES: usize = 1_000_000;

fn check_classes(num_classes: usize) -> Result<()> {
    if num_classes == 0 || num_classes > MAX_CLASSES {
        return Err(Error::Config(format!(
            "num_classes must be between 1 and {MAX_CLASSES}, got {num_classes}"
        )));
    }
    Ok(())
}

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
    /// Errors: `num_classes` outside 1..=[`MAX_CLASSES`].
    pub fn new(arch: Arch, num_classes: usize, seed: u64) -> Result<SeNet> {
        check_classes(num_classes)?;
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
    /// Errors: `num_classes` outside 1..=[`MAX_CLASSES`].
    pub fn formula(arch: Arch, num_classes: usize) -> Result<SeNet> {
        check_classes(num_classes)?;
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
