#!/usr/bin/env python3
"""Lays out Fashion-MNIST (the idx files of Debian's `dataset-fashion-mnist`) as an ImageFolder.

    python3 scripts/fashion_mnist_folder.py SRC OUT [--train_per_class N]

SRC holds `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`
and `t10k-labels-idx1-ubyte.gz` (default /usr/share/datasets/fashion-mnist). OUT receives
`train/<class>/<i>.png` (the 60,000 training images, or the first N of each class) and
`val/<class>/<i>.png` (the 10,000 test images): 28x28 8-bit grayscale PNGs, `<i>` the image's
index in its idx file, `<class>` Fashion-MNIST's class name. That is the layout MindCV's
ImageFolderDataset (`dataset: imagenet`) and senet read; class indices are the sorted folder
names. Python's standard library only. Existing files are replaced; OUT is written through a
temporary folder renamed into place, so an interrupted run leaves no half data set.
"""
import argparse
import gzip
import os
import shutil
import struct
import sys
import zlib

# Fashion-MNIST's labels 0-9, as folder names.
CLASSES = [
    "tshirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
]


def read_idx(path, magic, dims):
    """The payload of an idx file (big-endian magic, one u32 per dimension, then u8 data)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    head = 4 + 4 * dims
    if len(data) < head:
        sys.exit(f"{path}: truncated idx header")
    (got,) = struct.unpack(">I", data[:4])
    if got != magic:
        sys.exit(f"{path}: idx magic {got:#x}, expected {magic:#x}")
    shape = struct.unpack(">" + "I" * dims, data[4:head])
    size = 1
    for d in shape:
        size *= d
    if len(data) - head != size:
        sys.exit(f"{path}: {len(data) - head} data bytes, shape {shape} needs {size}")
    return shape, data[head:]


def png_gray(width, height, pixels):
    """An 8-bit grayscale PNG of `pixels` (row-major bytes)."""

    def chunk(kind, body):
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + pixels[y * width : (y + 1) * width] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def write_split(src, prefix, out, per_class):
    (n, h, w), images = read_idx(os.path.join(src, f"{prefix}-images-idx3-ubyte.gz"), 0x803, 3)
    (m,), labels = read_idx(os.path.join(src, f"{prefix}-labels-idx1-ubyte.gz"), 0x801, 1)
    if n != m:
        sys.exit(f"{src}: {n} {prefix} images but {m} labels")
    for name in CLASSES:
        os.makedirs(os.path.join(out, name), exist_ok=True)
    counts = [0] * len(CLASSES)
    for i in range(n):
        label = labels[i]
        if label >= len(CLASSES):
            sys.exit(f"{src}: {prefix} label {label} of image {i} is not a Fashion-MNIST class")
        if per_class is not None and counts[label] >= per_class:
            continue
        counts[label] += 1
        pixels = images[i * h * w : (i + 1) * h * w]
        with open(os.path.join(out, CLASSES[label], f"{i:05d}.png"), "wb") as f:
            f.write(png_gray(w, h, pixels))
    return sum(counts)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", nargs="?", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("out")
    p.add_argument("--train_per_class", type=int, default=None,
                   help="training images per class (default: all 6,000)")
    a = p.parse_args()
    tmp = a.out.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    train = write_split(a.src, "train", os.path.join(tmp, "train"), a.train_per_class)
    val = write_split(a.src, "t10k", os.path.join(tmp, "val"), None)
    shutil.rmtree(a.out, ignore_errors=True)
    os.rename(tmp, a.out)
    print(f"{a.out}: {train} train and {val} val images in {len(CLASSES)} classes")


if __name__ == "__main__":
    main()
