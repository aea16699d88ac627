"""What a worker machine has: CPU, memory and, through NVML when present, GPUs."""

import os
from typing import Any, Dict, List, Optional

import psutil


def gpu_status() -> List[Dict[str, Any]]:
    try:
        import pynvml  # nvidia-ml-py, optional
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver / no device
        return []
    gpus = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append(
                {
                    "index": i,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "memory_total": int(mem.total),
                    "memory_used": int(mem.used),
                    "memory_free": int(mem.free),
                    "utilization": float(util.gpu) / 100.0,
                }
            )
    finally:
        pynvml.nvmlShutdown()
    return gpus


def machine_status() -> Dict[str, Any]:
    mem = psutil.virtual_memory()
    return {
        "cpu_count": os.cpu_count() or 1,
        "cpu_usage": psutil.cpu_percent(interval=None) / 100.0,
        "memory_total": int(mem.total),
        "memory_available": int(mem.available),
        "gpus": gpu_status(),
    }


def unheld_bytes(pid: Optional[int], reserved: int) -> int:
    """What a replica reserved and does not hold in memory yet: the reservation less the
    private memory of its process and the processes it started (vLLM's engine core).
    Pages mapped from a file (llama.cpp's weights) do not count as held: the kernel
    reclaims them under pressure, and memory_available counts them as free."""
    if not pid or not reserved:
        return reserved
    try:
        root = psutil.Process(pid)
        held = 0
        for proc in [root, *root.children(recursive=True)]:
            mem = proc.memory_info()
            held += max(0, mem.rss - getattr(mem, "shared", 0))
    except psutil.Error:
        return reserved
    return max(0, reserved - held)
