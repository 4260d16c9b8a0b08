#!/usr/bin/env bash
# One benchmark sitting: senet and its peers, one after the other, cell by cell, ROUNDS times
# (alternating, as ../shared/bench/README.md asks), on an otherwise idle machine. Every run
# appends one JSON line to OUT (senet's `bench --json`, the peer scripts' lines, and
# peak_memory.py's for the validate pipelines), tagged with the cell; then
# scripts/bench_table.py prints the README's speed table (medians over the rounds, ratios).
#
# Usage: bash scripts/bench_sitting.sh [OUT] [ROUNDS]
#   needs: target/release/senet, the peer venvs (bash ../shared/bench/setup.sh all), and for the
#   validate cells an ImageFolder of ImageNet photos in $SENET_PHOTOS (default
#   target/bench-photos: scripts/bench_sitting.sh makes it from ../shared/datasets/imagenet-sample,
#   each of the 100 photos linked 10 times, 1000 files).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-sitting.jsonl}
rounds=${2:-2}
senet=target/release/senet
shared=${SENET_SHARED:-../shared}
P=${PEERS_DIR:-$HOME/.cache/senet-peers}
py=$P/venv-torch/bin/python
photos=${SENET_PHOTOS:-target/bench-photos}
threads=2

if [ ! -d "$photos/val" ]; then
  for d in "$shared"/datasets/imagenet-sample/val/*/; do
    mkdir -p "$photos/val/$(basename "$d")"
    for k in 0 1 2 3 4 5 6 7 8 9; do
      for f in "$d"*; do ln -f "$f" "$photos/val/$(basename "$d")/r${k}_$(basename "$f")"; done
    done
  done
fi
ckpt=target/bench-seresnet50-init.ckpt
[ -f "$ckpt" ] || "$senet" init --model seresnet50 --out "$ckpt" >/dev/null

# record CELL COMMAND...: the JSON lines COMMAND prints (stdout and stderr) as one record.
record() {
  local cell=$1; shift
  local lines
  lines=$("$@" 2>&1 | grep '^{' | paste -sd, -)
  echo "{\"cell\": \"$cell\", \"results\": [$lines]}" | tee -a "$out"
}
sen() { "$senet" bench --threads $threads --json "$@"; }
ort() { (cd "$shared/bench" && "$py" bench_ort.py --threads $threads "$@"); }
torch() { (cd "$shared/bench" && "$py" bench_torch.py --threads $threads "$@"); }
# timm's names for MindCV's SE-ResNeXt-26 (Cadene's SENet layout, as MindCV's senet.py).
timm_name() { [ "$1" = seresnext26_32x4d ] && echo legacy_seresnext26_32x4d || echo "$1"; }

for round in $(seq "$rounds"); do
  echo "# round $round" >&2
  for cell in seresnet18:32 seresnet34:32 seresnet50:32 seresnet50:1 seresnext26_32x4d:32 \
              seresnext50_32x4d:32; do
    m=${cell%:*}; b=${cell#*:}
    record "eval $m b$b senet" sen --model "$m" --batch_size "$b"
    record "eval $m b$b ort" ort --model "$(timm_name "$m")" --batch "$b"
  done
  for m in seresnet50 seresnet18; do
    record "train $m b32 senet" sen --model "$m" --batch_size 32 --train --iters 6
    record "train $m b32 torch" torch --model "$m" --batch 32 --train --mode eager --iters 6
  done
  # Throughput without the memory sampler (reading /proc/<pid>/smaps_rollup costs the measured
  # process CPU time), then the same run again under it for the peak memory.
  val=("$senet" validate -c configs/senet/seresnet50_ascend.yaml --data_dir "$photos"
       --ckpt_path "$ckpt" --class_map configs/imagenet_classes.tsv --batch_size 32
       --num_parallel_workers 2 --device cpu --threads $threads --json)
  peer=("$py" scripts/timm_validate_peer.py --model seresnet50 --data_dir "$photos" --batch 32
        --workers 2 --threads $threads)
  record "validate seresnet50 b32 senet" "${val[@]}"
  record "validate seresnet50 b32 timm" "${peer[@]}"
  record "validate-mem seresnet50 b32 senet" python3 scripts/peak_memory.py "${val[@]}"
  record "validate-mem seresnet50 b32 timm" python3 scripts/peak_memory.py "${peer[@]}"
done
python3 scripts/bench_table.py "$out"
