#!/usr/bin/env python3
"""The timm + PyTorch validation pipeline `senet validate` is compared with (README, "Speed"):
torchvision's `ImageFolder` over `<data_dir>/val`, timm's eval transform for the model
(`resolve_data_config` + `create_transform`: resize, centre crop, normalise), a `DataLoader`
with `--workers` worker processes, and the timm model in eval mode under `torch.inference_mode`
on `--threads` threads, fp32. Weights are timm's random initialisation (`pretrained=False`:
no downloads); speed and memory do not depend on them.

Prints one JSON line: `images`, `img_per_s` (images over the wall time of the loop, decoding
included, as `senet validate`'s Throughput), `top1` (meaningless with random weights; shows
every image went through). Run it under scripts/peak_memory.py for the memory of the whole
process tree (the workers included).

    P=~/.cache/senet-peers
    python3 scripts/peak_memory.py $P/venv-torch/bin/python scripts/timm_validate_peer.py \
        --model seresnet50 --data_dir DIR --batch 32 --workers 2 --threads 2
"""
import argparse
import json
import time

import timm
import torch
from timm.data import create_transform, resolve_data_config
from torchvision.datasets import ImageFolder


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="seresnet50")
    ap.add_argument("--data_dir", required=True, help="ImageFolder root holding val/<class>/")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    model = timm.create_model(args.model, pretrained=False).eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    dataset = ImageFolder(f"{args.data_dir}/val", transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch, shuffle=False, num_workers=args.workers
    )
    seen = correct = 0
    start = time.monotonic()
    with torch.inference_mode():
        for images, labels in loader:
            logits = model(images)
            correct += (logits.argmax(dim=1) == labels).sum().item()
            seen += labels.numel()
    wall = time.monotonic() - start
    print(json.dumps({
        "model": args.model,
        "batch": args.batch,
        "workers": args.workers,
        "threads": args.threads,
        "images": seen,
        "img_per_s": round(seen / wall, 2),
        "wall_s": round(wall, 2),
        "top1": round(100.0 * correct / max(seen, 1), 3),
    }))


if __name__ == "__main__":
    main()
