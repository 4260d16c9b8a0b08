#!/usr/bin/env python3
"""Runs a command and reports the peak memory of its whole process tree, as one JSON line on
stderr: `peak_pss_mib` (the peak, over samples every 100 ms, of the sum of the proportional set
sizes of the command and all its descendants: pages shared between processes, such as a
DataLoader's forked workers and their parent, counted once in all), `peak_rss_mib` (the same
sum of resident set sizes, which counts shared pages once per process), `max_single_rss_mib`
(the largest resident set of one process, what `/usr/bin/time -v` reports) and `wall_s`.

    python3 scripts/peak_memory.py target/release/senet validate ...
    python3 scripts/peak_memory.py $P/venv-torch/bin/python scripts/timm_validate_peer.py ...

Standard library only (reads /proc); Linux. The command's exit status is passed on.
"""
import json
import os
import resource
import subprocess
import sys
import time


def children_of():
    """Maps each process id to the ids of its children, from /proc/<pid>/stat."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def tree(root):
    """The process ids of `root` and all its descendants."""
    kids = children_of()
    todo, seen = [root], []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo.extend(kids.get(pid, []))
    return seen


def rollup_kib(pid):
    """(Pss, Rss) of one process in KiB, from /proc/<pid>/smaps_rollup; (0, 0) once it is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def main(argv):
    if not argv:
        sys.exit(__doc__)
    start = time.monotonic()
    proc = subprocess.Popen(argv)
    peak_pss = peak_rss = 0
    pids, samples = [proc.pid], 0
    while proc.poll() is None:
        # Walking all of /proc costs more than reading a few rollups: refresh the tree 2x/s.
        if samples % 5 == 0:
            pids = tree(proc.pid)
        samples += 1
        sizes = [rollup_kib(pid) for pid in pids]
        peak_pss = max(peak_pss, sum(s[0] for s in sizes))
        peak_rss = max(peak_rss, sum(s[1] for s in sizes))
        time.sleep(0.1)
    wall = time.monotonic() - start
    single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = {
        "peak_pss_mib": round(peak_pss / 1024, 1),
        "peak_rss_mib": round(peak_rss / 1024, 1),
        "max_single_rss_mib": round(single / 1024, 1),
        "wall_s": round(wall, 2),
    }
    print(json.dumps(report), file=sys.stderr)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main(sys.argv[1:])
