"""The hardware and software fingerprint stored in every artifact (profile, cost model,
plan, result), so that figures are never mixed across machines unknowingly."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from . import __version__

SCHEMA_VERSION = 1


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint() -> dict[str, Any]:
    """CPU model and cores, GPU name, SMs and driver where present, library versions."""
    fp: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "codl": __version__,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        fp.update(gpu=props.name, gpu_sms=props.multi_processor_count,
                  gpu_memory_mib=props.total_memory // 2**20, cuda_runtime=torch.version.cuda,
                  gpu_driver=_driver_version())
    return fp


def _driver_version() -> str | None:
    try:
        import pynvml  # from nvidia-ml-py, optional

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        return None


def artifact_header(kind: str) -> dict[str, Any]:
    """The fields every JSON artifact starts with."""
    return {"schema_version": SCHEMA_VERSION, "kind": kind, "codl_version": __version__,
            "fingerprint": fingerprint()}


def check_artifact(data: dict[str, Any], kind: str, version: int, what: str, error: type[Exception]) -> None:
    """Raise ``error`` unless ``data`` is an artifact of ``kind`` at schema ``version``."""
    if data.get("kind") != kind or data.get("schema_version") != version:
        raise error(f"not a codl {what} of schema {version} "
                    f"(kind={data.get('kind')!r}, schema_version={data.get('schema_version')!r})")
