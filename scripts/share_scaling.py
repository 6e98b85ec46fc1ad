"""How a partial op's time grows with its share, on each processor: for every conv and
linear of a model, the kernel the session runs for a share s of the output (rows, or
output channels on a multiple of 8) is timed alone on its sliced inputs, and reported
as time / (s * whole time): 1.0 means the share costs its fraction.

Usage (GPU machine)::

    PYTHONPATH=src python3 scripts/share_scaling.py --models vgg16,yolov2 --sm-limit 8 --threads 15
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from codl import zoo
from codl.bench.run import time_back_to_back
from codl.frontends import from_torch
from codl.ir import OpKind
from codl.ir.regions import full_box, relative
from codl.ops import family
from codl.plan import Placement, Plan, split_dims
from codl.processors import Processor, typed_processor
from codl.runtime import ReferenceRunner
from codl.runtime.reference import to_processor
from codl.runtime.schedule import own_box

SHARES = (0.1, 0.25, 0.5, 0.75)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="vgg16,yolov2")
    ap.add_argument("--sm-limit", type=int, default=8)
    ap.add_argument("--threads", type=int, default=15)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    procs = {"cpu": typed_processor("cpu", native=True, threads=args.threads)}
    if torch.cuda.is_available():
        procs["gpu"] = typed_processor("cuda", native=True, sm_limit=args.sm_limit)
    for name in args.models.split(","):
        module, x = zoo.build(name)
        graph = from_torch(module, x, name=name)
        values = ReferenceRunner(graph, Processor.parse("cpu")).run_all(x)
        ratios: dict[tuple[str, str, float], list[float]] = {}
        for node in graph.nodes:
            if node.op not in (OpKind.CONV, OpKind.LINEAR):
                continue
            fam, out = family(node.op), graph.spec(node.outputs[0])
            ins = [graph.spec(i) for i in node.inputs]
            whole_inputs = [torch.from_numpy(graph.constants[i].copy()) if graph.is_constant(i) else values[i]
                            for i in node.inputs]
            for pname, proc in procs.items():
                proc.activate()
                args_whole = [to_processor(t, proc) for t in whole_inputs]
                kernel = fam.kernel(node)
                with proc.work_context():
                    whole = statistics.median(time_back_to_back(lambda: kernel(*args_whole), proc, 5, 2)[0])
                for dim in split_dims(graph, node.name):
                    for share in SHARES:
                        plan = Plan(graph.name, {node.name: Placement(dim, share)})
                        box = own_box(graph, node, plan, 1)
                        if box is None or box == full_box(out.shape):
                            continue
                        sliced = [to_processor(t[relative(b, full_box(t.shape))].contiguous(), proc)
                                  for t, b in zip(whole_inputs, fam.input_boxes(node, ins, out, box))]
                        part = fam.partial_kernel(node, ins, out, box)
                        axis = fam.split_axes(node, ins, out)[dim]
                        frac = (box[axis][1] - box[axis][0]) / out.shape[axis]
                        with proc.work_context():
                            t = statistics.median(time_back_to_back(lambda: part(*sliced), proc, 5, 2)[0])
                        ratios.setdefault((pname, dim.value, share), []).append(t / (frac * whole))
        print(f"{name}: partial time / (share x whole time), median [p25-p75] over its convs and linears")
        for (pname, dim, share), r in sorted(ratios.items()):
            r.sort()
            print(f"  {pname:<4} {dim:<3} share {share:<5} {statistics.median(r):5.2f} "
                  f"[{r[len(r) // 4]:.2f}-{r[3 * len(r) // 4]:.2f}] ({len(r)} ops)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
