"""The GPU figures of benchmarks/profiling.py, from profiler events made by hand (no GPU needed)."""

from __future__ import annotations

from torch.autograd import DeviceType
from torch.autograd.profiler_util import EventList, FunctionEvent

from benchmarks.profiling import device_busy_s, kernel_launches


def event(number: int, name: str, start_us: int, end_us: int, device_type: DeviceType) -> FunctionEvent:
    extra = {"device_index": 0} if device_type == DeviceType.CUDA else {}
    return FunctionEvent(
        id=number,
        name=name,
        thread=0,
        start_us=start_us,
        end_us=end_us,
        device_type=device_type,
        use_device="cuda",
        stack=[],
        **extra,
    )


def test_a_kernel_is_counted_once_however_many_rows_carry_its_time():
    matmul = event(1, "aten::mm", 0, 50, DeviceType.CPU)
    matmul.append_kernel("sm90_gemm", 0, 100)  # the operator's row carries its kernel's 100 us
    launches = [
        event(2, "cudaLaunchKernelExC", 5, 10, DeviceType.CPU),
        event(3, "cudaGraphLaunch", 20, 25, DeviceType.CPU),
    ]
    events = EventList([matmul, *launches, event(4, "sm90_gemm", 60, 160, DeviceType.CUDA)], use_device="cuda")
    events._build_tree()
    averages = events.key_averages()
    assert device_busy_s(averages) == 100e-6  # the sum over every row said 200 us
    assert kernel_launches(averages) == 2  # the Ex form and a graph's replay were not counted
