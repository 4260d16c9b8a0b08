"""Peer test: MindCV 0.3's own train.py (MindSpore 2.10, CPU) resumes a senet training run, and
MindCV's validate.py measures the result as senet does.

Usage (with the Python that has MindSpore and MindCV; scripts/mindcv_peer.sh finds it):
    python mindcv_peer.py SENET_BINARY MINDCV_V0_3_0_SOURCE_DIR

1. Four 32x32 training images of two classes (one batch, one step per epoch) and four validation
   images; a recipe of MindCV 0.3 keys whose training transform is the identity (crop scale and
   ratio 1, no flips, no colour jitter), so both programs see the same inputs.
2. senet trains step 1 of 2 (`--max_steps 1`): `seresnet18-1_1.ckpt` and `optim_seresnet18.ckpt`.
3. senet continues its own run (`--ckpt_path ... --resume_opt True`): step 2, the reference.
4. MindCV's train.py continues the senet run with MindCV's resume flags and the args dump senet
   wrote as its config: it must load the optimizer file (global_step 1, the 2-step
   learning-rate list) and run step 2. MindCV 0.3 then starts another epoch (it runs epoch_size
   more epochs after a resume) and MindSpore 2.10 stops it with a Gather index error at step 3,
   past the end of the learning-rate list; that exit (and no other) is accepted.
5. Checks: MindCV's log names the resume point; its step-2 learning rate and loss equal senet's;
   its step-2 weights, moments and BatchNorm statistics equal senet's step 2 within float32
   rounding, and its moments are far from what a fresh optimizer would hold; senet resumes
   MindCV's run in turn from MindCV's optimizer file; MindCV's validate.py and `senet validate`
   give the same Top-1 and loss on MindCV's checkpoint.
Exit status 0 when everything agrees, 1 otherwise (each failed check printed).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import mindspore as ms
import numpy as np
from PIL import Image

MODEL = "seresnet18"
RECIPE = """\
model: {model}
num_classes: 2
data_dir: {data}
ckpt_save_dir: {save}
mode: 1
distribute: False
val_while_train: True
image_resize: 32
crop_pct: 1.0
interpolation: bilinear
scale: [1.0, 1.0]
ratio: [1.0, 1.0]
hflip: 0.0
vflip: 0.0
color_jitter: 0.0
batch_size: 4
num_parallel_workers: 1
epoch_size: 2
opt: momentum
momentum: 0.9
weight_decay: 0.0001
loss_scale: 1.0
scheduler: cosine_decay
lr: 0.1
min_lr: 0.0
warmup_epochs: 0
decay_epochs: 2
log_interval: 1
"""

failures = []


def check(ok, what):
    print(("ok      " if ok else "FAILED  ") + what)
    if not ok:
        failures.append(what)


def run(cmd, cwd=None, allow_fail=False):
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0 and not allow_fail:
        sys.exit(f"command failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def make_data(root):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, name in enumerate(("cat", "dog")):
            d = os.path.join(root, split, name)
            os.makedirs(d)
            for i in range(2):
                px = rng.integers(0, 200, (32, 32, 3)) + 55 * c
                Image.fromarray(px.astype(np.uint8)).save(os.path.join(d, f"{i}.png"))


def load(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(path).items()}


def rel(a, b):
    """Relative L2 distance of a from b."""
    return float(np.linalg.norm((a - b).ravel()) / max(np.linalg.norm(b.ravel()), 1e-30))


# The same inputs and weights through float32 code that sums in another order: 18 layers whose
# sums have up to 4,608 terms (3x3x512) give a relative difference up to about
# 18 * sqrt(4608) * 2^-24 = 7e-5 (rounding errors adding up as a random walk), so losses are
# compared to 1e-4 relative. Backward doubles the depth and BatchNorm divides by batch
# statistics of 4 images: the step's changes to weights and moments, to 1e-3 relative.
LOSS_REL = 1e-4
UPDATE_REL = 1e-3


def close(a, b, printed):
    """|a - b| within LOSS_REL of b, plus the rounding of two values printed to `printed`."""
    return abs(a - b) <= LOSS_REL * abs(b) + printed


def epoch2_loss(text, pattern):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def main(senet, src):
    tmp = tempfile.mkdtemp(prefix="senet-mindcv-peer-")
    try:
        compare(os.path.abspath(senet), os.path.abspath(src), tmp)
    finally:
        shutil.rmtree(tmp)
    if failures:
        print(f"mindcv peer test: {len(failures)} check(s) FAILED")
        return 1
    print("mindcv peer test: MindCV 0.3 resumed the senet run and agrees with it")
    return 0


def compare(senet, src, tmp):
    data = os.path.join(tmp, "data")
    make_data(data)
    first = os.path.join(tmp, "senet")
    recipe = os.path.join(tmp, "recipe.yaml")
    with open(recipe, "w") as f:
        f.write(RECIPE.format(model=MODEL, data=data, save=first))
    mid = f"{MODEL}-1_1.ckpt"
    run([senet, "train", "-c", recipe, "--threads", "2", "--max_steps", "1"])
    own, peer = os.path.join(tmp, "own"), os.path.join(tmp, "mindcv")
    shutil.copytree(first, own)
    shutil.copytree(first, peer)
    # senet continues its own run with MindCV's flags: step 2.
    p = run([senet, "train", "-c", recipe, "--threads", "2", "--ckpt_save_dir", own,
             "--ckpt_path", os.path.join(own, mid), "--resume_opt", "True"])
    own_log = p.stdout
    check("optimizer state from " + os.path.join(own, "optim_" + MODEL + ".ckpt") in own_log,
          "senet resumed from the optimizer file")
    # MindCV continues the senet run, configured by senet's args dump.
    p = run([sys.executable, "train.py", "-c", os.path.join(first, MODEL + ".yaml"),
             "--ckpt_save_dir", peer, "--ckpt_path", os.path.join(peer, mid),
             "--resume_opt", "True"], cwd=src, allow_fail=True)
    log = p.stdout + p.stderr
    past_end = "For 'Gather', the 'input_indices' should be in the range [0, 2), but got 2"
    check(p.returncode == 0 or past_end in log,
          f"MindCV train.py ran (exit {p.returncode}; only the index error past the "
          "learning-rate list's end is accepted)")
    if p.returncode != 0 and past_end not in log:
        print(log)
    check(f"Resume training from {os.path.join(peer, mid)}, last step: 1, last epoch: 1" in log,
          "MindCV resumed at step 1, epoch 1")
    step2 = re.search(r"Epoch: \[2/2\], batch: \[1/1\], loss: ([0-9.]+), lr: ([0-9.]+)", log)
    check(step2 is not None, "MindCV logged its step 2")
    result = os.path.join(peer, f"{MODEL}-2_1.ckpt")
    check(os.path.isfile(result), "MindCV saved " + result)
    if step2 is None or not os.path.isfile(result):
        print(log)
        return
    start = load(os.path.join(first, mid))
    ours = load(os.path.join(own, f"{MODEL}-2_1.ckpt"))
    theirs = load(result)
    lrs = start["learning_rate"]
    check(np.array_equal(theirs["learning_rate"], lrs) and np.array_equal(ours["learning_rate"], lrs),
          f"the learning-rate list {lrs.tolist()} kept by both")
    # Printed with 6 decimals by both.
    check(f"{lrs[1]:.6f}" == step2.group(2), f"MindCV's step-2 lr {step2.group(2)} = lr[1]")
    ours_loss = epoch2_loss(own_log, r"Epoch: \[2/2\], loss: ([0-9.]+)")
    theirs_loss = float(step2.group(1))
    check(ours_loss is not None and close(ours_loss, theirs_loss, 1e-6),
          f"step-2 loss: senet {ours_loss}, MindCV {theirs_loss}")
    check(int(theirs["global_step"][0]) == 2 and int(ours["global_step"][0]) == 2,
          "global_step 2 in both")
    # The network's parameters: what MindCV's checkpoint also holds (senet's own epoch sums,
    # epoch_loss_sum and the like, are not MindCV's and are left out).
    params = [k for k in ours if k in start and k in theirs and not k.startswith("moments.")
              and k not in ("global_step", "learning_rate", "momentum")]
    moments = [k for k in ours if k.startswith("moments.")]
    check(len(params) == 134 and len(moments) == 94, f"{len(params)} parameters, {len(moments)} moments")
    # The step-2 changes (weights, BN statistics) agree to float32 rounding of the gradients.
    worst = max(params, key=lambda k: rel(theirs[k] - start[k], ours[k] - start[k]))
    w = rel(theirs[worst] - start[worst], ours[worst] - start[worst])
    check(w < UPDATE_REL, f"step-2 updates: worst relative difference {w:.2e} ({worst})")
    worst = max(moments, key=lambda k: rel(theirs[k], ours[k]))
    m = rel(theirs[worst], ours[worst])
    # A fresh optimizer would hold the step-2 gradient alone: moments minus 0.9 x step 1's.
    fresh = min(rel(ours[k] - 0.9 * start[k], ours[k]) for k in moments)
    check(m < UPDATE_REL and fresh > 100 * UPDATE_REL,
          f"moments: worst relative difference {m:.2e} ({worst}); a fresh optimizer's would "
          f"differ by at least {fresh:.2f}")
    # And back: senet resumes MindCV's run with MindCV's flags and MindCV's optimizer file, for
    # one more epoch (a 3-epoch schedule: the stored 2-step list differs, and senet says so).
    p = run([senet, "train", "-c", recipe, "--threads", "2", "--ckpt_save_dir", peer,
             "--ckpt_path", result, "--resume_opt", "True", "--epoch_size", "3",
             "--decay_epochs", "3"])
    check("optimizer state from " + os.path.join(peer, "optim_" + MODEL + ".ckpt")
          + ": global_step 2, 94 Momentum moments" in p.stdout
          and "its 2-step list (this recipe's has 3" in p.stdout
          and os.path.isfile(os.path.join(peer, f"{MODEL}-3_1.ckpt")),
          "senet resumed MindCV's run from MindCV's optimizer file")
    # MindCV's validate.py and senet validate on MindCV's checkpoint.
    p = run([sys.executable, "validate.py", "-c", os.path.join(first, MODEL + ".yaml"),
             "--ckpt_path", result], cwd=src)
    found = re.search(r"\{'Top_1_Accuracy': ([0-9.e-]+), 'loss': ([0-9.e-]+)\}", p.stdout)
    check(found is not None, "MindCV validate.py printed its metrics")
    p = run([senet, "validate", "-c", os.path.join(first, MODEL + ".yaml"), "--ckpt_path",
             result, "--threads", "2", "--json"])
    v = json.loads(p.stdout)
    if found:
        top1, loss = float(found.group(1)), float(found.group(2))
        check(v["num_samples"] == 4 and abs(v["top1"] - 100 * top1) < 1e-9,
              f"Top-1: senet {v['top1']}%, MindCV {100 * top1}%")
        check(close(v["loss"], loss, 0.0),
              f"validation loss: senet {v['loss']}, MindCV {loss}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
