"""How stable are CPU measurements on this machine, by timing method? (the evidence
for `codl profile --canary`; docs/results/predictor.md, session 9)

    python scripts/cpu_canary_check.py THREADS [SAMPLES [PASSES]]   (from the repository root)

Takes SAMPLES conv and linear samples (0.03-4 ms) of the GPU machine's one-thread fp32
profile and measures each in PASSES whole passes by several methods side by side: the
median or fastest of 5 blocks of ~1 ms, of 30 or 100 blocks of ~0.3 / 0.1 ms, pinned to
one core, scaled by a 256x256 GEMM canary timed just before (``min30_canary``, what
``--canary`` does), or interleaved with canaries. Prints how often the passes agree
within +-10% and writes $OUT/noise_tTHREADS.json (raw times included).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "src")
from codl.processors import Processor
from codl.bench.run import _host_block
from cpu_clock_check import noise_samples  # the same samples (this script's folder is on the path)

out = os.environ.get("OUT", "/tmp")
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=20).stdout
    except Exception as e: return str(e)
info = {c: sh(c) for c in ["lscpu", "cat /sys/fs/cgroup/cpu.max", "cat /sys/fs/cgroup/cpu.stat", "uptime", "cat /proc/loadavg",
                           "grep MHz /proc/cpuinfo | head -20", "ps aux --sort=-%cpu | head -15", "cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"]}
def stat():
    f = open("/proc/stat").readline().split()[1:]
    return [int(v) for v in f]
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
nsamp = int(sys.argv[2]) if len(sys.argv) > 2 else 60
passes = int(sys.argv[3]) if len(sys.argv) > 3 else 3
proc = Processor.parse("cpu", threads=threads)
proc.activate()
samples, calls = noise_samples(proc, nsamp)
built = list(zip(samples, calls))
canary_a = torch.randn(256, 256); canary_b = torch.randn(256, 256)
canary = lambda: torch.mm(canary_a, canary_b)
def blocks(fn, target_ms, n):
    blk = _host_block(fn, proc)
    fn(); fn()
    one = min(blk(1) for _ in range(2))
    b = int(min(1000, max(1, np.ceil(target_ms / max(one, 1e-6)))))
    return [blk(b) for _ in range(n)]
METHODS = ["median5", "min5", "median30", "min30", "min30_pinned", "min30_canary", "min100", "ilv_gemm", "ilv_copy", "ilv_both", "ilv_gemm_min", "ilv_raw_min"]
res = {m: [[None] * passes for _ in samples] for m in METHODS}
copy_src = torch.randn(1 << 20); copy_dst = torch.empty_like(copy_src)
copier = lambda: copy_dst.copy_(copy_src)
def interleaved(fn, target_ms, n):
    blk, cg, cc = _host_block(fn, proc), _host_block(canary, proc), _host_block(copier, proc)
    fn(); fn(); canary(); copier()
    def size(b):
        one = min(b(1) for _ in range(2))
        return int(min(1000, max(1, np.ceil(target_ms / max(one, 1e-6)))))
    nb, ng, nc = size(blk), size(cg), size(cc)
    g, c, s = [cg(ng)], [cc(nc)], []
    for _ in range(n):
        s.append(blk(nb)); g.append(cg(ng)); c.append(cc(nc))
    g, c, s = np.array(g), np.array(c), np.array(s)
    gm, cm = (g[:-1] + g[1:]) / 2, (c[:-1] + c[1:]) / 2
    return s, gm, cm
REF = {}
canref = None; allcpus = os.sched_getaffinity(0)
s0 = stat(); t0 = time.time()
with torch.inference_mode():
    for p in range(passes):
        for i, (s, fn) in enumerate(built):
            a = blocks(fn, 1.0, 5)
            res["median5"][i][p] = float(np.median(a)); res["min5"][i][p] = min(a)
            c = min(blocks(canary, 0.3, 10))
            b = blocks(fn, 0.3, 30)
            res["median30"][i][p] = float(np.median(b)); res["min30"][i][p] = min(b)
            if canref is None: canref = c
            res["min30_canary"][i][p] = min(b) * canref / c
            res["min100"][i][p] = min(blocks(fn, 0.1, 100))
            sv, gm, cm = interleaved(fn, 0.3, 20)
            REF.setdefault("g", float(np.median(gm))); REF.setdefault("c", float(np.median(cm)))
            res["ilv_gemm"][i][p] = float(np.median(sv / gm)) * REF["g"]
            res["ilv_copy"][i][p] = float(np.median(sv / cm)) * REF["c"]
            res["ilv_both"][i][p] = float(np.median(sv / np.sqrt(gm / REF["g"] * cm / REF["c"])))
            res["ilv_gemm_min"][i][p] = float(np.min(sv / gm)) * REF["g"]
            res["ilv_raw_min"][i][p] = float(np.min(sv))
            if threads == 1:
                os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
                res["min30_pinned"][i][p] = min(blocks(fn, 0.3, 30))
                os.sched_setaffinity(0, allcpus)
            else:
                res["min30_pinned"][i][p] = 1.0
        print(f"pass {p} done {time.time()-t0:.0f}s", flush=True)
s1 = stat()
d = [b - a for a, b in zip(s0, s1)]
info["proc_stat_delta(user,nice,sys,idle,iowait,irq,softirq,steal)"] = d[:8]
summary = {}
for m, v in res.items():
    v = np.array(v, dtype=float)
    fam = np.array([s.family for s in samples])
    agr = []
    for p in range(1, passes):
        rel = np.abs(v[:, 0] - v[:, p]) / ((v[:, 0] + v[:, p]) / 2)
        agr.append(float(np.mean(rel <= 0.10)))
    spread = np.max(v, 1) / np.min(v, 1)
    summary[m] = {"agree10_vs_pass0": agr, "max_over_min_median": float(np.median(spread)), "within10_all_passes": float(np.mean(spread <= 1.10)),
                  "conv_within10": float(np.mean(spread[fam == 'conv'] <= 1.10)), "linear_within10": float(np.mean(spread[fam == 'linear'] <= 1.10))}
    print(m, json.dumps(summary[m]))
print(json.dumps(info["proc_stat_delta(user,nice,sys,idle,iowait,irq,softirq,steal)"]))
json.dump({"threads": threads, "summary": summary, "info": info, "raw": {m: v for m, v in res.items()},
           "samples": [s.__dict__ for s in samples]}, open(f"{out}/noise_t{threads}.json", "w"), indent=1)
