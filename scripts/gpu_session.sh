#!/usr/bin/env bash
# Co-execution checks on the GPU machine: the GPU test suites, then the exchange
# benchmark on the full GPU and on 8 SMs. Usage: OUT=dir scripts/gpu_session.sh
set -u
OUT=${OUT:-/tmp/codl-session}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
python3 -c "import cuda.bindings, torch; print('cuda-python', cuda.bindings.__version__, 'torch', torch.__version__)"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_gpu_session.py 2>&1 | tee "$OUT/gpu_tests.log" | tail -15
python3 -m codl.cli bench exchange -n 30 --json "$OUT/exchange.json" 2>&1 | tee "$OUT/exchange.txt" | grep -v "^codl:"
python3 -m codl.cli bench exchange -n 20 --sm-limit 8 --json "$OUT/exchange_8sm.json" 2>&1 | tee "$OUT/exchange_8sm.txt" | grep -v "^codl:"
