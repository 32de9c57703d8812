"""
Load time and forward time of every homework variant, side by side in one run (not a test):

    python -m benchmarks.speed [--device cpu] [--repeats 5]

Forward times are medians over `repeats` passes after a warm-up, printed as a ratio to float32
BigNet's time measured in the same run, so the figures compare across machines.
"""

import statistics
import time

import fire
import torch

from homework.compare import random_inputs
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


@torch.no_grad()
def main(device: str | None = None, repeats: int = 5, batch_sizes: tuple[int, ...] = (1, 1024)):
    device = pick_device(device)
    load_model("bignet")  # creates the checkpoint if needed, outside the timings
    rows = {}
    for name in MODEL_NAMES:
        load_seconds = median_seconds(lambda: load_model(name, None, device), repeats, device)
        net = load_model(name, None, device)
        rows[name] = [load_seconds] + [median_seconds(lambda: net(random_inputs(b, device=device)), repeats, device) for b in batch_sizes]
    print(f"device: {device}, threads: {torch.get_num_threads()}, median of {repeats}")
    print(f"{'model':<17}{'load (s)':>10}" + "".join(f"{f'fwd b={b}':>14}{'vs fp32':>9}" for b in batch_sizes))
    for name, (load_seconds, *forward) in rows.items():
        cells = "".join(f"{t * 1e3:>11.1f} ms{t / f32:>8.2f}x" for t, f32 in zip(forward, rows["bignet"][1:]))
        print(f"{name:<17}{load_seconds:>10.2f}{cells}")


if __name__ == "__main__":
    fire.Fire(main)
