#!/usr/bin/env bash
# First run on a fresh Debian machine: installs the build tools and Debian's Fashion-MNIST
# package (dataset-fashion-mnist: 70,000 28x28 photos of clothes, 10 classes), builds senet,
# lays the images out as an ImageFolder (scripts/fashion_mnist_folder.py, Python's standard
# library only), then trains seresnet18 on the CPU for a few minutes
# (configs/senet/seresnet18_fashion_mnist_cpu.yaml), validates the result on the 10,000
# held-out test images and predicts a few of them.
#
# Usage: bash scripts/quickstart.sh
#   SENET_QUICKSTART_DIR  where the data and checkpoints go (default target/quickstart)
#   SENET_THREADS         CPU threads for the network (default 0: one per core)
# The pipeline on real ImageNet photos, for your own MindCV checkpoint: scripts/imagenet_photos.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${SENET_QUICKSTART_DIR:-target/quickstart}
threads=${SENET_THREADS:-0}
recipe=configs/senet/seresnet18_fashion_mnist_cpu.yaml
source scripts/setup.sh dataset-fashion-mnist

data="$work/fashion-mnist"
if [ ! -d "$data/val" ]; then
  python3 scripts/fashion_mnist_folder.py /usr/share/datasets/fashion-mnist "$data" \
    --train_per_class 1500
fi
ckpt_dir="$work/ckpt_fashion_mnist"
rm -rf "$ckpt_dir"

start=$(date +%s)
"$senet" train -c "$recipe" --data_dir "$data" --ckpt_save_dir "$ckpt_dir" --threads "$threads" \
  --json | tee "$work/train.log"
echo "training took $(( $(date +%s) - start )) s"
# The last checkpoint, from the run's JSON report.
ckpt=$(grep '^{' "$work/train.log" | tail -n 1 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["last_checkpoint"])')

# Top-1 / Top-5 on the 10,000 test images (chance: 10% / 50%).
"$senet" validate -c "$recipe" --data_dir "$data" --ckpt_path "$ckpt" --threads "$threads"
# The top-3 classes of one held-out image of four classes, named after the class folders.
photos=()
for class in ankle_boot bag sneaker trouser; do
  files=("$data/val/$class"/*.png)
  photos+=("${files[0]}")
done
"$senet" predict -c "$recipe" --data_dir "$data" --ckpt_path "$ckpt" --topk 3 \
  --threads "$threads" "${photos[@]}"
echo "senet is $senet; put it on the PATH with: export PATH=\"$(cd "$(dirname "$senet")" && pwd):\$PATH\" (or: cargo install --locked --path .; README: Command line)"
