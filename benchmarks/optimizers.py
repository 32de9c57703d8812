"""
Full fine-tuning of BigNet with each optimizer, beside LoRA and QLoRA and the published
implementations, in one run (a benchmark, not a test):

    pip install -r benchmarks/requirements.txt
    python -m benchmarks.optimizers [--steps 100] [--out benchmarks/results]

Two tasks:
- digits: scikit-learn's bundled handwritten digits (1,797 8x8 images, no download), upsampled to
  32x32 = 1024 inputs, a fixed 80/20 train/test split; BigNet with a trainable Linear(1024, 10)
  head, `steps` steps on mini-batches of 64; test accuracy at the end.
- noise: homework.fit's (1000 samples of noise, full batch, a frozen random head): steps until the
  training accuracy reaches 80 %, at most 30.

Columns:
- state MB: the optimizer's state, measured by the allocator (what its first step left allocated)
  / theoretical (its definition; for a package, that of the same algorithm here).
- peak MB: the most allocated at once during a digits training step, weights and state included.
- step time: a digits training step (forward, backward, step), as a ratio to torch's AdamW's.
A package that is missing or fails gets a row that says why. Also printed: our AdamW's step alone
against torch's, timed alternately, and the table in markdown (OUT/optimizers.md) with a plot of
test accuracy against peak training memory (OUT/accuracy_vs_memory.png).
"""

import itertools
import statistics
import time
from pathlib import Path

import fire
import torch

from benchmarks.libraries import failure, markdown_table
from homework.data import noise_classification
from homework.memory import MB, AllocationTrace
from homework.models import load_model
from homework.optim import make_optimizer, recipes, theoretical_state_bytes, trainable
from homework.optim.functional import AdamW
from homework.optim.low_rank import divide_params
from homework.train_stats import measure_training

LR = 3e-4  # full fine-tuning, every Adam here; SGD, LoRA's adapters and Adafactor get rates of their own
RANK, GAP = 128, 200  # GaLore's and Fira's: rank 128 of 1024, the subspace renewed every 200 steps


class Classifier(torch.nn.Module):
    def __init__(self, body: torch.nn.Module, classes: int = 10):
        super().__init__()
        self.body, self.head = body, torch.nn.Linear(1024, classes)

    def forward(self, x):
        return self.head(self.body(x))


def digits(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(train inputs, train labels, test inputs, test labels): 8x8 digits upsampled to 32x32, standardized by the training set."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16
    x = torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False).flatten(1)
    y = torch.tensor(data.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, test = order[: int(0.8 * len(x))], order[int(0.8 * len(x)) :]
    mean, std = x[train].mean(), x[train].std()
    return (x[train] - mean) / std, y[train], (x[test] - mean) / std, y[test]


def ours(name: str):
    return lambda model, lr: make_optimizer(name, model, lr)


def fira_package(model, lr):
    from fira import FiraAdamW

    return FiraAdamW(divide_params(model, rank=RANK, update_proj_gap=GAP), lr=lr, no_deprecation_warning=True)


def galore_package(model, lr):
    from galore_torch import GaLoreAdamW

    groups = divide_params(model, rank=RANK, update_proj_gap=GAP)
    groups[1]["scale"] = groups[1].pop("alpha")  # galore-torch's name for it
    return GaLoreAdamW(groups, lr=lr, no_deprecation_warning=True)


def torchzero_chain(model, lr):
    import torchzero as tz

    return tz.Optimizer(trainable(model), tz.m.Adam(), tz.m.Cautious(), tz.m.WeightDecay(1e-2), tz.m.LR(lr))


def bitsandbytes_adamw8bit(model, lr):
    import bitsandbytes

    return bitsandbytes.optim.AdamW8bit(trainable(model), lr=lr)


def torchao_adamw8bit(model, lr):
    from torchao.optim import AdamW8bit

    return AdamW8bit(trainable(model), lr=lr)


# name: (model, make(model, lr), lr, step in backward, whose definition gives the theoretical state)
ROWS = {
    "torch AdamW": ("bignet", ours("torch_adamw"), LR, False, None),
    "adamw": ("bignet", ours("adamw"), LR, False, None),
    "adam": ("bignet", ours("adam"), LR, False, None),
    "sgd (momentum 0.9)": ("bignet", ours("sgd"), 1e-2, False, None),
    "cautious_adamw (chain)": ("bignet", ours("cautious_adamw"), LR, False, None),
    "galore": ("bignet", ours("galore"), LR, False, None),
    "fira": ("bignet", ours("fira"), LR, False, None),
    "adamw8bit": ("bignet", ours("adamw8bit"), LR, False, None),
    "fira, step in backward": ("bignet", ours("fira"), LR, True, None),
    "adamw8bit, step in backward": ("bignet", ours("adamw8bit"), LR, True, None),
    "LoRA (torch AdamW)": ("lora", ours("torch_adamw"), 1e-3, False, None),
    "QLoRA (torch AdamW)": ("qlora", ours("torch_adamw"), 1e-3, False, None),
    "torch Adafactor": ("bignet", lambda model, lr: torch.optim.Adafactor(trainable(model), lr=lr), 1e-3, False, None),
    "fira package": ("bignet", fira_package, LR, False, "fira"),
    "galore-torch package": ("bignet", galore_package, LR, False, "galore"),
    "torchzero Adam, Cautious, WeightDecay, LR": ("bignet", torchzero_chain, LR, False, "cautious_adamw"),
    "bitsandbytes AdamW8bit": ("bignet", bitsandbytes_adamw8bit, LR, False, None),
    "torchao AdamW8bit": ("bignet", torchao_adamw8bit, LR, False, "adamw8bit"),  # its state tensors present as float32
}


def digits_row(model_name, make, lr, step_in_backward, theory_from, data, steps, batch_size=64):
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(0)  # the head's and the adapters' init, the batches' order
    with AllocationTrace() as loading:
        model = Classifier(load_model(model_name))
    optimizer = make(model, lr)
    if step_in_backward:
        recipes.step_in_backward(optimizer)
    batches = torch.randint(len(x_train), (steps, batch_size), generator=torch.Generator().manual_seed(0))

    def loss(step=0):
        return torch.nn.functional.cross_entropy(model(x_train[batches[step]]), y_train[batches[step]])

    memory = measure_training(model, optimizer, loss, x_train, loading.net, step_in_backward)  # steps 1 and 2
    if theory_from:
        memory["Optimizer state"] = (memory["Optimizer state"][0], theoretical_state_bytes(make_optimizer(theory_from, model)))
    seconds = []
    for step in range(2, steps):
        start = time.perf_counter()
        loss(step).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - start)
    with torch.no_grad():
        accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
    return {"state": memory["Optimizer state"], "peak": memory["Peak"][0], "accuracy": accuracy, "seconds": statistics.median(seconds)}


