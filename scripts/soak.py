"""Soak a co-executed plan: N calls of one session, memory and latency per window.

    PYTHONPATH=src python scripts/soak.py yolov2 --size 224 -n 10000 --window 500 --sm-limit 8 --json soak.json

The plan is a random one with every node split (seed ``--seed``; a plan file with
``--plan``); the CPU in bf16 and the GPU in fp16, channels-last, flags synchronisation.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from tqdm import tqdm

from codl import zoo
from codl.bench.soak import format_soak, soak, soak_summary
from codl.frontends import from_torch
from codl.ir import DType
from codl.plan import Plan, random_plan
from codl.processors import Processor
from codl.runtime.session import compile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", choices=list(zoo.MODELS))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("-n", "--calls", type=int, default=10_000)
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--plan", help="a plan JSON file instead of a random plan")
    ap.add_argument("--sm-limit", type=int)
    ap.add_argument("--sync", default="auto")
    ap.add_argument("--json")
    args = ap.parse_args()
    module, x = zoo.build(args.model, (args.size, args.size))
    graph = from_torch(module, x, name=args.model)
    with torch.no_grad():
        ref = module(x)
    expected = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    plan = Plan.from_json(json.loads(open(args.plan).read())) if args.plan else random_plan(graph, args.seed, whole_share=0.0)
    procs = (Processor.parse("cpu", dtype=DType.BFLOAT16, channels_last=True),
             Processor.parse("cuda", dtype=DType.FLOAT16, channels_last=True, sm_limit=args.sm_limit))
    session = compile(graph, plan, procs, sync=args.sync)
    t0 = time.perf_counter()
    with tqdm(total=args.calls, unit="call", mininterval=5) as bar:
        rows = soak(session, [x], expected, args.calls, args.window, progress=lambda i: bar.update(1))
    summary = soak_summary(rows) | {"wall_s": time.perf_counter() - t0, "model": args.model, "size": args.size,
                                    "sm_limit": args.sm_limit, "sync": session.sync_mode,
                                    "splits": sum(p.is_split for p in plan.placements.values()),
                                    "nodes": len(graph.nodes), "torch": torch.__version__}
    print(format_soak(rows))
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "windows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
