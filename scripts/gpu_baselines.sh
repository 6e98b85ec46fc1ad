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
echo "== onnxruntime CPU (peer), fp32, same models"
python3 - "$OUT" $models <<'PY' | tee "$OUT/ort.txt"
import os, sys, time, numpy as np, onnxruntime as ort
from codl import zoo
from codl.frontends import export_onnx
for name in sys.argv[2:]:
    module, x = zoo.build(name)
    opts = ort.SessionOptions(); opts.intra_op_num_threads = os.cpu_count()
    sess = ort.InferenceSession(export_onnx(module, x), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.numpy()}
    for _ in range(5): sess.run(None, feed)
    t = []
    for _ in range(30):
        s = time.perf_counter(); sess.run(None, feed); t.append((time.perf_counter() - s) * 1e3)
    print(f"| {name} | onnxruntime {ort.__version__} CPU, {os.cpu_count()} threads | float32 | {np.median(t):.3f} | {np.percentile(t, 90):.3f} | {min(t):.3f} |")
PY
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
tar -C "$OUT" -czf "$OUT/runs.tar.gz" $(cd "$OUT" && ls *.json progress.log)
rm -f "$OUT"/*_*_*.json