def steps_to_80(model_name, make, lr, step_in_backward, max_steps=30) -> int | None:
    torch.manual_seed(0)
    model = load_model(model_name)
    optimizer = make(model, lr)
    if step_in_backward:
        recipes.step_in_backward(optimizer)
    x, labels, head = noise_classification(1000, seed=0)
    for step in range(1, max_steps + 1):
        logits = head(model(x))
        if (logits.argmax(dim=1) == labels).float().mean().item() >= 0.8:
            return step - 1  # steps taken before reaching it
        torch.nn.functional.cross_entropy(logits, labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return None


def adamw_step_time_ratio(rounds: int = 7, steps: int = 5) -> float:
    """Our functional AdamW's step against torch's, on BigNet's parameters, timed alternately: the median ratio."""
    timings = {}
    for cls in (AdamW, torch.optim.AdamW):
        params = [torch.nn.Parameter(p.detach().clone()) for p in load_model("bignet").parameters()]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        optimizer = cls(params, lr=1e-4)
        optimizer.step()  # the state, made outside the timings
        timings[cls] = optimizer
    ratios = []
    for _ in range(rounds):
        seconds = {}
        for cls, optimizer in timings.items():
            start = time.perf_counter()
            for _ in range(steps):
                optimizer.step()
            seconds[cls] = time.perf_counter() - start
        ratios.append(seconds[AdamW] / seconds[torch.optim.AdamW])
    return statistics.median(ratios)


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 5.5))
    for (name, row), marker in zip(results.items(), itertools.cycle("osD^v<>pP*Xhd")):
        axes.scatter(
            row["peak"] / MB,
            100 * row["accuracy"],
            marker=marker,
            s=60,
            label=f"{name}: {row['peak'] / MB:.0f} MB, {100 * row['accuracy']:.1f} %",
        )
    axes.set(
        xlabel="peak training memory, MB (weights, state, gradients, activations)",
        ylabel="digits test accuracy, %",
        title="BigNet fine-tuning: accuracy against training memory",
    )
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(steps: int = 100, out: str = "benchmarks/results", only: str | None = None):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        data = digits()
    except ImportError as e:
        raise SystemExit(f"error: {e}: the benchmark's requirements are in benchmarks/requirements.txt") from None
    names = [name for name in ROWS if only is None or only in name]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; digits: {len(data[0])} train / {len(data[2])} test, {steps} steps of 64",
        flush=True,
    )
    results, rows = {}, {}
    for name in names:
        model_name, make, lr, step_in_backward, theory_from = ROWS[name]
        try:
            result = digits_row(model_name, make, lr, step_in_backward, theory_from, data, steps)
            result["noise"] = steps_to_80(model_name, make, lr, step_in_backward)
        except Exception as e:  # a package that is missing, or does not run on this machine
            rows[name] = failure(e)
            print(f"{name}: not run: {rows[name]}", flush=True)
            continue
        results[name] = result
        print(f"{name}: {result}", flush=True)
    baseline = results.get("torch AdamW", next(iter(results.values())))["seconds"]
    for name, r in results.items():
        measured, theoretical = r["state"]
        rows[name] = [
            f"{measured / MB:.2f} / {theoretical / MB:.2f}", f"{r['peak'] / MB:.1f}", f"{100 * r['accuracy']:.1f} %",
            "> 30" if r["noise"] is None else str(r["noise"]), f"{r['seconds'] / baseline:.2f}x",
        ]  # fmt: skip
    columns = [
        "state MB (measured / theoretical)",
        "peak training MB",
        "digits test accuracy",
        "noise: steps to 80 %",
        "step time vs torch AdamW",
    ]
    markdown = markdown_table(columns, {name: rows[name] for name in names}).replace("| scheme |", "| optimizer |", 1)
    print("\n" + markdown + "\n")
    (out / "optimizers.md").write_text(markdown + "\n")
    print(f"our AdamW's step alone, against torch's (median of alternate rounds): {adamw_step_time_ratio():.2f}x")
    if results:
        plot(results, out / "accuracy_vs_memory.png")
        print(f"plot: {out / 'accuracy_vs_memory.png'}")


if __name__ == "__main__":
    fire.Fire(main)
