#!/usr/bin/env python3
"""A step-time model of senet's O2 training step on Ascend NPUs (issue 14, item 5).

Standard library only, deterministic. It rebuilds MindCV's seresnet18 / seresnet50 layer by layer
(as src/model/arch.rs and src/optim/network build them), replays the sequence of device work the
Ascend backend queues for one O2 training step (src/backend/ascend/*.rs: every aclnn launch,
every cast, every synchronise and blocking copy, the HCCL all-reduce of src/dist/hccl.rs), and
prices each launch with a roofline: max(FLOPs / peak, bytes / HBM bandwidth). A discrete-event
simulation of one host thread and the device stream(s) then gives the step time op by op (what
senet queues today) and as a captured graph replay (A2/A3, one device).

Every number it uses is in HARDWARE / HOST below with the source it comes from or the word
"assumption"; docs/npu-performance.md cites them. The markdown tables that document includes are
what `python3 scripts/npu_step_model.py` prints.

    python3 scripts/npu_step_model.py                  # the tables of docs/npu-performance.md
    python3 scripts/npu_step_model.py --json           # every launch of one step, as JSON lines
    python3 scripts/npu_step_model.py --emu-stats F    # compare the launch model with a
                                                       # SENET_EMU_STATS file (see --help)
"""
import argparse
import json
import math
import sys

# ----------------------------------------------------------------------------------------------
# Inputs. Units: TFLOP/s, GB/s (1e9 bytes/s), microseconds. Sources: docs/npu-performance.md §2.

HARDWARE = {
    "910": {
        "name": "Ascend 910 (first generation; Atlas 800 training server, model 9000)",
        "cube_tflops": 256.0,   # FP16 cube peak (Huawei, Hot Chips 2019 / Atlas 900 launch)
        "vector_tflops": 2.0,   # FP32 vector peak, derived from the Hot Chips vector width
        "hbm_gbs": 1200.0,      # HBM2, 4 stacks: 1.2 TB/s is the usual figure (assumption)
        "hccs_gbs": 30.0,       # one HCCS link: 240 Gbit/s (Hot Chips 2019: 3 x 240 Gbit/s)
        "roce_gbs": 12.5,       # 100 GbE RoCE per device (Atlas 900 launch: 100G Ethernet)
        "pcie_gbs": 32.0,       # PCIe 4.0 x16 host link, theoretical (Atlas 900 launch)
        "pool_op": "WithMask",  # aclnnMaxPool2dWithMask on 910/A2/A3 (src/backend/ascend PoolOp)
        "fused_sgd": False,     # aclnnFusedSgd is A2/A3 only (aclnn-contract.md §aclnnFusedSgd)
        "capture": False,       # aclmdlRICapture*: not on "Atlas 训练系列产品" (§6 of the doc)
        "mindcv_ms": 44.40,     # MindCV README, seresnet18, 8 devices, batch 64 (mindcv.md §2)
    },
    "910B": {
        "name": "Ascend 910B (Atlas 800T A2 training server)",
        "cube_tflops": 280.0,   # FP16 peak as a cloud provider lists it (sources disagree: §2)
        "vector_tflops": 2.0,   # not published; same as 910 (assumption; never the bound here)
        "hbm_gbs": 1600.0,      # HBM2e 64 GB: 1.6 TB/s is the usual figure (assumption)
        "hccs_gbs": 56.0,       # one HCCS link of the 8-device full mesh (assumption: 392/7)
        "roce_gbs": 25.0,       # 200 GbE RoCE per device (assumption)
        "pcie_gbs": 32.0,       # PCIe host link (assumption: same as 910)
        "pool_op": "WithMask",  # as the 910: the WithIndices backward is FLOAT-only on A2/A3
        "fused_sgd": True,
        "capture": True,
        "mindcv_ms": 50.43,     # MindCV README (MindSpore 2.5, Atlas 800T A2), seresnet18
    },
}

HOST = {
    # Host time of one aclnn operator: phase 1 (GetWorkspaceSize: shape checks, tiling), the
    # aclTensor / aclScalar / aclIntArray objects it needs, the workspace from the cache, phase 2
    # (the launch into the stream). ASSUMPTION, swept in the sensitivity table.
    "launch_us": 10.0,
    "launch_sweep_us": [2.0, 5.0, 10.0, 20.0, 40.0],
    # Host time of HcclAllReduce's launch (ASSUMPTION).
    "hccl_launch_us": 30.0,
    # Wake-up after aclrtSynchronizeStream returns (ASSUMPTION).
    "sync_us": 10.0,
    # Fixed cost of a blocking aclrtMemcpy besides bytes / PCIe bandwidth (ASSUMPTION).
    "memcpy_us": 10.0,
    # Host time of one aclmdlRIExecuteAsync (ASSUMPTION).
    "graph_launch_us": 50.0,
}

BATCH = 64
IMAGE = 224
CLASSES = 1000
LOSS_SCALE = 1024.0  # configs/senet/*_ascend.yaml loss_scale (fixed): the optimizer divides it out

