"""torch.profiler around one call, printed the same way by every benchmark that offers ``--profile``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.autograd import DeviceType

# The runtime's and the driver's launch calls and their Ex forms (cuBLAS on Hopper, Triton's launcher), and a CUDA
# graph's replay, which launches its kernels in one call.
LAUNCH_CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaGraphLaunch")


@dataclass
class Profile:
    result: object  # what the profiled call returned
    wall_s: float  # the call's wall time under the profiler
    kernel_launches: int | None  # on a GPU only
    device_busy_s: float | None  # on a GPU only: the kernels' own time, to set against the wall time


def profiled(function, device: torch.device, rows: int = 20) -> Profile:
    """Runs ``function`` under torch.profiler and prints its operators by device time (CPU time on a CPU), then on
    a GPU by host time: the launches, copies and synchronisations that keep the GPU waiting."""
    cuda = device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as profiler:
        started = time.perf_counter()
        result = function()
        if cuda:
            torch.cuda.synchronize(device)
        wall_s = time.perf_counter() - started
    averages = profiler.key_averages()
    print(averages.table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=rows))
    if not cuda:
        return Profile(result, wall_s, None, None)
    print(averages.table(sort_by="self_cpu_time_total", row_limit=rows))
    return Profile(result, wall_s, kernel_launches(averages), device_busy_s(averages))


def kernel_launches(averages) -> int:
    return sum(event.count for event in averages if event.key.startswith(LAUNCH_CALLS))


def device_busy_s(averages) -> float:
    """The kernels' own time. Only the device's rows: an operator's row carries its kernels' time too, so a sum over
    every row counts each kernel twice, as torch's own table total does not."""
    kernels = [event for event in averages if event.device_type == DeviceType.CUDA and not event.is_user_annotation]
    return sum(event.self_device_time_total for event in kernels) / 1e6
