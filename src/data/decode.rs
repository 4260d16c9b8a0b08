//! Decoding image files to 8-bit RGB: JPEG through libjpeg-turbo (the `turbojpeg` crate, the
//! decoder PIL and MindSpore use, hence bit-identical pixels), PNG through the `image` crate.
//! The format is detected from the file's content (magic bytes), never from its extension.
use std::path::Path;

use super::rgb::RgbImage;
use crate::error::{Error, Result};
use crate::mem;

/// An image container format recognised by [`detect_format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// JPEG/JFIF (starts with `FF D8 FF`).
    Jpeg,
    /// PNG (starts with the 8-byte PNG signature).
    Png,
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// The format of an encoded image from its first bytes, or `None` when it is neither JPEG nor PNG.
pub fn detect_format(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(&PNG_SIGNATURE) {
        Some(ImageFormat::Png)
    } else {
        None
    }
}

/// The most pixels (`width * height`) an image may have: larger ones are refused from their
/// header, before anything is decoded or allocated. It is PIL's decompression-bomb limit:
/// `Image.open` raises `DecompressionBombError` when `width * height > 2 * MAX_IMAGE_PIXELS`,
/// with PIL's `MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3` = 89,478,485 (it only warns
/// between 1x and 2x). At this size an RGB image is 537 MB, a 16-bit RGBA PNG's decoded buffer
/// 1.43 GB. The same bound applies to the size an eval transform resizes to
/// ([`super::EvalTransform`]).
pub const MAX_IMAGE_PIXELS: u64 = 2 * (1024 * 1024 * 1024 / 4 / 3);

/// The most progressive scans a JPEG may have (libjpeg-turbo's `TJPARAM_SCANLIMIT`, the value
/// its own fuzzers use): a few-KB file with thousands of scans would otherwise take minutes
/// to decode. Real progressive JPEGs have about 10.
pub const MAX_JPEG_SCANS: u32 = 500;

/// Bytes the PNG decoder may allocate internally (chunk data, row buffers), besides the image
/// buffer senet allocates itself after checking [`MAX_IMAGE_PIXELS`].
const PNG_DECODER_MAX_ALLOC: u64 = 64 << 20;

/// Checks `width x height` against [`MAX_IMAGE_PIXELS`]; the message says both.
pub(crate) fn check_pixels(width: u64, height: u64) -> std::result::Result<(), String> {
    let pixels = width.saturating_mul(height);
    if pixels > MAX_IMAGE_PIXELS {
        return Err(format!(
            "{width}x{height} pixels ({pixels}) is more than the {MAX_IMAGE_PIXELS} pixels \
             senet decodes (PIL's decompression-bomb limit)"
        ));
    }
    Ok(())
}

/// Reads and decodes the image file at `path` to RGB (see [`decode_bytes`]). The file is read
/// with [`crate::fsutil::read_file`]: a FIFO, device or directory is refused without blocking.
///
/// Errors: [`Error::Io`] when the file cannot be read or is not a regular file;
/// [`Error::Format`] naming the file and the decoder's message when it cannot be decoded or is
/// larger than [`MAX_IMAGE_PIXELS`]; [`Error::OutOfMemory`] naming it.
pub fn decode_file(path: &Path) -> Result<RgbImage> {
    let bytes = crate::fsutil::read_file(path)?;
    decode_named(&bytes, path)
}

/// Decodes an encoded JPEG or PNG image to 8-bit RGB (HWC), as PIL's `Image.open(..).convert("RGB")`
/// and MindSpore's `Decode` do:
/// - JPEG (libjpeg-turbo, accurate integer IDCT, fancy upsampling — libjpeg's defaults): YCbCr, RGB
///   and grayscale decode straight to RGB; CMYK/YCCK decode to CMYK, taken as Adobe-inverted (PIL's
///   `CMYK;I` assumption) and converted with PIL's integer CMYK->RGB rule. Libjpeg-turbo warnings
///   (e.g. a truncated file) are treated as errors; more than [`MAX_JPEG_SCANS`] scans is an error.
/// - PNG: grayscale is replicated to the three channels, palette is expanded, alpha is dropped
///   (not composited), 16-bit samples keep their high byte.
///
/// Both decoders are asked for the header first: an image of more than [`MAX_IMAGE_PIXELS`] is
/// refused before any pixel buffer exists, and the pixel buffers are fallible allocations.
///
/// Returns the decoder's message when the bytes are not a decodable JPEG/PNG (see
/// [`decode_named`] for typed errors).
pub fn decode_bytes(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    decode_named(bytes, Path::new("")).map_err(|e| match e {
        Error::Format { msg, .. } => msg,
        other => other.to_string(),
    })
}