F16, F32, I32, I8 = 2, 4, 4, 1  # bytes per element (src/backend/ascend/tensor.rs DType::size)


# ----------------------------------------------------------------------------------------------
# The network (src/model/arch.rs: Arch::layers, BlockKind, se_channels; MindCV senet.py).

def make_divisible(v, d=8):
    new_v = max(d, int(v + d / 2) // d * d)
    if new_v < 0.9 * v:
        new_v += d
    return new_v


ARCHS = {
    "seresnet18": {"block": "basic", "layers": [2, 2, 2, 2]},
    "seresnet50": {"block": "bottleneck", "layers": [3, 4, 6, 3]},
}


def conv_out(h, k, s, p):
    return (h + 2 * p - k) // s + 1


def build(arch):
    """The network as MindCV builds it: convs (with their BN and ReLU flag), blocks, head, and
    the trainable parameters in checkpoint order (name, elements)."""
    spec = ARCHS[arch]
    exp = 1 if spec["block"] == "basic" else 4
    params = []

    def conv(name, bn, cin, cout, k, s, p, h, relu):
        oh = conv_out(h, k, s, p)
        params.append((name + ".weight", cout * cin * k * k))
        params.append((bn + ".gamma", cout))
        params.append((bn + ".beta", cout))
        return {"name": name, "cin": cin, "cout": cout, "k": k, "s": s, "p": p, "h": h,
                "oh": oh, "relu": relu}

    stem = conv("layer0.0", "layer0.1", 3, 64, 7, 2, 3, IMAGE, True)
    h = math.ceil(stem["oh"] / 2)  # MindSpore 'same' max pool 3x3 stride 2
    blocks = []
    inplanes = 64
    for stage, depth in enumerate(spec["layers"]):
        planes = 64 << stage
        for b in range(depth):
            s = (1 if stage == 0 else 2) if b == 0 else 1
            p = "layer%d.%d" % (stage + 1, b)
            cout = planes * exp
            convs = []
            if spec["block"] == "basic":
                convs.append(conv(p + ".conv1", p + ".bn1", inplanes, planes, 3, s, 1, h, True))
                convs.append(conv(p + ".conv2", p + ".bn2", planes, planes, 3, 1, 1,
                                  convs[0]["oh"], False))
            else:
                convs.append(conv(p + ".conv1", p + ".bn1", inplanes, planes, 1, 1, 0, h, True))
                convs.append(conv(p + ".conv2", p + ".bn2", planes, planes, 3, s, 1, h, True))
                convs.append(conv(p + ".conv3", p + ".bn3", planes, cout, 1, 1, 0,
                                  convs[1]["oh"], False))
            rd = make_divisible(cout / 16.0)
            params.append((p + ".se_module.conv_reduce.weight", rd * cout))
            params.append((p + ".se_module.conv_reduce.bias", rd))
            params.append((p + ".se_module.conv_expand.weight", cout * rd))
            params.append((p + ".se_module.conv_expand.bias", cout))
            ds = None
            if b == 0 and (s != 1 or inplanes != cout):
                ds = conv(p + ".downsample.0", p + ".downsample.1", inplanes, cout, 1, s, 0, h,
                          False)
            oh = convs[-1]["oh"]
            blocks.append({"prefix": p, "convs": convs, "ds": ds, "c": cout, "rd": rd,
                           "h_in": h, "cin": inplanes, "oh": oh})
            inplanes = cout
            h = oh
    params.append(("classifier.weight", CLASSES * inplanes))
    params.append(("classifier.bias", CLASSES))
    return {"arch": arch, "stem": stem, "pool_h": math.ceil(stem["oh"] / 2), "blocks": blocks,
            "features": inplanes, "params": params}


# ----------------------------------------------------------------------------------------------
# The step as the Ascend backend queues it (O2).

class Step:
    """The ordered events of one training step. Each launch carries its roofline inputs."""

    def __init__(self, hw):
        self.hw = hw
        self.events = []
        self.phase = ""

    def launch(self, op, layer, flops, nbytes, unit="vector"):
        self.events.append({"kind": "launch", "phase": self.phase, "op": op, "layer": layer,
                            "unit": unit, "flops": float(flops), "bytes": float(nbytes)})

    def sync(self, why):
        self.events.append({"kind": "sync", "phase": self.phase, "op": "aclrtSynchronizeStream",
                            "layer": why})

    def copy(self, direction, why, nbytes):
        """A blocking aclrtMemcpy, always after a synchronise (device.rs upload/download_bytes)."""
        self.sync(why)
        self.events.append({"kind": direction, "phase": self.phase, "op": "aclrtMemcpy",
                            "layer": why, "bytes": float(nbytes)})

    def mark(self, kind, **kw):
        e = {"kind": kind, "phase": self.phase}
        e.update(kw)
        self.events.append(e)


def cast(st, layer, n, src, dst):
    st.launch("aclnnCast", layer, n, n * (src + dst))


def ew(st, op, layer, n, size, reads, writes=1, flops_per=1):
    """An element-wise aclnn op on n values of `size` bytes: `reads` inputs, `writes` outputs."""
    st.launch(op, layer, n * flops_per, n * size * (reads + writes))


def conv_flops(c, n):
    return 2.0 * n * c["cout"] * c["oh"] * c["oh"] * c["cin"] * c["k"] * c["k"]


def conv_forward(st, c, n, x_f32=False):
    """Backend::conv2d (conv.rs) + batch_norm_train (norm.rs) in O2. The fp16 copy of a weight
    is cast once per write of its fp32 master (buffer.rs) and serves the backward too; the stem's
    fp32 images likewise. aclnnBatchNorm takes the fp16 activations and computes in fp32."""
    xin = n * c["cin"] * c["h"] * c["h"]
    y = n * c["cout"] * c["oh"] * c["oh"]
    w = c["cout"] * c["cin"] * c["k"] * c["k"]
    if x_f32:
        cast(st, c["name"], xin, F32, F16)
    cast(st, c["name"], w, F32, F16)                       # fp32 master weight -> fp16
    st.launch("aclnnConvolution", c["name"], conv_flops(c, n), (xin + w + y) * F16, "cube")
    bn = c["name"]
    # aclnnBatchNorm (training): a statistics pass and a normalising pass over x, writes y.
    st.launch("aclnnBatchNorm", bn, 7 * y, 3 * y * F16)
    if c["relu"]:
        ew(st, "aclnnInplaceRelu", bn, y, F16, 1)


def conv_backward(st, c, n, want_dx=True):
    """backward.rs conv_bn_backward: norm.rs bn_grad (fp32), conv.rs backward_filter /
    backward_data on the fp16 copies the forward made."""
    xin = n * c["cin"] * c["h"] * c["h"]
    y = n * c["cout"] * c["oh"] * c["oh"]
    w = c["cout"] * c["cin"] * c["k"] * c["k"]
    name = c["name"]
    cast(st, name, y, F16, F32)                            # x (conv output) up to fp32
    if c["relu"]:
        # The ReLU mask in fp16 (dy and the BN output), only its result cast up.
        ew(st, "aclnnThresholdBackward", name, y, F16, 2)
    cast(st, name, y, F16, F32)                            # dy (or the masked dy) up to fp32
    # aclnnBatchNormBackward: reduce pass (dy, x -> dgamma, dbeta) and dx pass (dy, x -> dx).
    st.launch("aclnnBatchNormBackward", name, 9 * y, 5 * y * F32)
    cast(st, name, y, F32, F16)                            # dx back to fp16
    st.launch("aclnnConvolutionBackward(dW)", name, conv_flops(c, n), (xin + y + w) * F16, "cube")
    cast(st, name, w, F16, F32)                            # fp16 dW into the fp32 gradient
    if want_dx:
        st.launch("aclnnConvolutionBackward(dX)", name, conv_flops(c, n), (y + w + xin) * F16,
                  "cube")


def linear_forward(st, layer, n, fin, fout, act):
    """dense.rs linear: casts of w and b, aclnnAddmm, then ReLU in place or Sigmoid."""
    cast(st, layer, fin * fout, F32, F16)
    cast(st, layer, fout, F32, F16)
    st.launch("aclnnAddmm", layer, 2.0 * n * fin * fout, (n * fin + fin * fout + 2 * n * fout) * F16,
              "cube")
    if act == "relu":
        ew(st, "aclnnInplaceRelu", layer, n * fout, F16, 1)
    elif act == "sigmoid":
        ew(st, "aclnnSigmoid", layer, n * fout, F16, 1, flops_per=4)


def linear_backward(st, layer, n, fin, fout, dy_f32):
    """dense.rs linear_backward: dx = dy.w (Mm, the forward's fp16 w), dW = dy^T.x (Mm, cast
    into the fp32 gradient), db (ReduceSum)."""
    if dy_f32:
        cast(st, layer, n * fout, F32, F16)
    st.launch("aclnnMm(dX)", layer, 2.0 * n * fin * fout,
              (n * fout + fin * fout + n * fin) * F16, "cube")
    st.launch("aclnnMm(dW)", layer, 2.0 * n * fin * fout, (n * fout + n * fin + fin * fout) * F16,
              "cube")
    cast(st, layer, fin * fout, F16, F32)
    st.launch("aclnnReduceSum", layer, n * fout, n * fout * F16 + fout * F32)


def argmax_bytes(n, c, oh, hw):
    """pool.rs: INT32 indices (WithIndices, 950 only), or the INT8 mask of
    geometry.rs mask_dims, (N, C, k*k, (ceil(oh*ow/16) + 1) * 32) for the 3x3 pool."""
    if hw["pool_op"] == "WithIndices":
        return n * c * oh * oh * I32
    return n * c * 9 * ((oh * oh + 15) // 16 + 1) * 32 * I8


def pool_forward(st, layer, n, c, h, oh, hw):
    xin, y = n * c * h * h, n * c * oh * oh
    st.launch("aclnnMaxPool2d%s" % hw["pool_op"], layer, 9 * y,
              xin * F16 + y * F16 + argmax_bytes(n, c, oh, hw))


def pool_backward(st, layer, n, c, h, oh, hw):
    """pool.rs: the forward is recomputed for its argmax, then the backward."""
    pool_forward(st, layer, n, c, h, oh, hw)
    xin, y = n * c * h * h, n * c * oh * oh
    st.launch("aclnnMaxPool2d%sBackward" % hw["pool_op"], layer, xin,
              y * F16 + xin * F16 + argmax_bytes(n, c, oh, hw) + xin * F16)


def gap_forward(st, layer, n, c, h):
    st.launch("aclnnMean", layer, n * c * h * h, n * c * h * h * F16 + n * c * F16)


def gap_backward(st, layer, n, c, h):
    """pool.rs global_avg_pool_backward: one aclnnAdaptiveAvgPool2dBackward (dy / (h*w) spread
    over the window)."""
    x = n * c * h * h
    st.launch("aclnnAdaptiveAvgPool2dBackward", layer, x, n * c * F16 + x * F16)


def forward(st, net, n, hw):
    """TrainNet::forward (src/optim/network): the images went up asynchronously from pinned
    staging (one aclrtMemcpyAsync, no host wait)."""
    st.phase = "forward"
    conv_forward(st, net["stem"], n, x_f32=True)
    s = net["stem"]
    pool_forward(st, "pool0", n, s["cout"], s["oh"], net["pool_h"], hw)
    for b in net["blocks"]:
        for c in b["convs"]:
            conv_forward(st, c, n)
        if b["ds"]:
            conv_forward(st, b["ds"], n)
        p, c, oh, rd = b["prefix"], b["c"], b["oh"], b["rd"]
        gap_forward(st, p + ".se_module.pool", n, c, oh)
        linear_forward(st, p + ".se_module.conv_reduce", n, c, rd, "relu")
        linear_forward(st, p + ".se_module.conv_expand", n, rd, c, "sigmoid")
        y = n * c * oh * oh
        # elementwise.rs se_scale_add_relu_into: out = x * gate (broadcast), + shortcut, ReLU.
        st.launch("aclnnMul", p + ".se_scale", y, 2 * y * F16 + n * c * F16)
        ew(st, "aclnnInplaceAdd", p + ".residual", y, F16, 2)
        ew(st, "aclnnInplaceRelu", p + ".relu", y, F16, 1)
    last = net["blocks"][-1]
    gap_forward(st, "pool", n, last["c"], last["oh"])
    linear_forward(st, "classifier", n, net["features"], CLASSES, None)


def loss(st, n, read_back):
    """loss.rs softmax_cross_entropy_on_device (the smoothed targets went up asynchronously
    with the images), then TrainNet's one read-back: a synchronise and one blocking copy of the
    per-row losses (padded to 8 values) and the fp32 logits (for top-1), or `read_back` bytes."""
    st.phase = "loss"
    cast(st, "loss", n * CLASSES, F16, F32)
    st.launch("aclnnSoftmaxCrossEntropyWithLogits", "loss", 6 * n * CLASSES,
              3 * n * CLASSES * F32)
    ew(st, "aclnnInplaceMuls", "loss", n * CLASSES, F32, 1)
    if read_back is None:
        read_back = ((n + 7) // 8 * 8 + n * CLASSES) * F32
    st.copy("d2h", "per-row losses and logits", read_back)


def backward(st, net, n, hw, grad_ready):
    """backward.rs TrainNet::backward, module by module in reverse. `grad_ready(names)` is
    called after the launch that completes each parameter's gradient."""
    st.phase = "backward"
    linear_backward(st, "classifier", n, net["features"], CLASSES, dy_f32=True)
    grad_ready(["classifier.weight", "classifier.bias"])
    last = net["blocks"][-1]
    gap_backward(st, "pool", n, last["c"], last["oh"])
    for b in reversed(net["blocks"]):
        p, c, oh, rd = b["prefix"], b["c"], b["oh"], b["rd"]
        y = n * c * oh * oh
        # elementwise.rs se_scale_add_relu_backward: the ReLU mask, d(x) = dy * gate,
        # d(gate) = sum over (H, W) of dy * x (fp32).
        ew(st, "aclnnThresholdBackward", p + ".relu", y, F16, 2)
        st.launch("aclnnMul", p + ".se_scale", y, 2 * y * F16 + n * c * F16)
        ew(st, "aclnnMul", p + ".se_scale", y, F16, 2)
        st.launch("aclnnReduceSum", p + ".se_scale", y, y * F16 + n * c * F32)
        # sigmoid_backward_into on the fp32 d(gate): the fp16 gate is cast up
        cast(st, p + ".se_module", n * c, F16, F32)
        ew(st, "aclnnSigmoidBackward", p + ".se_module", n * c, F32, 2, flops_per=3)
        linear_backward(st, p + ".se_module.conv_expand", n, rd, c, dy_f32=True)
        grad_ready([p + ".se_module.conv_expand.weight", p + ".se_module.conv_expand.bias"])
        # relu_backward in place: into a temporary, copied back
        ew(st, "aclnnThresholdBackward", p + ".se_module", n * rd, F16, 2)
        ew(st, "aclnnInplaceCopy", p + ".se_module", n * rd, F16, 1)
        linear_backward(st, p + ".se_module.conv_reduce", n, c, rd, dy_f32=False)
        grad_ready([p + ".se_module.conv_reduce.weight", p + ".se_module.conv_reduce.bias"])
        gap_backward(st, p + ".se_module.pool", n, c, oh)
        ew(st, "aclnnInplaceAdd", p + ".se_module", y, F16, 2)
        for cv in reversed(b["convs"]):
            conv_backward(st, cv, n)
            bn = cv["name"].replace("conv", "bn")
            grad_ready([cv["name"] + ".weight", bn + ".gamma", bn + ".beta"])
        xin = n * b["cin"] * b["h_in"] * b["h_in"]
        if b["ds"]:
            conv_backward(st, b["ds"], n)
            d = b["ds"]["name"]
            grad_ready([d + ".weight", d[:-1] + "1.gamma", d[:-1] + "1.beta"])
        ew(st, "aclnnInplaceAdd", p + ".shortcut", xin, F16, 2)
    s = net["stem"]
    pool_backward(st, "pool0", n, s["cout"], s["oh"], net["pool_h"], hw)
    conv_backward(st, s, n, want_dx=False)
    grad_ready(["layer0.0.weight", "layer0.1.gamma", "layer0.1.beta"])


def plan_buckets(lens, bucket_elems):
    """src/dist/reducer.rs plan_buckets: last gradient first, at most bucket_elems a bucket."""
    buckets, cur, cur_len = [], [], 0
    for i in reversed(range(len(lens))):
        if cur and cur_len + lens[i] > bucket_elems:
            buckets.append((cur, cur_len))
            cur, cur_len = [], 0
        cur.append(i)
        cur_len += lens[i]
    if cur:
        buckets.append((cur, cur_len))
    return buckets


def allreduce_seconds(nbytes, ranks, hw, topology):
    """Ring all-reduce, 2(N-1)/N x bytes over the slowest link; 'hier' is HCCL's two-level
    scheme for 2 nodes: reduce-scatter and all-gather inside each node over HCCS, the 1/8 shards
    all-reduced between the nodes over the 8 devices' RoCE ports in parallel."""
    if ranks <= 1:
        return 0.0
    if topology == "node":
        return 2.0 * (ranks - 1) / ranks * nbytes / (hw["hccs_gbs"] * 1e9)
    if topology == "ring":
        return 2.0 * (ranks - 1) / ranks * nbytes / (hw["roce_gbs"] * 1e9)
    per_node = 8
    nodes = ranks // per_node
    intra = 2.0 * (per_node - 1) / per_node * nbytes / (hw["hccs_gbs"] * 1e9)
    inter = 2.0 * (nodes - 1) / nodes * (nbytes / per_node) / (hw["roce_gbs"] * 1e9)
    return intra + inter


def optimizer(st, net, hw, fused, groups):
    """optim.rs: one aclnnFusedSgd over the tensor lists of each weight-decay group where the SoC
    has it (the trainer: MindCV's two groups; the bench: one), else momentum_update per
    parameter (loss scale 1024 divided out: 5 launches each)."""
    st.phase = "optimizer"
    if fused:
        total = sum(e for _, e in net["params"])
        for g in range(groups):
            share = total / float(groups)
            st.launch("aclnnFusedSgd", "optimizer (group %d)" % g, 6 * share, 5 * share * F32)
        return
    for name, e in net["params"]:
        ew(st, "aclnnAdd", name, e, F32, 2, flops_per=2)   # g = grad + wd*ls*param
        ew(st, "aclnnInplaceMuls", name, e, F32, 1)        # g *= 1/ls
        ew(st, "aclnnInplaceMuls", name, e, F32, 1)        # moment *= momentum
        ew(st, "aclnnInplaceAdd", name, e, F32, 2)         # moment += g
        ew(st, "aclnnInplaceAdd", name, e, F32, 2, flops_per=2)  # param -= lr*moment


def global_batch_reduce(st, hw, ranks):
    """trainer.rs global_batch: (loss, hits, images, stop) summed over the ranks through the
    device (hccl.rs hccl_all_reduce_host_f32: upload, HcclAllReduce, synchronise, download)."""
    if ranks <= 1:
        return
    st.phase = "step figures"
    st.copy("h2d", "step figures", 32)
    st.mark("allreduce", op="HcclAllReduce", layer="step figures", bytes=32.0, seconds=0.0)
    st.sync("HcclAllReduce")
    st.copy("d2h", "step figures", 32)


def step(net, hw, n, ranks, topology, groups=2, read_back=None):
    """One O2 step as senet queues it today, op by op (SENET_NPU_GRAPH=0; simulate(graph=True)
    prices the same events as the captured step's one aclmdlRIExecuteAsync): forward, loss and
    its read-back, the backward with each 25 MiB gradient bucket packed (aclnnInplaceCopy per
    member) and all-reduced on the communication stream as soon as the backward completes it
    (dist/hccl.rs), a wait for that stream, x 1/N and the unpack per bucket, the optimizer.
    `groups`: weight-decay groups (2 for senet train with MindCV's filter, 1 for senet bench);
    `read_back`: bytes of the one device-to-host copy (default: losses and logits)."""
    st = Step(hw)
    forward(st, net, n, hw)
    loss(st, n, read_back)
    lens = dict(net["params"])
    order = [name for name, _ in net["params"]]
    buckets = plan_buckets([lens[k] for k in order], (25 << 20) // 4) if ranks > 1 else []
    pending = {}
    for bi, (members, _) in enumerate(buckets):
        for i in members:
            pending[order[i]] = bi
    left = [len(m) for m, _ in buckets]

    def ready(names):
        for name in names:
            bi = pending.get(name)
            if bi is None:
                continue
            left[bi] -= 1
            if left[bi] == 0:
                members, total = buckets[bi]
                if len(members) > 1:
                    for i in members:
                        ew(st, "aclnnInplaceCopy", "bucket pack", lens[order[i]], F32, 1)
                st.mark("allreduce_async", op="HcclAllReduce", layer="bucket %d" % bi,
                        bytes=float(total * F32),
                        seconds=allreduce_seconds(total * F32, ranks, hw, topology))

    backward(st, net, n, hw, ready)
    if buckets:
        st.mark("wait_comm")
        st.phase = "all-reduce"
        for members, total in buckets:
            ew(st, "aclnnInplaceMuls", "bucket 1/N", total, F32, 1)
            if len(members) > 1:
                for i in members:
                    ew(st, "aclnnInplaceCopy", "bucket unpack", lens[order[i]], F32, 1)
    optimizer(st, net, hw, hw["fused_sgd"], groups)
    global_batch_reduce(st, hw, ranks)
    return st


def step_today(net, hw, n, ranks, topology):
    """The trainer's step today (two weight-decay groups)."""
    return step(net, hw, n, ranks, topology)


# ----------------------------------------------------------------------------------------------
# Pricing and simulation.

def roofline(e, hw):
    peak = hw["cube_tflops"] if e["unit"] == "cube" else hw["vector_tflops"]
    t_compute = e["flops"] / (peak * 1e12)
    t_memory = e["bytes"] / (hw["hbm_gbs"] * 1e9)
    return max(t_compute, t_memory), ("compute" if t_compute >= t_memory else "memory")


def simulate(st, hw, launch_us, graph=False, floor_us=0.0, derate=1.0):
    """One host thread issuing in order, one compute stream executing in order, and a second
    stream for asynchronous all-reduces. Returns a dict of times in seconds and counts."""
    th = td = comm_free = 0.0
    busy = work = 0.0
    counts = {"launches": 0, "syncs": 0, "copies": 0, "allreduces": 0}
    if graph:
        th += HOST["graph_launch_us"] * 1e-6
        work += HOST["graph_launch_us"] * 1e-6
    for e in st.events:
        k = e["kind"]
        if k == "launch":
            counts["launches"] += 1
            if not graph:
                th += launch_us * 1e-6
                work += launch_us * 1e-6
            d, _ = roofline(e, hw)
            d = max(d / derate, floor_us * 1e-6)
            start = max(th, td) if not graph else td
            td = start + d
            busy += d
        elif k == "sync":
            counts["syncs"] += 1
            th = max(th, td) + HOST["sync_us"] * 1e-6
            work += HOST["sync_us"] * 1e-6
        elif k in ("h2d", "d2h"):
            counts["copies"] += 1
            c = HOST["memcpy_us"] * 1e-6 + e["bytes"] / (hw["pcie_gbs"] * 1e9)
            th += c
            work += c
            td = max(td, th)
        elif k == "allreduce":
            counts["allreduces"] += 1
            th += HOST["hccl_launch_us"] * 1e-6
            work += HOST["hccl_launch_us"] * 1e-6
            start = max(th, td)
            td = start + e["seconds"]
        elif k == "allreduce_async":
            counts["allreduces"] += 1
            if not graph:
                th += HOST["hccl_launch_us"] * 1e-6
                work += HOST["hccl_launch_us"] * 1e-6
            start = max(th if not graph else 0.0, td, comm_free)
            comm_free = start + e["seconds"]
        elif k == "wait_comm":
            td = max(td, comm_free)
    end = max(th, td)
    return {"step": end, "device_busy": busy, "host_work": work, **counts}


CATEGORY = [
    ("aclnnConvolution", "conv forward"),
    ("aclnnConvolutionBackward(dX)", "conv backward data"),
    ("aclnnConvolutionBackward(dW)", "conv backward weight"),
    ("aclnnBatchNormBackward", "BN backward"),
    ("aclnnBatchNorm", "BN forward"),
    ("aclnnCast", "casts fp16<->fp32"),
    ("aclnnMaxPool2dWithIndices", "max pool (+ recompute)"),
    ("aclnnMaxPool2dWithIndicesBackward", "max pool (+ recompute)"),
    ("aclnnMaxPool2dWithMask", "max pool (+ recompute)"),
    ("aclnnMaxPool2dWithMaskBackward", "max pool (+ recompute)"),
    ("aclnnAddmm", "SE / classifier dense"),
    ("aclnnMm(dX)", "SE / classifier dense"),
    ("aclnnMm(dW)", "SE / classifier dense"),
]


def category(e):
    if e["phase"] == "optimizer":
        return "optimizer"
    if e["phase"] == "all-reduce":
        return "bucket pack/scale"
    if e["phase"] == "loss":
        return "loss"
    for op, cat in CATEGORY:
        if e["op"] == op:
            return cat
    if ".se_module" in e["layer"] or ".se_scale" in e["layer"]:
        return "SE pool, gate, scale (element-wise)"
    return "ReLU / residual / copies"


# ----------------------------------------------------------------------------------------------
# Reports.

def fmt(x, nd=2):
    return ("%%.%df" % nd) % x


def table(rows, header):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def report_inputs():
    rows = []
    keys = [("cube_tflops", "FP16 cube peak, TFLOP/s"), ("vector_tflops", "FP32 vector peak, TFLOP/s"),
            ("hbm_gbs", "HBM bandwidth, GB/s"), ("hccs_gbs", "HCCS link, GB/s"),
            ("roce_gbs", "RoCE per device, GB/s"), ("pcie_gbs", "host PCIe, GB/s"),
            ("mindcv_ms", "MindCV seresnet18 8-device step, ms")]
    for k, label in keys:
        rows.append([label, HARDWARE["910"][k], HARDWARE["910B"][k]])
    out = [table(rows, ["input", "910", "910B"])]
    hrows = [[k, v] for k, v in HOST.items() if k != "launch_sweep_us"]
    out.append(table(hrows, ["host-side input (assumption)", "value"]))
    return "\n\n".join(out)


def report_arch(net):
    st = step_today(net, HARDWARE["910B"], BATCH, 1, "node")
    by = {}
    for e in st.events:
        if e["kind"] != "launch":
            continue
        c = category(e)
        r = by.setdefault(c, {"n": 0, "flops": 0.0, "bytes": 0.0, "t910": 0.0, "t910b": 0.0})
        r["n"] += 1
        r["flops"] += e["flops"]
        r["bytes"] += e["bytes"]
        r["t910"] += roofline(e, HARDWARE["910"])[0]
        r["t910b"] += roofline(e, HARDWARE["910B"])[0]
    rows = []
    tot = {"n": 0, "flops": 0.0, "bytes": 0.0, "t910": 0.0, "t910b": 0.0}
    for c, r in sorted(by.items(), key=lambda kv: -kv[1]["t910b"]):
        rows.append([c, r["n"], fmt(r["flops"] / 1e9, 1), fmt(r["bytes"] / 1e9, 2),
                     fmt(r["t910"] * 1e3), fmt(r["t910b"] * 1e3)])
        for k in tot:
            tot[k] += r[k]
    rows.append(["**total**", tot["n"], fmt(tot["flops"] / 1e9, 1), fmt(tot["bytes"] / 1e9, 2),
                 fmt(tot["t910"] * 1e3), fmt(tot["t910b"] * 1e3)])
    head = ["%s, batch %d, O2: op family" % (net["arch"], BATCH), "launches", "GFLOP", "GB moved",
            "ms on 910", "ms on 910B"]
    out = [table(rows, head)]
    # top individual launches
    launches = [e for e in st.events if e["kind"] == "launch"]
    launches.sort(key=lambda e: -roofline(e, HARDWARE["910B"])[0])
    rows = []
    for e in launches[:15]:
        t, bound = roofline(e, HARDWARE["910B"])
        t1, _ = roofline(e, HARDWARE["910"])
        rows.append([e["phase"], e["layer"], e["op"], fmt(e["flops"] / 1e9, 2),
                     fmt(e["bytes"] / 1e6, 1), fmt(t1 * 1e6, 0), fmt(t * 1e6, 0), bound])
    out.append(table(rows, ["phase", "layer", "launch", "GFLOP", "MB", "us 910", "us 910B",
                            "bound (910B)"]))
    return "\n\n".join(out)


def trainable_params(net):
    return sum(e for _, e in net["params"])


def report_allreduce(nets):
    rows = []
    for net in nets:
        b = trainable_params(net) * F32
        for hwk in ("910", "910B"):
            hw = HARDWARE[hwk]
            rows.append([net["arch"], hwk, fmt(b / 1e6, 1),
                         fmt(allreduce_seconds(b, 8, hw, "node") * 1e3),
                         fmt(allreduce_seconds(b, 16, hw, "ring") * 1e3),
                         fmt(allreduce_seconds(b, 16, hw, "hier") * 1e3)])
    return table(rows, ["model", "SoC", "fp32 gradients, MB", "8 devices, HCCS ring, ms",
                        "16 devices, flat ring over RoCE, ms", "16 devices, HCCS + RoCE, ms"])


def graph_cell(hw, ranks, st, derate=1.0):
    """The captured step's time, where senet captures it: A2/A3 (not the first-generation 910),
    one device (data-parallel jobs run op by op: HCCL inside a capture is not documented)."""
    if not hw["capture"]:
        return "n/a (no capture)"
    if ranks > 1:
        return "n/a (data parallel)"
    return fmt(simulate(st, hw, HOST["launch_us"], graph=True, derate=derate)["step"] * 1e3, 1)


def scenarios(net, hwk):
    hw = HARDWARE[hwk]
    rows = []
    for ranks, topo, label in ((1, "node", "1 device"), (8, "node", "8 devices (1 node)"),
                               (16, "hier", "16 devices (2 nodes)")):
        st = step_today(net, hw, BATCH, ranks, topo)
        today = simulate(st, hw, HOST["launch_us"])
        rows.append([net["arch"], hwk, label, fmt(today["device_busy"] * 1e3, 1),
                     "%d / %d / %d" % (today["launches"], today["syncs"], today["copies"]),
                     fmt(today["step"] * 1e3, 1), graph_cell(hw, ranks, st)])
    return rows


def report_steps(nets):
    rows = []
    for net in nets:
        for hwk in ("910", "910B"):
            rows += scenarios(net, hwk)
    return table(rows, ["model", "SoC", "devices", "device busy, ms",
                        "launches / syncs / copies", "op by op: step, ms",
                        "graph replay: step, ms"])


def report_sensitivity(net, derate):
    rows = []
    for hwk in ("910", "910B"):
        hw = HARDWARE[hwk]
        one = step_today(net, hw, BATCH, 1, "node")
        eight = step_today(net, hw, BATCH, 8, "node")
        for c in HOST["launch_sweep_us"]:
            s1 = simulate(one, hw, c, derate=derate)
            s8 = simulate(eight, hw, c, derate=derate)
            floor = simulate(eight, hw, c, floor_us=3.0, derate=derate)
            graph = (fmt(simulate(one, hw, c, graph=True, derate=derate)["step"] * 1e3, 1)
                     if hw["capture"] else "n/a")
            rows.append([hwk, fmt(c, 0), fmt(s1["step"] * 1e3, 1), graph,
                         fmt(s8["step"] * 1e3, 1), fmt(s8["host_work"] * 1e3, 1),
                         fmt(floor["step"] * 1e3, 1), fmt(BATCH * 8 / s8["step"], 0)])
    return table(rows, ["SoC", "host us / launch", "1 device: step, ms",
                        "1 device, graph replay: step, ms", "8 devices: step, ms",
                        "8 devices: host work, ms", "8 devices, 3 us floor per device task, ms",
                        "8 devices: img/s"])


def emu_check(path, arch):
    """Compares the launches of the modelled step (today's code, one device) with a
    SENET_EMU_STATS file of one whole step."""
    with open(path) as f:
        stats = json.load(f)
    net = build(arch)
    st = step(net, HARDWARE["910B"], 2, 1, "node", groups=1)   # senet bench: one group
    counts = {}
    for e in st.events:
        if e["kind"] == "launch":
            op = e["op"].split("(")[0]
            counts[op] = counts.get(op, 0) + 1
    ops = sorted(set(counts) | {k for k in stats if k.startswith("aclnn")
                                and not k.endswith("GetWorkspaceSize")})
    rows, same = [], True
    for op in ops:
        m, s = counts.get(op, 0), stats.get(op, 0)
        same &= m == s
        rows.append([op, m, s, "" if m == s else "DIFFERENT"])
    print(table(rows, ["aclnn launch", "model", "emulator", ""]))
    print("\n%s: model %d launches, emulator %d" % ("agree" if same else "DISAGREE",
                                                    sum(counts.values()),
                                                    sum(r[2] for r in rows)))
    return 0 if same else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="every event of one seresnet18 step "
                    "(910B, 1 device, today's code) as JSON lines")
    ap.add_argument("--emu-stats", metavar="FILE",
                    help="a SENET_EMU_STATS file of one seresnet18 O2 training step on the "
                    "emulated 910B: `senet bench --train --warmup 0 --iters 1` (see the doc, "
                    "section 1)")
    args = ap.parse_args()
    if args.emu_stats:
        return emu_check(args.emu_stats, "seresnet18")
    nets = [build("seresnet18"), build("seresnet50")]
    if args.json:
        for e in step_today(nets[0], HARDWARE["910B"], BATCH, 1, "node").events:
            print(json.dumps(e, sort_keys=True))
        return 0
    print("## Inputs\n")
    print(report_inputs())
    for net in nets:
        print("\n## %s: %.2fM trainable parameters\n" % (net["arch"],
                                                         trainable_params(net) / 1e6))
        print(report_arch(net))
    print("\n## Gradient all-reduce (fp32, whole model, bandwidth term only)\n")
    print(report_allreduce(nets))
    print("\n## Step time (batch %d per device, per-launch host cost %.0f us)\n"
          % (BATCH, HOST["launch_us"]))
    print(report_steps(nets))
    for derate, what in ((1.0, "device at the roofline"),
                         (0.4, "device at 40% of the roofline, a calibration: see the doc")):
        print("\n## Sensitivity to the host cost of a launch (seresnet18, %s)\n" % what)
        print(report_sensitivity(nets[0], derate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
