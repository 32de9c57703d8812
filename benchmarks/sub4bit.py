"""
The extra credit's reference scheme (homework/lower_precision.py: trellis-coded, under 4 bits) beside
the handout's 4-bit scheme and, where installed, bitsandbytes' NF4, on the three weight families,
same inputs, one run (a benchmark, not a test):

    python -m benchmarks.sub4bit
    git show dbe20d8:homework/lower_precision.py > /tmp/previous.py    # the 256-state trellis it replaced
    python -m benchmarks.sub4bit --previous /tmp/previous.py             # ... measured beside it

- bits/weight: every byte the model keeps * 8 / BigNet's 18,903,040 parameters (biases and LayerNorms in).
- weight bits: the same for the Linear weights alone: their codes, scales and codebooks, without biases.
- mean diff: |output - float32 BigNet's output| on random_inputs(1024, seed=0), per weight family.
- dB above bound: the Linear weights' squared error, relative to their variance, against the least any
  code with `weight bits` per weight can reach for Gaussian numbers (the rate-distortion bound, 2^(-2 R)).
  Gaussian numbers are the hardest to code, so for other weights the true bound is lower still.
- load: seconds, and as a ratio to the handout 4-bit scheme's load in this run, averaged over the families.
- on the default checkpoint: a 1024-input forward's time and peak memory, as a ratio to and a difference
  from the handout 4-bit scheme's (timed alternately in this run).
- the reference's trellis with other segment lengths (how many weights its encoder plans together), and
  with --previous, an earlier version of homework/lower_precision.py.
"""

import importlib.util
import math
import time

import fire
import torch

from benchmarks.libraries import (
    FAMILIES,
    PARAMETERS,
    bitsandbytes_model,
    failure,
    family_checkpoints,
    forward_ratio,
    homework_model,
    markdown_table,
    stored_bytes,
)
from homework import lower_precision
from homework.bignet import LayerNorm, load_weights
from homework.data import random_inputs
from homework.memory import MB, AllocationTrace

WEIGHTS = 18 * 1024 * 1024

SCHEMES = {
    "handout 4-bit, group 16": homework_model("low_precision"),
    f"lower_precision (4-state trellis, segments of {lower_precision.SEGMENT})": homework_model("lower_precision"),
    "bitsandbytes NF4 + double quant": bitsandbytes_model("nf4", True),
}


def trellis_with_segments(segment: int):
    """The reference with another segment length, for the trade-off between accuracy and load time."""
    return lambda path: load_weights(lower_precision.TrellisBigNet(segment), path)


def previous_version(file: str):
    """An earlier homework/lower_precision.py, imported inside the homework package (its relative imports resolve there)."""
    spec = importlib.util.spec_from_file_location("homework.previous_lower_precision", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load


def linear_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if hasattr(m, "in_features") and not any(hasattr(c, "in_features") for c in m.children())]


@torch.no_grad()
def effective_weight(layer: torch.nn.Module) -> torch.Tensor:
    """The weight a layer really applies, whatever its storage: f(x) = x W^T + b, so W^T = f(I) - f(0)."""
    probe = torch.eye(layer.in_features + 1, layer.in_features)  # the identity, then a zero row
    out = layer(probe)
    return (out[:-1] - out[-1]).T


def non_weight_bytes(model: torch.nn.Module) -> int:
    """Biases and LayerNorms."""
    tensors = [getattr(m, "bias", None) for m in model.modules()] + [m.weight for m in model.modules() if isinstance(m, LayerNorm)]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


@torch.no_grad()
def measure(build, path, original: list[torch.Tensor], reference: torch.Tensor, inputs: torch.Tensor) -> dict:
    start = time.perf_counter()
    model = build(path)
    row = {"load s": time.perf_counter() - start, "model": model}
    stored = stored_bytes(model)
    row["bits/weight"] = stored * 8 / PARAMETERS
    row["weight bits"] = (stored - non_weight_bytes(model)) * 8 / WEIGHTS
    error = sum((effective_weight(layer) - w).square().sum() for layer, w in zip(linear_layers(model), original, strict=True))
    relative = (error / sum(w.square().sum() for w in original)).item()
    row["dB above bound"] = 10 * math.log10(relative / 2 ** (-2 * row["weight bits"]))
    row["mean diff"] = (model(inputs) - reference).abs().mean().item()
    return row


@torch.no_grad()
def main(repeats: int = 3, previous: str | None = None):
    schemes = dict(SCHEMES)
    schemes.update({f"lower_precision, segments of {n}": trellis_with_segments(n) for n in (64, 256)})
    if previous:
        schemes[f"previous lower_precision ({previous})"] = previous_version(previous)
    torch.manual_seed(0)
    inputs = random_inputs(1024, seed=0)
    paths = family_checkpoints()
    floats = {family: homework_model("bignet")(path) for family, path in paths.items()}
    with AllocationTrace():  # the profiler's one-time start-up
        pass
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU", flush=True)
    rows = {}
    for name, build in schemes.items():
        try:
            rows[name] = {
                family: measure(build, path, [layer.weight for layer in linear_layers(floats[family])], floats[family](inputs), inputs)
                for family, path in paths.items()
            }
        except Exception as e:  # not installed, or fails on this machine: say why, go on
            rows[name] = {"error": failure(e)}
        print(f"  {name}: {rows[name].get('error', 'done')}", flush=True)

    handout_rows = rows["handout 4-bit, group 16"]
    handout = handout_rows["default"]["model"]
    with AllocationTrace() as trace:
        handout(inputs)
    handout_peak = trace.peak
    columns = (
        ["bits/weight", "weight bits"]
        + [f"mean diff {f}" for f in FAMILIES]
        + [f"dB above bound {f}" for f in FAMILIES]
        + ["load s", "load vs 4-bit", "fwd b=1024 vs 4-bit", "fwd peak vs 4-bit"]
    )
    cells_by_scheme = {}
    for name, row in rows.items():
        if "error" in row:
            cells_by_scheme[name] = row["error"]
            continue
        default = row["default"]
        model = default["model"]
        with AllocationTrace() as trace:
            model(inputs)
        cells = [f"{default['bits/weight']:.2f}", f"{default['weight bits']:.2f}"]
        cells += [f"{row[f]['mean diff']:.4f}" for f in FAMILIES] + [f"{row[f]['dB above bound']:.2f}" for f in FAMILIES]
        load_ratio = sum(row[f]["load s"] / handout_rows[f]["load s"] for f in FAMILIES) / len(FAMILIES)
        cells += [
            f"{default['load s']:.2f}",
            f"{load_ratio:.1f}x",
            f"{forward_ratio(model, handout, inputs, repeats, inner=2):.2f}x",
            f"{(trace.peak - handout_peak) / MB:+.1f} MB",
        ]
        cells_by_scheme[name] = cells
    print("\n" + markdown_table(columns, cells_by_scheme))


if __name__ == "__main__":
    fire.Fire(main)
