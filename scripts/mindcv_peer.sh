#!/usr/bin/env bash
# Peer test against MindCV 0.3 / MindSpore 2.10 (CPU): MindCV's own train.py resumes a senet
# training run and MindCV's validate.py measures the result (see scripts/mindcv_peer.py).
#
# Needs, and says clearly when it cannot run without them (exit 0, "NOT RUN"):
# - a Python with MindSpore and MindCV 0.3: $SENET_PEER_VENV (default
#   ~/.cache/senet-peers/venv-ms), e.g. `python3 -m venv DIR && DIR/bin/pip install
#   mindspore==2.10.0 mindcv==0.3.0`;
# - MindCV v0.3.0's scripts (train.py, validate.py, config.py are not in its wheel):
#   $SENET_MINDCV_SRC (default ~/.cache/senet-peers/mindcv-v0.3.0), e.g.
#   `git -C <a mindcv clone> archive v0.3.0 | tar -x -C ~/.cache/senet-peers/mindcv-v0.3.0`.
# With SENET_REQUIRE_PEERS=1 a missing peer is a failure instead.
# Usage: scripts/mindcv_peer.sh [SENET_BINARY]   (default: builds target/release/senet)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${SENET_PEER_VENV:-$HOME/.cache/senet-peers/venv-ms}
src=${SENET_MINDCV_SRC:-$HOME/.cache/senet-peers/mindcv-v0.3.0}
not_run() {
  echo "mindcv peer test: NOT RUN: $1"
  [ "${SENET_REQUIRE_PEERS:-0}" = 1 ] && exit 1
  exit 0
}
[ -x "$venv/bin/python" ] || not_run "no Python at $venv/bin/python (set SENET_PEER_VENV)"
versions=$("$venv/bin/python" -c 'import mindspore, mindcv; print(mindspore.__version__, mindcv.__version__)' 2>/dev/null) \
  || not_run "$venv has no MindSpore + MindCV"
[ "${versions#* }" = 0.3.0 ] || not_run "$venv has MindCV ${versions#* }, not 0.3.0"
[ -f "$src/train.py" ] && grep -q '"0.3.0"' "$src/mindcv/version.py" 2>/dev/null \
  || not_run "no MindCV v0.3.0 source (train.py) at $src (set SENET_MINDCV_SRC)"
if [ $# -ge 1 ]; then
  senet=$1
else
  cargo build --release -q
  senet=target/release/senet
fi
echo "mindcv peer test: MindSpore ${versions% *}, MindCV ${versions#* } ($src)"
exec "$venv/bin/python" scripts/mindcv_peer.py "$senet" "$src"
