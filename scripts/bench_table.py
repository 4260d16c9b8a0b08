#!/usr/bin/env python3
"""Prints the README's speed table from a scripts/bench_sitting.sh log (JSON lines
`{"cell": "...", "results": [...]}`): per cell the median images/s over the rounds, each next
to its peer with the ratio and issue 15's target, and the validate pipelines' throughput and
peak memory (PSS of the process tree, from scripts/peak_memory.py).

    python3 scripts/bench_table.py target/bench-sitting.jsonl
"""
import json
import statistics
import sys
from collections import defaultdict

# (kind, model, batch) -> the ratio issue 15 asks of senet over the peer.
TARGETS = {
    ("eval", "seresnet50", "b1"): 1.3,
    ("eval", "seresnet50", "b32"): 1.3,
    ("eval", "seresnext50_32x4d", "b32"): 1.3,
    ("train", "seresnet50", "b32"): 2.0,
    ("train", "seresnet18", "b32"): 2.0,
}


def field(results, *names):
    """The first of `names` found in any of a record's result objects."""
    for r in results:
        for n in names:
            if n in r:
                return float(r[n])
    raise KeyError(f"none of {names} in {results}")


def load(path):
    """cell -> list of records' result lists, in the order they ran."""
    cells = defaultdict(list)
    with open(path) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                cells[rec["cell"]].append(rec["results"])
    return cells


def median_of(runs, *names):
    values = [field(r, *names) for r in runs]
    return statistics.median(values), values


def speed_rows(cells):
    rows = []
    for cell in cells:
        kind, model, batch, who = cell.split()
        if who != "senet" or kind == "validate":
            continue
        peer = "ort" if kind == "eval" else "torch"
        if f"{kind} {model} {batch} {peer}" not in cells:
            continue
        ours, our_runs = median_of(cells[cell], "images_per_second")
        theirs, their_runs = median_of(cells[f"{kind} {model} {batch} {peer}"], "img_per_s")
        target = TARGETS.get((kind, model, batch))
        ratio = ours / theirs
        verdict = "" if target is None else (" (met)" if ratio >= target else " (NOT met)")
        rows.append(
            f"| {kind} {model} {batch} | {ours:.1f} ({fmt(our_runs)}) | "
            f"{'ONNX Runtime' if peer == 'ort' else 'PyTorch eager'} {theirs:.1f} "
            f"({fmt(their_runs)}) | {ratio:.2f}x | "
            f"{'-' if target is None else f'{target}x'}{verdict} |"
        )
    return rows


def fmt(values):
    return " / ".join(f"{v:.1f}" for v in values)


def validate_rows(cells):
    ours_key, timm_key = "validate seresnet50 b32 senet", "validate seresnet50 b32 timm"
    if ours_key not in cells or timm_key not in cells:
        return []
    ours, _ = median_of(cells[ours_key], "images_per_second")
    bench, _ = median_of(cells["eval seresnet50 b32 senet"], "images_per_second")
    timm, _ = median_of(cells[timm_key], "img_per_s")
    our_mem, _ = median_of(cells["validate-mem" + ours_key[len("validate"):]], "peak_pss_mib")
    timm_mem, _ = median_of(cells["validate-mem" + timm_key[len("validate"):]], "peak_pss_mib")
    return [
        "",
        "| validate, 1000 photos, seresnet50 b32 | images/s | peak PSS (MiB) |",
        "|---|---|---|",
        f"| `senet validate` | {ours:.1f} ({ours / bench:.2f}x `senet bench`; target 0.9x) | "
        f"{our_mem:.0f} |",
        f"| timm + PyTorch (ImageFolder, DataLoader 2 workers) | {timm:.1f} | {timm_mem:.0f} |",
    ]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    cells = load(sys.argv[1])
    print("| images/s (median; each round) | senet | peer | ratio | target |")
    print("|---|---|---|---|---|")
    for row in speed_rows(cells) + validate_rows(cells):
        print(row)


if __name__ == "__main__":
    main()
