#!/usr/bin/env python3
"""timm reference outputs for senet's timm compatibility tests (tests/data/timm/).

What timm 1.0 / PyTorch compute, on 8 real photos of shared/datasets/imagenet-sample:
  1. timm's eval transform for the models below (resolve_data_config + create_transform with
     is_training=False: PIL bicubic resize of the short side to floor(224 / 0.875) = 256, centre
     crop 224, ToTensor, ImageNet mean/std). Kept: the uint8 pixels PIL produced before ToTensor.
  2. three timm networks holding the formula weights of shared/golden/README.md, keyed by the
     MindCV name of each tensor (timm's `bn1.weight` gets the formula of MindCV's
     `layer0.1.gamma`; a 1x1-conv SE weight (rd, C, 1, 1) the formula of the Dense (rd, C)), in
     eval mode, on those inputs:
       seresnet18                 timm.create_model('seresnet18')            (models/resnet.py)
       seresnext26_32x4d          ResNet(Bottleneck, (2, 2, 2, 2), cardinality=32, base_width=4,
                                         block_args=dict(attn_layer='se'))   (models/resnet.py)
       legacy_seresnext26_32x4d   timm.create_model('legacy_seresnext26_32x4d') (models/senet.py)
     Also their logits on one (1, 3, 226, 228) formula input (`timm_226x228`; stem conv output
     113 x 114, an odd and an even side, where the three stem pools differ).
     For the two resnet.py networks also the logits with the stem max pool swapped for
     MaxPool2d(3, 2, ceil_mode=True), which computes MindCV's 'same' pooling at this input size
     (the only difference between those networks and MindCV's).
Weights are not stored: senet's tests rebuild them from the formula. What timm saved
(safetensors.torch.save_file(model.state_dict())) is pinned by a manifest: every tensor's
name, dtype, shape and the CRC-32 of its bytes.

Needs: pip install torch timm safetensors pillow numpy (PyTorch 2.15 / timm 1.0.31 made the
committed files; ~/.cache/senet-peers/venv-torch from shared/bench/setup.sh torch has them).
Usage: python scripts/make_timm_golden.py SHARED_DIR OUT_DIR [WEIGHTS_DIR]
  SHARED_DIR   the shared/ folder (photos are read from it, named relative to it)
  OUT_DIR      tests/data/timm: files.txt, pixels.npz, <model>_logits.npy,
               <model>_226x228_logits.npy, <model>_ceilpool_logits.npy, <model>.manifest.tsv, meta.json
  WEIGHTS_DIR  optional: also keep the safetensors files timm wrote (tens of MB each)
"""
import json
import math
import os
import sys
import zlib

import numpy as np

PHOTOS = [  # aspect ratios, up- and downscales, odd crop offsets, a greyscale JPEG
    "datasets/imagenet-sample/val/n01440764/n01440764_tench.JPEG",  # 500x375
    "datasets/imagenet-sample/val/n04033995/n04033995_quilt.JPEG",  # 422x500, offset 39.5
    "datasets/imagenet-sample/val/n02493509/n02493509_titi.JPEG",  # 240x162, upscaled
    "datasets/imagenet-sample/val/n03825788/n03825788_nipple.JPEG",  # 106x150, upscaled
    "datasets/imagenet-sample/val/n01924916/n01924916_flatworm.JPEG",  # 1152x864
    "datasets/imagenet-sample/val/n03759954/n03759954_microphone.JPEG",  # 702x1094
    "datasets/imagenet-sample/val/n03908714/n03908714_pencil_sharpener.JPEG",  # mode L
    "datasets/imagenet-sample/val/n07716906/n07716906_spaghetti_squash.JPEG",  # 168x168
]

U64 = (1 << 64) - 1


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & U64
    return h


