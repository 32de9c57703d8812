"""
Memory, two ways: what a model's tensors should take (theoretical), and what the allocator really
handed out while it was built or run (measured). The two agree for an honest model; a model that
keeps a hidden float32 copy, in a plain attribute, a closure or a global, shows it in the second.
"""

import gc
import os
import sys
from contextlib import contextmanager
from itertools import accumulate

import torch
from torch._C._profiler import ProfilerActivity, ProfilerConfig, ProfilerState, RecordScope, _ExperimentalConfig
from torch.autograd import _disable_profiler, _enable_profiler, _prepare_profiler

MB = 2**20  # the handout's MB
# The allocators that report every allocation and free to PyTorch's profiler. Apple's MPS allocator
# reports none (aten/src/ATen/mps/MPSAllocator.mm), so a trace there would miss the model entirely.
REPORTING_DEVICES = ("cpu", "cuda")


def measurable(device: torch.device) -> tuple[torch.device, str]:
    """
    (where AllocationTrace can measure what `device` would hold, and a line saying so if that is elsewhere):
    `device` itself, or the CPU, where the same tensors take the same bytes.
    """
    if device.type in REPORTING_DEVICES:
        return device, ""
    return torch.device(
        "cpu"
    ), f"memory measured on the CPU: the {device.type} allocator does not report its allocations to PyTorch's profiler"


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, non-trainable) element counts; buffers, such as packed 4-bit weights, count as non-trainable."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trainable, frozen + sum(b.numel() for b in model.buffers())


def theoretical_bytes(model: torch.nn.Module) -> int:
    """What the model's parameters and buffers take, from their sizes and dtypes."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}  # count shared tensors once
    return sum(t.numel() * t.element_size() for t in tensors.values())


class AllocationTrace:
    """
    Records every allocation and free, on every device, while the `with` block runs, as PyTorch's
    allocators report them to its profiler. After the block:
      net:  bytes allocated in the block and still alive at its end (e.g. the model it built);
      peak: the highest amount allocated in the block at any moment, above where it started.
    """

    net: int = 0
    peak: int = 0

    def __enter__(self) -> "AllocationTrace":
        # Objects in reference cycles (a module holding its own bound hook, say) are freed only by the
        # garbage collector; let it run now rather than inside the block, where its frees would count.
        gc.collect()
        # What torch.profiler.profile(profile_memory=True) starts, less its record of every operator
        # call, which would cost time and, for a load of 100,000 small operations, a gigabyte:
        # operators are recorded only in the scopes named (USER_SCOPE: `record_function` blocks),
        # while the allocators' reports come in regardless. (The internal calls torch.profiler makes.)
        config = ProfilerConfig(
            ProfilerState.KINETO, report_input_shapes=False, profile_memory=True, with_stack=False, with_flops=False,
            with_modules=False, experimental_config=_ExperimentalConfig(),
        )  # fmt: skip
        with _quiet_stderr():
            _prepare_profiler(config, {ProfilerActivity.CPU})
            _enable_profiler(config, {ProfilerActivity.CPU}, {RecordScope.USER_SCOPE})
        return self

    def __exit__(self, *exc_info) -> None:
        gc.collect()  # and again at the end: garbage made in the block is not what it keeps
        with _quiet_stderr():
            results = _disable_profiler()
        # The raw event list keeps each allocation (+bytes) and free (-bytes) in time order;
        # the public summaries add them up per operator and lose the peak.
        events = results.events()
        changes = [e.nbytes() for e in sorted(events, key=lambda e: e.start_ns()) if e.name() == "[memory]"]
        running = list(accumulate(changes, initial=0))
        self.net, self.peak = running[-1], max(running)


@contextmanager
def _quiet_stderr():
    # Kineto, the profiler's backend, writes a log line to stderr each time it starts or stops.
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