/// [`decode_bytes`] with errors that name the image `name` (a file, or a description such as
/// "in-memory image"): [`Error::Format`] for an undecodable or too large image,
/// [`Error::OutOfMemory`] when a pixel buffer cannot be allocated.
pub fn decode_named(bytes: &[u8], name: &Path) -> Result<RgbImage> {
    match detect_format(bytes) {
        Some(ImageFormat::Jpeg) => decode_jpeg(bytes, name),
        Some(ImageFormat::Png) => decode_png(bytes, name),
        None => Err(Error::format(
            name,
            "not a JPEG or PNG image (unrecognised content)",
        )),
    }
}

/// `width * height * channels`, checked.
fn pixel_len(width: usize, height: usize, channels: usize, name: &Path) -> Result<usize> {
    mem::checked_product(&[width, height, channels]).ok_or_else(|| {
        Error::format(
            name,
            format!("{width}x{height} pixels overflow a buffer size"),
        )
    })
}

/// An empty buffer with room for `width * height * channels` bytes (sizes within
/// [`MAX_IMAGE_PIXELS`]).
fn pixel_buffer(width: usize, height: usize, channels: usize, name: &Path) -> Result<Vec<u8>> {
    mem::with_capacity(pixel_len(width, height, channels, name)?, || {
        format!("the {width}x{height} pixels of {}", name.display())
    })
}

/// `width * height * channels` zero bytes (zeroed lazily: see [`mem::zeroed_bytes`]) for a
/// decoder to write into.
fn zeroed_pixels(width: usize, height: usize, channels: usize, name: &Path) -> Result<Vec<u8>> {
    mem::zeroed_bytes(pixel_len(width, height, channels, name)?, || {
        format!("the {width}x{height} pixels of {}", name.display())
    })
}