def formula_uniform(name, n):
    """u_i = (splitmix64(fnv1a64(name) + i) >> 11) * 2^-53 for i < n, float64."""
    x = np.arange(n, dtype=np.uint64) + np.uint64(fnv1a64(name))
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def formula_tensor(mindcv_name, kind, shape):
    """The formula value of a MindCV parameter, as a float32 array of `shape` (timm's)."""
    n = int(np.prod(shape))
    u = formula_uniform(mindcv_name, n)
    if kind == "weight":  # conv (out, in/g, kh, kw) or Dense / 1x1 conv: fan_in = prod(shape[1:])
        v = (2 * u - 1) * math.sqrt(3.0 / int(np.prod(shape[1:])))
    elif kind in ("gamma", "moving_variance"):
        v = 0.5 + u
    else:  # beta, moving_mean, bias
        v = (2 * u - 1) * 0.1
    return v.astype(np.float32).reshape(shape)


# A (1, 3, 226, 228) input: the stem conv gives 113 x 114, an odd and an even side, where timm's
# stem pools (padding 1; ceil mode) and MindCV's 'same' place their windows differently.
ODD_NAME = "226x228"
ODD_SHAPE = (1, 3, 226, 228)


def odd_input():
    """The golden formula input `timm_226x228`: (2u - 1) * 2 as float32 (senet's formula_input)."""
    u = formula_uniform("timm_226x228", int(np.prod(ODD_SHAPE)))
    return ((2 * u - 1) * 2).astype(np.float32).reshape(ODD_SHAPE)


BN_LEAVES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
             "running_var": "moving_variance"}


def mindcv_name(timm_module, leaf, is_bn):
    """MindCV's name for timm tensor `<timm_module>.<leaf>` (resnet.py or legacy senet.py)."""
    renames = [("conv1", "layer0.0"), ("bn1", "layer0.1"),  # resnet.py stem
               ("layer0.conv1", "layer0.0"), ("layer0.bn1", "layer0.1"),  # senet.py stem
               ("fc", "classifier"), ("last_linear", "classifier")]
    module = dict(renames).get(timm_module, timm_module)
    module = module.replace(".se.fc1", ".se_module.conv_reduce")
    module = module.replace(".se.fc2", ".se_module.conv_expand")
    module = module.replace(".se_module.fc1", ".se_module.conv_reduce")
    module = module.replace(".se_module.fc2", ".se_module.conv_expand")
    return f"{module}.{BN_LEAVES[leaf] if is_bn else leaf}"


def fill_with_formula(model, torch):
    """Sets every parameter and BN statistic of `model` from the formula (by MindCV name)."""
    state = {}
    for module_name, module in model.named_modules():
        is_bn = isinstance(module, torch.nn.BatchNorm2d)
        tensors = dict(module.named_parameters(recurse=False))
        tensors.update(dict(module.named_buffers(recurse=False)))
        for leaf, t in tensors.items():
            key = f"{module_name}.{leaf}"
            if leaf == "num_batches_tracked":
                state[key] = torch.zeros_like(t)
                continue
            name = mindcv_name(module_name, leaf, is_bn)
            kind = BN_LEAVES[leaf] if is_bn else ("weight" if leaf == "weight" else "bias")
            state[key] = torch.from_numpy(formula_tensor(name, kind, tuple(t.shape)))
    model.load_state_dict(state, strict=True)
    return model


def build_models(timm, torch):
    from timm.models.resnet import Bottleneck, ResNet

    seresnext26 = ResNet(block=Bottleneck, layers=(2, 2, 2, 2), cardinality=32, base_width=4,
                         block_args=dict(attn_layer="se"))
    # The pretrained config (data config) of a registered model: timm's seresnext50_32x4d's,
    # the resnet.py SE-ResNeXt closest to this unregistered 26-layer one.
    seresnext26.pretrained_cfg = timm.create_model("seresnext50_32x4d").pretrained_cfg
    return {
        "seresnet18": timm.create_model("seresnet18"),
        "seresnext26_32x4d": seresnext26,
        "legacy_seresnext26_32x4d": timm.create_model("legacy_seresnext26_32x4d"),
    }


