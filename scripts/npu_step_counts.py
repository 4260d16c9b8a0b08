#!/usr/bin/env python3
"""Host cost of one steady-state Ascend training step, counted by the CANN emulator.

Runs `senet bench --device ascend --train` twice on the emulator (libsenet_cann_emu.so) with
SENET_EMU_STATS, for SHORT and LONG iterations, and prints per step (LONG - SHORT runs, divided
by LONG - SHORT, so the set-up and the first step cancel out) the calls of every CANN function
that changed, then the totals issue 14 asks for, and the backend's own per_step counts from the
longer run's --json report (the same figures senet reports on a real NPU).

  python3 scripts/npu_step_counts.py --senet target/debug/senet \
      --emulator target/debug/libsenet_cann_emu.so [--soc Ascend910B1] [--model seresnet18]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def run(args, iters, stats):
    env = dict(os.environ)
    env.update(SENET_CANN_LIB=args.emulator, SENET_EMU_SOC=args.soc,
               SENET_EMU_CANN_VERSION=args.cann, SENET_EMU_STATS=stats)
    env.pop("DEVICE_ID", None)
    # The op-by-op step (the README's table) unless the caller asks for the captured one.
    env.setdefault("SENET_NPU_GRAPH", "0")
    cmd = [args.senet, "bench", "--device", "ascend", "--train", "--model", args.model,
           "--batch_size", str(args.batch_size), "--image_size", str(args.image_size),
           "--amp_level", args.amp_level, "--warmup", "0", "--iters", str(iters), "--json"]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    with open(stats) as f:
        return json.load(f), json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--senet", required=True, help="the senet binary")
    ap.add_argument("--emulator", required=True, help="libsenet_cann_emu.so")
    ap.add_argument("--soc", default="Ascend910B1", help="SENET_EMU_SOC (default: an A2)")
    ap.add_argument("--cann", default="9.1", help="SENET_EMU_CANN_VERSION")
    ap.add_argument("--model", default="seresnet18")
    ap.add_argument("--batch_size", type=int, default=2)
    ap.add_argument("--image_size", type=int, default=64)
    ap.add_argument("--amp_level", default="O2")
    ap.add_argument("--short", type=int, default=2)
    ap.add_argument("--long", type=int, default=4)
    args = ap.parse_args()
    if args.long <= args.short:
        sys.exit("--long must be larger than --short")
    with tempfile.TemporaryDirectory() as d:
        a, _ = run(args, args.short, os.path.join(d, "short.json"))
        b, report = run(args, args.long, os.path.join(d, "long.json"))
    steps = args.long - args.short
    per = {k: (b.get(k, 0) - a.get(k, 0)) / steps for k in sorted(set(a) | set(b))}
    per = {k: v for k, v in per.items() if v}
    for k, v in per.items():
        print(f"{k:55s} {v:g}")
    launches = sum(v for k, v in per.items()
                   if k.startswith("aclnn") and not k.endswith("GetWorkspaceSize"))
    syncs = sum(per.get(k, 0) for k in
                ("aclrtSynchronizeStream", "aclrtSynchronizeEvent", "aclrtSynchronizeDevice"))
    print(f"\nper step: {per.get('aclrtMalloc', 0):g} aclrtMalloc, {syncs:g} synchronises, "
          f"{per.get('aclrtMemcpy', 0):g} aclrtMemcpy, {launches:g} aclnn launches, "
          f"{per.get('aclnnFusedSgd', 0):g} aclnnFusedSgd")
    print("backend's own count (senet bench --json per_step):", json.dumps(report.get("per_step")))


if __name__ == "__main__":
    main()