fn decode_jpeg(bytes: &[u8], name: &Path) -> Result<RgbImage> {
    let err = |e: turbojpeg::Error| Error::format(name, format!("JPEG decoding failed: {e}"));
    let mut dec = turbojpeg::Decompressor::new().map_err(err)?;
    let header = dec.read_header(bytes).map_err(|e| match e {
        // An unreadable header leaves libjpeg-turbo's dimensions at -1.
        turbojpeg::Error::IntegerOverflow(_) => Error::format(
            name,
            "JPEG decoding failed: truncated or invalid JPEG header",
        ),
        e => err(e),
    })?;
    let (width, height) = (header.width, header.height);
    check_pixels(width as u64, height as u64)
        .map_err(|m| Error::format(name, format!("JPEG of {m}")))?;
    dec.set_scan_limit(MAX_JPEG_SCANS).map_err(err)?;
    let cmyk = matches!(
        header.colorspace,
        turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
    );
    let format = if cmyk {
        turbojpeg::PixelFormat::CMYK
    } else {
        turbojpeg::PixelFormat::RGB
    };
    let mut pixels = zeroed_pixels(width, height, format.size(), name)?;
    let image = turbojpeg::Image {
        pixels: &mut pixels[..],
        width,
        pitch: width * format.size(),
        height,
        format,
    };
    dec.decompress(bytes, image).map_err(err)?;
    if !cmyk {
        return Ok(RgbImage {
            width,
            height,
            data: pixels,
        });
    }
    let mut data = pixel_buffer(width, height, 3, name)?;
    for px in pixels.chunks_exact(4) {
        let k = px[3];
        data.extend_from_slice(&[
            inverted_cmyk_to_rgb(px[0], k),
            inverted_cmyk_to_rgb(px[1], k),
            inverted_cmyk_to_rgb(px[2], k),
        ]);
    }
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

/// One RGB channel from an Adobe-inverted (stored) ink value `c` and black `k`, as PIL does it:
/// PIL un-inverts (`C = 255 - c`, `K = 255 - k`), then `R = (255 - K) - C * (255 - K) / 255` with its
/// rounded integer division by 255.
fn inverted_cmyk_to_rgb(c: u8, k: u8) -> u8 {
    let ink = 255 - c as u32;
    let white = k as u32; // 255 - K
    let t = ink * white + 128;
    let scaled = ((t >> 8) + t) >> 8; // round(ink * white / 255)
    (white - scaled) as u8
}

fn decode_png(bytes: &[u8], name: &Path) -> Result<RgbImage> {
    use image::codecs::png::PngDecoder;
    use image::{ColorType, ImageDecoder};
    let err = |e: image::ImageError| Error::format(name, format!("PNG decoding failed: {e}"));
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(PNG_DECODER_MAX_ALLOC);
    // Reads the header chunks only (up to the first IDAT).
    let dec = PngDecoder::with_limits(std::io::Cursor::new(bytes), limits).map_err(err)?;
    let (w, h) = dec.dimensions();
    check_pixels(w as u64, h as u64).map_err(|m| Error::format(name, format!("PNG of {m}")))?;
    let (width, height) = (w as usize, h as usize);
    // (channels, bytes per sample) of the decoder's output.
    let (ch, bps) = match dec.color_type() {
        ColorType::L8 => (1, 1),
        ColorType::La8 => (2, 1),
        ColorType::Rgb8 => (3, 1),
        ColorType::Rgba8 => (4, 1),
        ColorType::L16 => (1, 2),
        ColorType::La16 => (2, 2),
        ColorType::Rgb16 => (3, 2),
        ColorType::Rgba16 => (4, 2),
        other => {
            return Err(Error::format(
                name,
                format!("PNG decoding failed: unsupported colour type {other:?}"),
            ))
        }
    };
    let mut samples = zeroed_pixels(width, height, ch * bps, name)?;
    dec.read_image(&mut samples).map_err(err)?;
    if (ch, bps) == (3, 1) {
        return Ok(RgbImage {
            width,
            height,
            data: samples,
        });
    }
    // 8-bit samples: a 16-bit sample (native-endian after `read_image`) keeps its high byte.
    let sample = |px: &[u8], i: usize| match bps {
        1 => px[i],
        _ => (u16::from_ne_bytes([px[2 * i], px[2 * i + 1]]) >> 8) as u8,
    };
    let mut data = pixel_buffer(width, height, 3, name)?;
    for px in samples.chunks_exact(ch * bps) {
        match ch {
            1 | 2 => {
                let g = sample(px, 0);
                data.extend_from_slice(&[g, g, g]);
            }
            _ => data.extend_from_slice(&[sample(px, 0), sample(px, 1), sample(px, 2)]),
        }
    }
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_by_content() {
        assert_eq!(
            detect_format(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(detect_format(&PNG_SIGNATURE), Some(ImageFormat::Png));
        assert_eq!(detect_format(b"GIF89a"), None);
        assert!(decode_bytes(b"garbage")
            .unwrap_err()
            .contains("not a JPEG or PNG"));
    }

    #[test]
    fn cmyk_conversion_matches_pil_rule() {
        // No ink, no black (stored inverted as 255, 255): white.
        assert_eq!(inverted_cmyk_to_rgb(255, 255), 255);
        // Full black (stored k = 0): black whatever the ink.
        assert_eq!(inverted_cmyk_to_rgb(255, 0), 0);
        // Full ink, no black: 0.
        assert_eq!(inverted_cmyk_to_rgb(0, 255), 0);
        // Half ink (C = 128 -> stored 127), no black: 255 - round(128 * 255 / 255) = 127.
        assert_eq!(inverted_cmyk_to_rgb(127, 255), 127);
        // c * k / 255 in general, within rounding.
        for c in (0..=255u32).step_by(17) {
            for k in (0..=255u32).step_by(15) {
                let exact = c as f64 * k as f64 / 255.0;
                let got = inverted_cmyk_to_rgb(c as u8, k as u8) as f64;
                assert!((got - exact).abs() <= 1.0, "{c} {k}");
            }
        }
    }
}
