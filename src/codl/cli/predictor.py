"""``codl profile`` and ``codl predictor eval | fit``: measurements and the predictors
fitted on them."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import CodlError
from ..fingerprint import artifact_header
from ..processors import Processor
from .common import log, out_dir_of, processor_of, profile_file, write_json


def cmd_profile(args: argparse.Namespace) -> int:
    from .. import profile
    from ..profile.measure import NOISY_BELOW
    from ..profile.sampling import profile_samples

    devices = [d for d in args.device.split(",") if d]
    if len(devices) > 1:  # each device in turn, with the settings that apply to it and its own budget
        ones = []
        for device in devices:
            cpu = device.partition(":")[0] == "cpu"
            ones.append(argparse.Namespace(**{**vars(args), "device": device, "threads": args.threads if cpu else None,
                                              "sm_limit": None if cpu else args.sm_limit,
                                              "autotune": args.autotune and not cpu,
                                              "own_kernels": args.own_kernels, "canary": args.canary and cpu,
                                              "fastest_kernels": args.fastest_kernels and not cpu}))
        for one in ones:  # every device checked before the first is profiled for its whole budget
            processor_of(one)
        for one in ones:
            if cmd_profile(one):
                return 1
        return 0
    proc = processor_of(args)
    if args.transfers:
        return _profile_transfers(args, proc)
    families = args.ops.split(",")
    unknown = set(families) - {"conv", "linear"}
    if unknown:
        raise CodlError(f"--ops {sorted(unknown)}: profiled op families are conv, linear")
    pairs, ops = profile_samples(families, args.models, args.random, args.perturbed, args.seed)
    path = profile_file(args, proc)
    log(f"profiling {len(pairs)} samples ({ops} ops, whole and partial) on {proc.label} into {path}")
    added = profile.run_profile(proc, pairs, path, args.budget * 60, args.repeats, args.warmup, args.passes,
                                canary=args.canary)
    print(f"profile    {path}: {added} new measurements this run")
    for family, noise in profile.noise_floor(path).items():  # with two passes or more: how well they agree
        print(f"noise      {family}: two passes of a sample agree within +-10% for {noise['within_10']:.1%} "
              f"of {noise['samples']} samples")
        if noise["within_10"] < NOISY_BELOW:
            log(f"warning: {proc.label}'s {family} times vary between passes (other load, a shared host, changing "
                "clock speeds?): no predictor fitted on them can be judged finer than that"
                + ("; try --canary, pinning to a core (taskset) and an idle machine" if proc.kind.value == "cpu"
                   else "; try an idle machine"))
    return 0


def _profile_transfers(args: argparse.Namespace, proc: Processor) -> int:
    from ..profile.transfer import run_transfer_profile, transfer_pair

    cpu, cuda, path = transfer_pair(proc, out_dir_of(args))
    log(f"profiling data sharing between {cpu.label}" + (f" and {cuda.label}" if cuda else "") + f" into {path}")
    added = run_transfer_profile(cpu, cuda, path, passes=args.passes)
    print(f"profile    {path}: {added} new measurements this run")
    return 0


def _eval_transfers(args: argparse.Namespace) -> int:
    from ..predict.transfer import evaluate_transfers
    from ..profile.transfer import load_transfers, transfer_pair

    path = Path(args.profile) if args.profile else transfer_pair(processor_of(args), out_dir_of(args))[2]
    results = evaluate_transfers(load_transfers(path))
    print(f"data-sharing model on {path.name} (fitted on every other size, scored on the sizes between)")
    print(f"{'kind':<12} {'+-10%':>6} {'+-15%':>6} {'RMSPE':>7} {'fixed us':>9} {'GB/s large':>10} {'split':>9}")
    for kind, r in results.items():
        if r["n_test"]:
            print(f"{kind:<12} {r['within_10']:>6.1%} {r['within_15']:>6.1%} {r['rmspe']:>7.3f} "
                  f"{r['fixed_ms'] * 1e3:>9.1f} {r['gb_per_s']:>10.1f} {r['split_bytes']:>9.3g}")
        else:
            print(f"{kind:<12} measured {r['measured_ms'] * 1e3:.1f} us")
    write_json(args.json, {**artifact_header("transfer-eval"), "profile": str(path), "results": results})
    return 0


def _profile_rows(args: argparse.Namespace) -> tuple[Path, dict[str, Any], list]:
    """The profile a predictor command works on, what it measured, and its rows."""
    from ..predict.profiles import profile_configs
    from ..profile.measure import locate_profile

    # --profile: any profile, possibly from another machine: its own settings say what it measured
    path, described = locate_profile(None if args.profile else processor_of(args),
                                     Path(args.profile) if args.profile else None, out_dir_of(args))
    return path, described, profile_configs(path)


def cmd_predictor_fit(args: argparse.Namespace) -> int:
    from ..atomic import write_atomic
    from ..fingerprint import fingerprint
    from ..predict.profiles import fit_per_family
    from ..profile.measure import profile_settings

    path, described, rows = _profile_rows(args)
    out_dir = Path(args.models or path.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = Counter(c.family for _, c, _ in rows)
    # what the predictor is valid for: the processor and machine the profile measured
    measured_on = profile_settings(path).get("fingerprint", {}) if path.with_suffix(".json").exists() else {}
    for family, model in fit_per_family(rows, described, args.predictor, args.seed).items():
        target = out_dir / f"{path.stem}.{args.predictor}.{family}.json"
        fitted_on = {"profile": path.name, "processor": described, "fingerprint": measured_on or fingerprint()}
        write_atomic(target, json.dumps({**model.to_json(), "fitted_on": fitted_on}, separators=(",", ":")))
        print(f"{family:<7} {args.predictor} predictor fitted on {samples[family]} samples: {target} "
              f"({target.stat().st_size} bytes)")
    return 0


def cmd_predictor_eval(args: argparse.Namespace) -> int:
    from .. import cli, profile
    from ..predict.evaluate import evaluate_splits

    if args.transfers:
        return _eval_transfers(args)
    if args.splits < 1:
        raise CodlError("--splits must be at least 1")
    path, described, rows = _profile_rows(args)
    # through codl.cli, where tests stand in a few ops for the zoo's
    model_ops = cli._model_op_keys() if args.model_ops else frozenset()
    results = evaluate_splits(rows, described, range(args.seed, args.seed + args.splits), model_ops=model_ops)
    noise = profile.noise_floor(path)
    print(f"predictors on {path.name} ({len(rows)} measured samples; held out by op"
          + (f"; means over {args.splits} random splits, +-10% range in brackets)" if args.splits > 1 else ")"))
    if not noise:
        print("noise floor: not measured (profiled in one pass; `codl profile --passes 2` measures it)")
    for family, n in noise.items():
        print(f"noise floor, {family}: two passes of the same sample agree within +-10% for {n['within_10']:.1%} "
              f"(+-5%: {n['within_5']:.1%}) of {n['samples']} samples")
    print(f"{'family':<8} {'predictor':<9} {'+-5%':>6} {'+-10%':>6} {'+-15%':>6} {'RMSPE':>7} {'bytes':>6} {'us/pred':>8} {'train/test':>11}")
    for family, models in results.items():
        for name, m in models.items():
            spread = f" [{m['within_10_min']:.1%}-{m['within_10_max']:.1%}]" if args.splits > 1 else ""
            print(f"{family:<8} {name:<9} {m['within_5']:>6.1%} {m['within_10']:>6.1%} {m['within_15']:>6.1%} "
                  f"{m['rmspe']:>7.3f} {m['size_bytes']:>6.0f} {m['us_per_prediction']:>8.1f} "
                  f"{m['n_train']:>5.0f}/{m['n_test']:<5.0f}{spread}")
    for family, models in results.items():
        if any("within_10_model_ops" in m for m in models.values()):
            shares = ", ".join(f"{name} {m['within_10_model_ops']:.1%}" for name, m in models.items())
            n = next(iter(models.values()))["n_model_ops"]
            print(f"{family:<8} +-10% on the built-in models' own ops (~{n:.0f} test samples per split): {shares}")
    write_json(args.json, {**artifact_header("predictor-eval"), "profile": str(path),
                           "processor": described, "noise_floor": noise, "results": results})
    return 0
