//! Data: ImageFolder datasets, JPEG/PNG decoding, MindCV's eval transforms, the batched loader.
//!
//! - [`decode_file`] / [`decode_bytes`]: JPEG (libjpeg-turbo, as PIL/MindSpore) and PNG to [`RgbImage`];
//! - [`resize_u8`]: OpenCV's `INTER_CUBIC` / `INTER_LINEAR` resize on 8-bit images;
//! - [`resize_u8_pil`]: Pillow's antialiased `BICUBIC` / `BILINEAR` resize (timm's eval path);
//! - [`EvalTransform`]: MindCV's `transforms_imagenet_eval` (resize, centre crop, normalize, CHW),
//!   or timm's ([`Preprocess`]);
//! - [`TrainTransform`]: MindCV's `transforms_imagenet_train` (random resized crop, flips, colour
//!   jitter, normalize, CHW), deterministic per sample through [`SampleRng`];
//! - [`adjust_brightness`], [`adjust_contrast`], [`adjust_saturation`]: MindSpore's colour
//!   adjustments on `u8` images ([`luma`]: its grey level);
//! - [`ImageFolder`]: `data_dir/split/<class>/<image>` with optional class map; [`list_images`];
//! - [`Loader`]: batches of transformed images decoded in parallel with bounded prefetch.
mod augment;
mod color;
mod decode;
mod folder;
mod loader;
mod pil_resize;
mod resize;
mod rgb;
mod rng;
mod transforms;

pub use augment::{flip_horizontal, flip_vertical, CropBox, TrainTransform, CROP_ATTEMPTS};
pub use color::{adjust_brightness, adjust_contrast, adjust_saturation, luma};
pub use decode::{
    decode_bytes, decode_file, decode_named, detect_format, ImageFormat, MAX_IMAGE_PIXELS,
    MAX_JPEG_SCANS,
};
pub use folder::{
    class_folders, is_image_file, list_images, parse_class_map, read_class_map, ImageFolder,
    IMAGE_EXTENSIONS,
};
pub use loader::{Batch, Loader};
pub use pil_resize::resize_u8_pil;
pub use resize::{resize_u8, resize_u8_window, Interpolation, ResizeWindow};
pub use rgb::RgbImage;
pub use rng::SampleRng;
pub use transforms::{EvalTransform, Preprocess, IMAGENET_MEAN, IMAGENET_STD, MAX_SIDE};
