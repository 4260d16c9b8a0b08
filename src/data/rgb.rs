//! The decoded image type shared by the decoder, the resizer and the transforms.

/// An 8-bit RGB image, row-major HWC: the pixel at row `y`, column `x` is
/// `data[(y * width + x) * 3 .. + 3]` = `[r, g, b]`, values 0..=255.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RgbImage {
    /// Width in pixels (columns).
    pub width: usize,
    /// Height in pixels (rows).
    pub height: usize,
    /// `height * width * 3` bytes, HWC.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Wraps HWC RGB bytes; returns `None` when `data.len() != width * height * 3`.
    pub fn from_raw(width: usize, height: usize, data: Vec<u8>) -> Option<RgbImage> {
        (data.len() == width * height * 3).then_some(RgbImage {
            width,
            height,
            data,
        })
    }

    /// The `[r, g, b]` pixel at column `x`, row `y` (panics when out of bounds).
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}
