//! The SENet network description: variants ([`Arch`], their blocks [`blocks`]), the parameter
//! tree ([`Params`], names and shapes from [`param_specs`]), initialisation ([`mindcv_init`];
//! the golden formula weights [`formula_param`]), the inference network built on a backend
//! ([`InferenceNet`]), and the classification metrics over its logits ([`metrics`]: softmax,
//! top-k, Top-1/Top-5 and loss accumulation).
//! Follows MindCV `mindcv/models/senet.py`.
pub(crate) mod arch;
pub(crate) mod inference;
pub(crate) mod init;
pub mod metrics;
pub(crate) mod params;

pub use arch::{blocks, Arch, BlockKind, BlockSpec, StemPool};
pub use inference::InferenceNet;
pub use init::{formula_input, formula_param, mindcv_init};
pub use params::{param_specs, ParamKind, ParamSpec, Params};

use crate::backend::Shape4;
use crate::{Error, Result, Tensor};

/// The smallest input height and width a SENet takes (its five stride-2 stages leave 1x1).
pub const MIN_INPUT_SIDE: usize = 32;

/// The NCHW shape of a batch of network inputs: `x` must be (N, 3, H, W) f32 with N >= 1 and
/// H, W >= [`MIN_INPUT_SIDE`]. Errors ([`Error::Shape`]) otherwise, naming the input `what`
/// ("input", "training input").
pub fn input_shape(what: &str, x: &Tensor) -> Result<Shape4> {
    let min = MIN_INPUT_SIDE;
    match x.shape[..] {
        [n, 3, h, w] if n > 0 && h >= min && w >= min => Ok(Shape4::new(n, 3, h, w)),
        _ => Err(Error::Shape(format!(
            "{what} must be (N, 3, H, W) with N >= 1 and H, W >= {min}, got {:?}",
            x.shape
        ))),
    }
}

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
    /// The stem's max pool: MindCV's ([`StemPool::Same`]) unless the weights loaded were
    /// timm's ([`checkpoint::load_model`](crate::checkpoint::load_model) sets it from the
    /// file's names), so that the network is the weights' own. The inference network runs it;
    /// training (`senet train`) runs MindCV's network, whose checkpoints it writes.
    pub stem_pool: StemPool,
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
            stem_pool: StemPool::Same,
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
            stem_pool: StemPool::Same,
        })
    }

    /// Multiply-accumulate count of one forward pass on a `size`x`size` image, in MACs
    /// (convs, SE Dense layers and the classifier; pooling and element-wise ops excluded).
    pub fn macs(&self, size: usize) -> u64 {
        inference::count_macs(self.arch, self.stem_pool, self.num_classes, size)
    }
}
