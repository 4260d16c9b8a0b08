//! The arguments of the [`Backend`](super::Backend) ops, bundled per op family (the way candle
//! passes `ParamsConv2D`) in one file per family as the backends are filed, and the argument
//! checks that do not depend on the device: every backend calls these, so an op refuses the same
//! input with the same message on the CPU and on Ascend.
//!
//! Plain-data structs (shapes and scalars) are `Copy`; the structs that hold the buffers of an
//! op (a layer's weights, a group of outputs) borrow them for one call.
mod conv;
mod dense;
mod elementwise;
mod loss;
mod norm;
mod optim;
mod pool;

pub use conv::{Conv2dForward, Conv2dParams, Conv2dShape};
pub use dense::{LinearForward, LinearGrads, LinearShape};
pub(crate) use elementwise::check_se_scale_add_relu;
pub use elementwise::SeGrads;
pub use loss::CrossEntropyParams;
pub use norm::{
    BatchNormBackward, BatchNormForward, BatchNormGrads, BatchStats, MovingStats, SavedStats,
};
pub use optim::{MomentumParams, MomentumSlot};
pub use pool::{
    same_pool_geometry, symmetric_pool_out, MaxPool2dParams, PoolGeometry, PoolPadding,
};

use crate::{Error, Result};

/// Room of a device buffer, in f32 values (what [`Backend::alloc`](super::Backend::alloc) was
/// asked for), as the shared argument checks read it.
pub trait BufferLen {
    /// Values the buffer has room for.
    fn buffer_len(&self) -> usize;
}

impl BufferLen for [f32] {
    fn buffer_len(&self) -> usize {
        self.len()
    }
}

impl BufferLen for Vec<f32> {
    fn buffer_len(&self) -> usize {
        self.len()
    }
}

/// [`Error::Shape`] unless `buf` has room for `need` values, naming `what`.
pub(crate) fn check_len(what: &str, buf: &(impl BufferLen + ?Sized), need: usize) -> Result<()> {
    let have = buf.buffer_len();
    if have < need {
        return Err(Error::Shape(format!(
            "{what}: buffer of {have} values, {need} needed"
        )));
    }
    Ok(())
}
