#!/usr/bin/env python3
"""Writes the hand-made reproducers of issue 13 into tests/corpus/<target>/ (run from anywhere:
paths are relative to this file). Each file is named after what it does; README.md lists them.
Needs only the Python standard library (and, for the JPEG bomb, one small sample photo)."""
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(key, payload):  # a length-delimited protobuf field
    return bytes([key]) + varint(len(payload)) + payload


def tensor(dims, dtype, content):
    t = b"".join(b"\x08" + varint(d & (2**64 - 1)) for d in dims)
    return t + ld(0x12, dtype.encode()) + ld(0x1A, content)


def record(tag, t):
    return ld(0x0A, ld(0x0A, tag.encode()) + ld(0x12, t))


def png(width, height, color_type, bit_depth, raw_rows, extra_chunks=b""):
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra_chunks
            + chunk(b"IDAT", zlib.compress(raw_rows, 9)) + chunk(b"IEND", b""))


def ckpt():
    near = 2**64 - 16
    # A record whose length field is near 2^64 (the reader used to wrap and loop forever).
    write("ckpt", "record_length_near_2_64.ckpt", b"\x0a" + varint(near) + b"\x0a\x01w")
    # Truncated record whose tag / tensor fields declare lengths near 2^64.
    write("ckpt", "tag_length_near_2_64.ckpt", b"\x0a" + varint(1000) + b"\x0a" + varint(near) + b"w")
    write("ckpt", "tensor_field_length_near_2_64.ckpt",
          b"\x0a" + varint(1000) + b"\x0a\x01w\x12\x20\x08\x02\x12" + varint(near) + b"Float32")
    write("ckpt", "content_length_near_2_64.ckpt",
          b"\x0a" + varint(1000) + b"\x0a\x01w\x12\x20\x08\x02\x12\x07Float32\x1a" + varint(near))
    # Dims whose product overflows, negative dims, a huge single dim.
    write("ckpt", "dims_product_overflows.ckpt", record("w", tensor([2**62, 2**62, 16], "Float32", b"")))
    write("ckpt", "negative_dim.ckpt", record("w", tensor([-1, 4], "Float32", b"\0" * 16)))
    write("ckpt", "dim_2_63.ckpt", record("w", tensor([2**63 - 1], "UInt8", b"\0")))
    # Chunks of one tag whose byte counts only match the dims once added up, and a valid file.
    write("ckpt", "valid_two_chunks.ckpt", record("w", tensor([2, 2], "Float32", b"\0" * 8)) +
          record("w", tensor([2, 2], "Float32", b"\0" * 8)))
    ok = record("classifier.bias", tensor([3], "Float32", struct.pack("<3f", 1, 2, 3)))
    crc = zlib.crc32(ok)
    write("ckpt", "valid_with_crc.ckpt", ok + b"crc_num" + crc.to_bytes(10, "big"))
    write("ckpt", "bad_crc.ckpt", ok + b"crc_num" + (crc ^ 1).to_bytes(10, "big"))


def safetensors():
    def st(header, data=b""):
        h = header.encode()
        return struct.pack("<Q", len(h)) + h + data

    write("safetensors", "header_length_near_2_64.safetensors", struct.pack("<Q", 2**64 - 8) + b"{}")
    write("safetensors", "offsets_near_2_64.safetensors",
          st('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}}'))
    write("safetensors", "shape_product_overflows.safetensors",
          st('{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}', b"\0" * 8))
    write("safetensors", "valid.safetensors",
          st('{"__metadata__":{"format":"ms"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
             struct.pack("<2f", 1.5, -2)))


def image(sample_jpeg):
    # The 2.1 KB photo with its SOF0 frame header patched to declare 65500x65500 (the decoder
    # used to allocate 12.9 GB and abort).
    with open(sample_jpeg, "rb") as f:
        j = bytearray(f.read())
    i = j.find(b"\xff\xc0")
    assert i > 0, "no baseline SOF0 marker in the sample"
    j[i + 5:i + 9] = struct.pack(">HH", 65500, 65500)
    write("image", "jpeg_declares_65500x65500.jpg", bytes(j))
    # 1x20000 RGB PNG (166 bytes): decodes to 60 KB, but resizing its short side to 256 makes
    # a 256x5120000 image (3.9 GB).
    rows = b"".join(b"\0" + b"\x80\x40\x20" for _ in range(20000))
    write("image", "png_1x20000.png", png(1, 20000, 2, 8, rows))
    write("image", "png_20000x1.png", png(20000, 1, 2, 8, b"\0" + b"\x10" * 60000))
    # Headers declaring far more pixels than the data holds.
    write("image", "png_declares_65535x65535.png", png(65535, 65535, 6, 16, b"\0" * 64))
    write("image", "png_declares_13400x13400_rgba16.png", png(13400, 13400, 6, 16, b"\0" * 64))
    # A small valid palette PNG with transparency.
    plte = struct.pack(">I", 6) + b"PLTE" + b"\xff\0\0\0\0\xff"
    plte += struct.pack(">I", zlib.crc32(b"PLTE\xff\0\0\0\0\xff"))
    trns = struct.pack(">I", 1) + b"tRNS\x80" + struct.pack(">I", zlib.crc32(b"tRNS\x80"))
    write("image", "valid_png_palette_2x2.png", png(2, 2, 3, 8, b"\0\0\1\0\1\0", plte + trns))


def recipe():
    write("recipe", "batch_size_u64_max.yaml", b"model: seresnet18\nbatch_size: 18446744073709551615\n")
    write("recipe", "image_resize_huge.yaml", b"image_resize: 4294967295\ncrop_pct: 0.000001\n")
    write("recipe", "num_classes_huge.yaml", b"num_classes: 99999999999\n")
    write("recipe", "epoch_size_huge.yaml", b"epoch_size: 4294967295\n")
    write("recipe", "crop_pct_tiny.yaml", b"image_resize: 16384\ncrop_pct: 1.0e-300\n")
    write("recipe", "deep_nesting.yaml", b"scale: " + b"[" * 5000 + b"]" * 5000 + b"\n")
    write("recipe", "ckpt_save_dir_empty.yaml", b"ckpt_save_dir: ''\n")
    write("recipe", "valid.yaml", b"model: seresnet50\nbatch_size: 32\nimage_resize: 224\n")


def classmap():
    # Index 99999999999 (a table of 10^11 names, 2.4 TB, used to be allocated), usize::MAX
    # (index + 1 overflowed), 2^64 (does not parse).
    write("classmap", "index_99999999999.tsv", b"99999999999\tn01440764\ttench\n")
    write("classmap", "index_usize_max.tsv", b"18446744073709551615\tn01440764\ttench\n")
    write("classmap", "index_2_64.tsv", b"18446744073709551616\tn01440764\ttench\n")
    write("classmap", "index_max_classes.tsv", b"1000000\tn01440764\ttench\n")
    write("classmap", "valid.tsv", b"0\tn01440764\ttench\n2\tn01443537\tgoldfish\n")
    write("classmap", "valid_lines.txt", b"cat\ndog\n\nbird\n")


if __name__ == "__main__":
    sample = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        HERE, "../../../shared/datasets/imagenet-sample/val/n03825788/n03825788_nipple.JPEG")
    ckpt()
    safetensors()
    image(sample)
    recipe()
    classmap()
