"""Where a session call spends host time with every node on the GPU (diagnostic)."""
import cProfile
import pstats
import statistics
import sys
import time

import torch

from codl import zoo
from codl.frontends import from_torch
from codl.ir.regions import Dim
from codl.plan import Placement, Plan
from codl.processors import Processor
from codl.runtime import ReferenceRunner
from codl.runtime.session import compile

torch.set_grad_enabled(False)
name = sys.argv[1] if len(sys.argv) > 1 else "vgg16"
module, x = zoo.build(name)
g = from_torch(module, x, name)
cpu, gpu = Processor.parse("cpu"), Processor.parse("cuda")
runner = ReferenceRunner(g, gpu)
session = compile(g, Plan.uniform(g, Placement(Dim.OC, 1.0)), (cpu, gpu))


def ref_io():
    outs = [o.cpu() for o in runner(x)]
    return outs


ways = {"ref_io": ref_io, "session": lambda: session(x)}
for fn in ways.values():
    for _ in range(10):
        fn()
times = {k: [] for k in ways}
for _ in range(40):
    for k, fn in ways.items():
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(5):
            fn()
        times[k].append((time.perf_counter() - t) / 5 * 1e3)
print({k: round(statistics.median(v), 4) for k, v in times.items()}, {k: round(min(v), 4) for k, v in times.items()})
for k, fn in ways.items():
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(100):
        fn()
    pr.disable()
    print("=====", k)
    pstats.Stats(pr).sort_stats("tottime").print_stats(12)
