#!/usr/bin/env bash
# The planners on the GPU machine: codl bench for the five paper models, CPU (bf16) with
# the GPU (fp16) at 8 SMs and whole; the model profiles are cached in $CODL_CACHE_DIR
# (written to $OUT/cache.tgz; a .devcache/cache.tgz from an earlier run is unpacked first).
# Usage: OUT=dir MODELS="fst vgg16" SMS="8 0" [REPORT=1] [ITERS=20] [LIMIT=200] [FLAGS="--fastest-kernels"]
#        scripts/planners_gpu.sh   (FLAGS: more codl bench options, e.g. --budget 1)
# (REPORT=1 adds --report $OUT/<model>-<sms>-report: results, per-op CSV, trace, plots)
set -u
OUT=${OUT:-/tmp/codl-planners}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1 CODL_CACHE_DIR=$OUT/cache
[ -f .devcache/cache.tgz ] && tar -xzf .devcache/cache.tgz -C "$OUT"
for sms in ${SMS:-8 0}; do
  for m in ${MODELS:-fst vgg16 yolov2 posenet retinaface}; do
    limit=$([ "$sms" = 0 ] && echo "" || echo "--sm-limit $sms")
    tag=$m-$([ "$sms" = 0 ] && echo full || echo "${sms}sm")
    timeout ${LIMIT:-200} python3 -m codl.cli bench "$m" --native $limit -n ${ITERS:-20} \
      --strategies ${STRATEGIES:-layer-switch,mulayer,codl,oracle} --json "$OUT/$tag.json" ${FLAGS:-} \
      ${REPORT:+--report "$OUT/$tag-report"} > "$OUT/$tag.log" 2>&1
    echo "$tag rc $?"; grep -v "op/s\|it/s\|^codl:" "$OUT/$tag.log" | tail -22
  done
done
tar -czf "$OUT/cache.tgz" -C "$OUT" cache && rm -rf "$OUT/cache"
