#!/usr/bin/env bash
# Profiles for the latency predictors on the GPU machine, each processor in its native
# type (docs/results/predictor.md). Usage: scripts/predictor_profiles.sh WHICH BUDGET_MIN
#   WHICH: cuda | cuda-sm8 | cpu | transfers     results and logs go to $OUT (or ./predictor-out)
#   EVAL=0 skips the evaluation (run it later with `codl predictor eval --profile`).
#   FLAGS="--autotune" adds processor flags; PROFILES=dir resumes profiles kept there.
set -euo pipefail
which=$1 budget=$2
out=${OUT:-predictor-out}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
case $which in
  cuda) flags=(-d cuda --dtype fp16 --channels-last) ;;
  cuda-sm8) flags=(-d cuda --dtype fp16 --channels-last --sm-limit 8) ;;
  cpu) flags=(-d cpu --dtype bf16 --channels-last) ;;
  transfers)
    python -m codl.cli profile --transfers -d cuda --dtype fp16 --channels-last --out "$out/profiles" 2> "$out/transfers.profile.log" | tee -a "$out/transfers.log"
    python -m codl.cli predictor eval --transfers -d cuda --dtype fp16 --channels-last --out "$out/profiles" --json "$out/transfers.eval.json" 2>&1 | tee -a "$out/transfers.log"
    exit ;;
  *) echo "unknown processor $which" >&2; exit 2 ;;
esac
flags+=(${FLAGS:-})
profiles=${PROFILES:-$out/profiles}
start=$(date +%s)
python -m codl.cli profile "${flags[@]}" --random ${RANDOM_OPS:-150} --budget "$budget" --out "$profiles" 2> "$out/$which.profile.log" \
  | tee -a "$out/$which.log"
echo "profile wall seconds: $(( $(date +%s) - start ))" | tee -a "$out/$which.log"
[ "${EVAL:-1}" = 0 ] || python -m codl.cli predictor eval "${flags[@]}" --out "$profiles" --json "$out/$which.eval.json" 2>&1 | tee -a "$out/$which.log"
