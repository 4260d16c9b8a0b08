//! Decoding image files to 8-bit RGB: JPEG through libjpeg-turbo (the `turbojpeg` crate, the
//! decoder PIL and MindSpore use, hence bit-identical pixels), PNG through the `image` crate.
//! The format is detected from the file's content (magic bytes), never from its extension.
use std::path::Path;

use super::rgb::RgbImage;
use crate::error::{Error, Result};

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

/// Reads and decodes the image file at `path` to RGB (see [`decode_bytes`]).
///
/// Errors: [`Error::Io`] when the file cannot be read, [`Error::Format`] naming the file and the
/// decoder's message when it cannot be decoded.
pub fn decode_file(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_bytes(&bytes).map_err(|msg| Error::format(path, msg))
}

/// Decodes an encoded JPEG or PNG image to 8-bit RGB (HWC), as PIL's `Image.open(..).convert("RGB")`
/// and MindSpore's `Decode` do:
/// - JPEG (libjpeg-turbo, accurate integer IDCT, fancy upsampling — libjpeg's defaults): YCbCr, RGB
///   and grayscale decode straight to RGB; CMYK/YCCK decode to CMYK, taken as Adobe-inverted (PIL's
///   `CMYK;I` assumption) and converted with PIL's integer CMYK->RGB rule. Libjpeg-turbo warnings
///   (e.g. a truncated file) are treated as errors.
/// - PNG: grayscale is replicated to the three channels, palette is expanded, alpha is dropped
///   (not composited), 16-bit samples keep their high byte.
///
/// Returns the decoder's message when the bytes are not a decodable JPEG/PNG.
pub fn decode_bytes(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    match detect_format(bytes) {
        Some(ImageFormat::Jpeg) => decode_jpeg(bytes),
        Some(ImageFormat::Png) => decode_png(bytes),
        None => Err("not a JPEG or PNG image (unrecognised content)".to_string()),
    }
}

fn decode_jpeg(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    let err = |e: turbojpeg::Error| format!("JPEG decoding failed: {e}");
    let header = turbojpeg::read_header(bytes).map_err(|e| match e {
        // An unreadable header leaves libjpeg-turbo's dimensions at -1.
        turbojpeg::Error::IntegerOverflow(_) => {
            "JPEG decoding failed: truncated or invalid JPEG header".to_string()
        }
        e => err(e),
    })?;
    let cmyk = matches!(
        header.colorspace,
        turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
    );
    if !cmyk {
        let img = turbojpeg::decompress(bytes, turbojpeg::PixelFormat::RGB).map_err(err)?;
        return Ok(pack_rows(img.pixels, img.width, img.height, img.pitch, 3));
    }
    let img = turbojpeg::decompress(bytes, turbojpeg::PixelFormat::CMYK).map_err(err)?;
    let mut data = Vec::with_capacity(img.width * img.height * 3);
    for y in 0..img.height {
        let row = &img.pixels[y * img.pitch..y * img.pitch + img.width * 4];
        for px in row.chunks_exact(4) {
            let k = px[3];
            data.extend_from_slice(&[
                inverted_cmyk_to_rgb(px[0], k),
                inverted_cmyk_to_rgb(px[1], k),
                inverted_cmyk_to_rgb(px[2], k),
            ]);
        }
    }
    Ok(RgbImage {
        width: img.width,
        height: img.height,
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

/// Drops the row padding (`pitch > width * channels`) of a decoded buffer.
fn pack_rows(pixels: Vec<u8>, width: usize, height: usize, pitch: usize, ch: usize) -> RgbImage {
    if pitch == width * ch {
        return RgbImage {
            width,
            height,
            data: pixels,
        };
    }
    let mut data = Vec::with_capacity(width * height * ch);
    for y in 0..height {
        data.extend_from_slice(&pixels[y * pitch..y * pitch + width * ch]);
    }
    RgbImage {
        width,
        height,
        data,
    }
}

fn decode_png(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    use image::DynamicImage as D;
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .map_err(|e| format!("PNG decoding failed: {e}"))?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    // Gather (samples, channels per pixel) with 8-bit samples; then keep the colour channels.
    let (samples, ch): (Vec<u8>, usize) = match img {
        D::ImageLuma8(b) => (b.into_raw(), 1),
        D::ImageLumaA8(b) => (b.into_raw(), 2),
        D::ImageRgb8(b) => (b.into_raw(), 3),
        D::ImageRgba8(b) => (b.into_raw(), 4),
        D::ImageLuma16(b) => (high_bytes(b.as_raw()), 1),
        D::ImageLumaA16(b) => (high_bytes(b.as_raw()), 2),
        D::ImageRgb16(b) => (high_bytes(b.as_raw()), 3),
        D::ImageRgba16(b) => (high_bytes(b.as_raw()), 4),
        other => (other.to_rgb8().into_raw(), 3),
    };
    let mut data = Vec::with_capacity(width * height * 3);
    match ch {
        1 | 2 => samples
            .chunks_exact(ch)
            .for_each(|p| data.extend_from_slice(&[p[0], p[0], p[0]])),
        3 => data = samples,
        _ => samples
            .chunks_exact(4)
            .for_each(|p| data.extend_from_slice(&p[..3])),
    }
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

fn high_bytes(v: &[u16]) -> Vec<u8> {
    v.iter().map(|&x| (x >> 8) as u8).collect()
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
