#!/usr/bin/env bash
# Single-processor baselines on the GPU machine: the GPU test suite, then `codl run` of
# each model on the CPU and on CUDA, fp32 and each processor's fast type.
# Usage: OUT=results_dir scripts/gpu_baselines.sh [models...]
set -u
OUT=${OUT:-/tmp/codl-baselines}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
models=${*:-"vgg16 yolov2 posenet fst retinaface resnet50 mobilenetv2 vit"}
python3 -m pytest -q tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -5
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
for m in $models; do
  for cfg in "cpu fp32" "cpu bf16 --channels-last" "cuda fp32" "cuda fp16 --channels-last"; do
    set -- $cfg
    dev=$1; dt=$2; shift 2
    tag="${m}_${dev}_${dt}"
    echo "== codl run $m -d $dev --dtype $dt $* -n 30 --warmup 5"
    python3 -m codl.cli run "$m" -d "$dev" --dtype "$dt" "$@" -n 30 --warmup 5 --json "$OUT/$tag.json" 2>>"$OUT/progress.log" \
      | grep -E "^(model|processor|check|  median|  p90)" | sed "s/^/$tag  /"
  done
done
python3 - "$OUT" <<'PY'
import json, glob, os, sys
rows = []
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*_*_*.json"))):
    d = json.load(open(f))
    p = d["processor"]; l = d["latency_ms"]
    rows.append(f"| {d['model'].split(' ')[0]} | {p['device']} | {p['dtype']}{' NHWC' if p['channels_last'] else ''} | "
                f"{l['median_ms']:.3f} | {l['p90_ms']:.3f} | {l['min_ms']:.3f} | {d['check']['rel_l2_error']:.1e} |")
open(os.path.join(sys.argv[1], "table.md"), "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
PY