def transform_photos(shared, timm, torch, model):
    """timm's eval transform of PHOTOS: (uint8 pixels N x 224 x 224 x 3, float inputs N x 3 x 224 x 224)."""
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config(model=model)
    want = {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 0.875,
            "crop_mode": "center", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    assert config == want, config
    transform = create_transform(**config, is_training=False)
    steps = transform.transforms
    assert [type(s).__name__ for s in steps] == ["Resize", "CenterCrop", "MaybeToTensor",
                                                 "Normalize"], steps
    pixels, inputs = [], []
    for rel in PHOTOS:
        with open(os.path.join(shared, rel), "rb") as f:
            img = Image.open(f).convert("RGB")
        cropped = steps[1](steps[0](img))
        pixels.append(np.asarray(cropped, dtype=np.uint8))
        inputs.append(transform(img))
        # The float input is the normalized pixels (ToTensor / 255, then (x - mean) / std).
        x = pixels[-1].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        mean = np.array(want["mean"], np.float32)[:, None, None]
        std = np.array(want["std"], np.float32)[:, None, None]
        assert np.array_equal((x - mean) / std, inputs[-1].numpy())
    return np.stack(pixels), torch.stack(inputs), config


def manifest(state):
    """name, dtype, shape, CRC-32 of the tensor's bytes: one tab-separated line per tensor."""
    lines = []
    for key in sorted(state):
        t = state[key].contiguous()
        raw = t.numpy().tobytes()
        shape = ",".join(str(d) for d in t.shape)
        lines.append(f"{key}\t{str(t.dtype).replace('torch.', '')}\t{shape}\t{zlib.crc32(raw):08x}")
    return "\n".join(lines) + "\n"


def main(shared, out, weights_dir=None):
    import PIL
    import safetensors
    import safetensors.torch
    import timm
    import torch
    import torchvision

    torch.manual_seed(0)  # no randomness is drawn; fixed for the record
    os.makedirs(out, exist_ok=True)
    models = build_models(timm, torch)
    meta = {"timm": timm.__version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "pillow": PIL.__version__,
            "numpy": np.__version__, "safetensors": safetensors.__version__, "models": {}}
    pixels, inputs, config = transform_photos(shared, timm, torch, models["seresnet18"])
    meta["data_config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    with open(os.path.join(out, "files.txt"), "w") as f:
        f.write("\n".join(PHOTOS) + "\n")
    np.savez_compressed(os.path.join(out, "pixels.npz"), pixels=pixels)
    for name, model in models.items():
        fill_with_formula(model, torch).eval()
        sd = model.state_dict()
        if weights_dir:
            os.makedirs(weights_dir, exist_ok=True)
            safetensors.torch.save_file(sd, os.path.join(weights_dir, f"{name}.safetensors"))
        with open(os.path.join(out, f"{name}.manifest.tsv"), "w") as f:
            f.write(manifest(sd))
        with torch.no_grad():
            logits = model(inputs).numpy().astype(np.float32)
        np.save(os.path.join(out, f"{name}_logits.npy"), logits)
        info = {"tensors": len(sd), "logits_absmax": float(np.abs(logits).max()),
                "argmax": logits.argmax(1).tolist()}
        with torch.no_grad():
            odd = model(torch.from_numpy(odd_input())).numpy().astype(np.float32)
        np.save(os.path.join(out, f"{name}_{ODD_NAME}_logits.npy"), odd)
        info[f"{ODD_NAME}_logits_absmax"] = float(np.abs(odd).max())
        if hasattr(model, "maxpool"):  # resnet.py: stem pool padding 1 -> ceil_mode (= 'same' here)
            model.maxpool = torch.nn.MaxPool2d(3, stride=2, ceil_mode=True)
            with torch.no_grad():
                ceil = model(inputs).numpy().astype(np.float32)
            np.save(os.path.join(out, f"{name}_ceilpool_logits.npy"), ceil)
            info["ceilpool_max_abs_change"] = float(np.abs(ceil - logits).max())
        meta["models"][name] = info
        print(name, info, flush=True)
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(*sys.argv[1:])
