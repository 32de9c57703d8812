"""homework/memory.py: what a model should take, and what the allocator really handed out."""

import torch

from homework import half_precision
from homework.memory import AllocationTrace, measurable, parameter_counts, theoretical_bytes


def test_a_hidden_float32_copy_shows_in_actual_memory(checkpoint_path):
    class SneakyHalfBigNet(half_precision.HalfBigNet):
        def load_state_dict(self, state_dict, *args, **kwargs):
            self.stash = [v.clone() for v in state_dict.values()]  # a plain attribute: not a parameter or buffer
            return super().load_state_dict(state_dict, *args, **kwargs)

    with AllocationTrace() as loading:
        net = half_precision.load_weights(SneakyHalfBigNet(), checkpoint_path)
    assert theoretical_bytes(net) == 18 * (1024 * 1024 + 1024) * 2 + 5 * 2 * 1024 * 4  # float16 Linear layers, float32 LayerNorms
    assert loading.net > 2.9 * theoretical_bytes(net)  # 36 MB of float16 plus 72 MB of float32


def test_counts_and_bytes_from_sizes_and_dtypes():
    layer = torch.nn.Linear(4, 3).half()
    layer.register_buffer("codes", torch.zeros(10, dtype=torch.uint8))
    layer.bias.requires_grad_(False)
    assert parameter_counts(layer) == (12, 3 + 10)
    assert theoretical_bytes(layer) == (12 + 3) * 2 + 10


def test_a_trace_measures_what_is_allocated_and_kept():
    with AllocationTrace() as trace:
        kept = torch.zeros(1024, 256)
        torch.ones(4096, 256)  # freed at once
    assert trace.net == kept.numel() * 4 and trace.peak >= 4096 * 256 * 4


def test_memory_is_measured_where_the_allocator_reports_it():
    assert measurable(torch.device("cpu")) == (torch.device("cpu"), "")
    device, note = measurable(torch.device("mps"))
    assert device == torch.device("cpu") and "mps allocator does not report" in note
