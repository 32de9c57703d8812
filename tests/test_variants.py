"""Every BigNet variant: its size, what it really allocates, its outputs, saving and moving it."""

import io

import pytest
import torch

from homework import half_precision, lora, low_precision, qlora
from homework.memory import MB, AllocationTrace, parameter_counts, theoretical_bytes
from homework.models import MODEL_NAMES, load_model

# (trainable, non-trainable, bytes): from the layer shapes and dtypes, worked out by hand.


LINEAR = 1024 * 1024  # weights of one of the 18 Linear layers


LAYER_NORMS = 5 * 2 * 1024


ADAPTERS = 18 * 2 * 32 * 1024  # LoRA rank 32, float32


EXPECTED_SIZES = {
    "bignet": (18_903_040, 0, 75_612_160),
    "half_precision": (LAYER_NORMS, 18 * (LINEAR + 1024), 18 * (LINEAR + 1024) * 2 + LAYER_NORMS * 4),
    "lora": (LAYER_NORMS + ADAPTERS, 18 * (LINEAR + 1024), 37_826_560 + ADAPTERS * 4),
    # 4-bit: per layer LINEAR / 2 bytes of codes and LINEAR / 16 float16 scales; float32 bias.
    "low_precision": (LAYER_NORMS + 18 * 1024, 18 * (LINEAR // 2 + LINEAR // 16), 11_911_168),
    "qlora": (LAYER_NORMS + ADAPTERS, 18 * (LINEAR // 2 + LINEAR // 16 + 1024), 11_911_168 + ADAPTERS * 4),
    # Trellis-coded: 17 layers of 4-bit codes (two to a byte); the last one has 672 rows of 3-bit codes and
    # 352 of 4-bit ones. Per layer one float32 scale and 1024 float16 biases.
    "lower_precision": (
        LAYER_NORMS,
        17 * (LINEAR // 2 + 1 + 1024) + 672 * 1024 * 3 // 8 + 352 * 1024 // 2 + 1 + 1024,
        17 * (LINEAR // 2 + 4 + 2048) + 672 * 1024 * 3 // 8 + 352 * 1024 // 2 + 4 + 2048 + LAYER_NORMS * 4,
    ),
}
# Mean and max absolute output difference from BigNet on 1024 random inputs: measured, then a margin.
# Measured: half 0.00006 / 0.00037, 4-bit 0.0198 / 0.121, trellis 0.0282 / 0.179. The trellis bound is
# bitsandbytes' NF4 with double quantization (0.0298): the reference must stay more accurate.


OUTPUT_BOUNDS = {
    "half_precision": (0.0002, 0.002),
    "lora": (0.0002, 0.002),
    "low_precision": (0.025, 0.2),
    "qlora": (0.025, 0.2),
    "lower_precision": (0.0298, 0.25),
}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_sizes_and_actual_memory(name, checkpoint_path):
    with AllocationTrace() as loading:
        net = load_model(name, checkpoint_path)
    trainable, frozen, size = EXPECTED_SIZES[name]
    assert parameter_counts(net) == (trainable, frozen)
    assert theoretical_bytes(net) == size
    assert loading.net == pytest.approx(size, rel=0.01)


def test_the_handouts_figures(checkpoint_path):
    assert [round(EXPECTED_SIZES[n][2] / MB, 2) for n in ("bignet", "half_precision", "low_precision")] == [72.11, 36.07, 11.36]
    assert EXPECTED_SIZES["lower_precision"][2] < 9 * MB


@pytest.mark.parametrize("name", OUTPUT_BOUNDS)
def test_outputs_close_to_bignet(name, checkpoint_path, inputs, reference_output):
    with torch.no_grad():
        diff = (load_model(name, checkpoint_path)(inputs) - reference_output).abs()
    mean_bound, max_bound = OUTPUT_BOUNDS[name]
    assert diff.mean() < mean_bound and diff.max() < max_bound
    assert diff.mean() > 0 or name in ("half_precision", "lora")  # a quantized model cannot be exact


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_state_dict_round_trip(name, checkpoint_path, inputs):
    net = load_model(name, checkpoint_path)
    with torch.no_grad():
        for p in net.parameters():  # train-like changes, adapters included, must survive saving
            if p.requires_grad:
                p.add_(0.01)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    fresh = type(net)()
    fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    with torch.no_grad():
        assert torch.equal(fresh(inputs[:16]), net(inputs[:16]))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_to_device_moves_everything(name, checkpoint_path):
    net = load_model(name, checkpoint_path, device="meta")
    assert {t.device.type for t in net.state_dict().values()} == {"meta"}
    if torch.cuda.is_available():
        cpu_net, cuda_net = load_model(name, checkpoint_path), load_model(name, checkpoint_path, "cuda")
        x = torch.randn(4, 1024)
        with torch.no_grad():
            assert torch.allclose(cuda_net(x.cuda()).cpu(), cpu_net(x), atol=1e-3)


@pytest.mark.parametrize("module, base_module", [(lora, half_precision), (qlora, low_precision)])
def test_lora_starts_as_its_base_and_trains_only_adapters(module, base_module, checkpoint_path, inputs):
    net, base = module.load(checkpoint_path), base_module.load(checkpoint_path)
    with torch.no_grad():
        assert torch.equal(net(inputs[:64]), base(inputs[:64]))
    adapters = {n: p for n, p in net.named_parameters() if ".lora_" in n}
    assert len(adapters) == 36 and all(p.dtype == torch.float32 and p.requires_grad for p in adapters.values())

    net(inputs[:64]).square().mean().backward()
    with_grad = {n for n, p in net.named_parameters() if p.grad is not None}
    layer_norms = {n for n in with_grad if n.split(".")[1] in "13579"}  # model.<odd>: the LayerNorms
    assert with_grad == set(adapters) | layer_norms and len(layer_norms) == 10
    assert all(adapters[n].grad.abs().sum() > 0 for n in adapters if n.endswith("lora_b.weight"))
