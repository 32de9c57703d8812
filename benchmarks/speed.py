"""
Load time and forward time of every homework variant, side by side in one run (not a test):

    python -m benchmarks.speed [--device cpu] [--repeats 5]

Each model's forward pass is timed alternately with float32 BigNet's, `repeats` rounds of a few
passes each: a machine that slows down for a while slows both, so the ratio (the median of the
rounds' ratios) holds where the times themselves drift, and it compares across machines.
"""

import statistics
import time

import fire
import torch

from homework.data import random_inputs
from homework.models import MODEL_NAMES, load_model, pick_device


def median_seconds(fn, repeats: int, device: torch.device) -> float:
    def timed():
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    fn()  # warm-up
    return statistics.median(timed() for _ in range(repeats))


def timed_against(model, baseline, x: torch.Tensor, repeats: int, inner: int) -> tuple[float, float]:
    """The model's forward time and its ratio to the baseline's: medians over `repeats` rounds that time the two alternately."""
    rounds = [
        (median_seconds(lambda: model(x), inner, x.device), median_seconds(lambda: baseline(x), inner, x.device)) for _ in range(repeats)
    ]
    return statistics.median(seconds for seconds, _ in rounds), statistics.median(seconds / base for seconds, base in rounds)


@torch.no_grad()
def main(device: str | None = None, repeats: int = 5, batch_sizes: tuple[int, ...] = (1, 1024)):
    device = pick_device(device)
    baseline = load_model("bignet", None, device)  # also creates the checkpoint if needed, outside the timings
    inputs = {b: random_inputs(b, device=device) for b in batch_sizes}
    print(f"device: {device}, threads: {torch.get_num_threads()}, median of {repeats} rounds, each timed alternately with bignet")
    print(f"{'model':<17}{'load (s)':>10}" + "".join(f"{f'fwd b={b}':>14}{'vs fp32':>9}" for b in batch_sizes), flush=True)
    for name in MODEL_NAMES:
        load_seconds = median_seconds(lambda: load_model(name, None, device), repeats, device)
        net = load_model(name, None, device)
        # At batch 1 a pass takes milliseconds: the median of several per round, so that one slow pass does not decide a round.
        timings = [timed_against(net, baseline, x, repeats, inner=max(1, 16 // b)) for b, x in inputs.items()]
        print(f"{name:<17}{load_seconds:>10.2f}" + "".join(f"{t * 1e3:>11.1f} ms{ratio:>8.2f}x" for t, ratio in timings), flush=True)


if __name__ == "__main__":
    fire.Fire(main)
