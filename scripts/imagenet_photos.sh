#!/usr/bin/env bash
# The pipeline on real ImageNet photos, for your own MindCV checkpoint: installs the build tools,
# builds senet, fetches 20 ImageNet validation photos from a package registry (the images shipped
# in the PyPI wheel foolbox==3.3.4, MIT licence), lays them out as an ImageFolder and runs
# `senet validate` and `senet predict`.
#
# Usage: bash scripts/imagenet_photos.sh [MODEL] [CKPT]
#   MODEL  one of `senet models` (default seresnet50)
#   CKPT   a MindCV/MindSpore .ckpt (or .safetensors) for MODEL, e.g. seresnet50-ff9cd214.ckpt
#          from MindCV's model zoo; without one, a checkpoint with MindCV's random
#          initialisation is written first, so accuracy is chance level (~0%) and only the
#          pipeline is shown.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-seresnet50}
ckpt=${2:-}
work=${SENET_QUICKSTART_DIR:-target/quickstart}

source scripts/setup.sh unzip

# 20 ImageNet validation photos, named imagenet_<i>_<class index>.jpg, from the foolbox wheel.
mkdir -p "$work/wheel"
if [ ! -f "$work/wheel/.done" ]; then
  python3 -m pip download --no-deps -q -d "$work/wheel" foolbox==3.3.4
  unzip -q -o "$work"/wheel/foolbox-3.3.4-*.whl 'foolbox/data/imagenet_*' -d "$work/wheel"
  touch "$work/wheel/.done"
fi
rm -rf "$work/imagenet"
for f in "$work"/wheel/foolbox/data/imagenet_*.jpg; do
  idx=${f##*_}; idx=${idx%.jpg}
  wnid=$(awk -F'\t' -v i="$idx" '$1 == i {print $2}' configs/imagenet_classes.tsv)
  mkdir -p "$work/imagenet/val/$wnid"
  cp "$f" "$work/imagenet/val/$wnid/"
done

if [ -z "$ckpt" ]; then
  ckpt="$work/${model}_init.ckpt"
  "$senet" init --model "$model" --out "$ckpt"
fi
"$senet" validate -c "configs/senet/${model}_ascend.yaml" --data_dir "$work/imagenet" \
  --ckpt_path "$ckpt" --class_map configs/imagenet_classes.tsv --batch_size 8
# The top-3 classes of the first four photos.
mapfile -t photos < <(find "$work/imagenet/val" -name '*.jpg' | sort | head -n 4)
"$senet" predict --model "$model" --ckpt_path "$ckpt" --class_map configs/imagenet_classes.tsv \
  --topk 3 "${photos[@]}"
