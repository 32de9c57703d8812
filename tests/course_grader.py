"""
The course's own grader, simulated: the parts driven as its grader/tests.py drives them, written from
its description: `import homework`, then each part as an attribute of the package, `.load(path)` on a
checkpoint beside the package, `.to(device)`, a forward pass of `torch.randn(1024, 1024)`, a training
loop over `model.parameters()`, and the memory figure its ModelStats takes on the CPU: the profiler
around a deepcopy of the model. tests/test_course_grader.py runs it on a copy of the package;
benchmarks/course_grader.py times its extra-credit case and benchmarks/honest_corpus.py asks its verdicts.
"""

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import torch

import homework

REPO = Path(__file__).resolve().parent.parent


def profiled_memory(model: torch.nn.Module) -> int:
    """Bytes the profiler sees allocated, and not freed, while the model is copied: the course grader's model size."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profile:
        copy.deepcopy(model)  # the copy stays alive until the block ends
    return profile.key_averages().total_average().self_cpu_memory_usage


def drive(part: str, checkpoint: str, device: str = "cpu", train_steps: int = 10) -> dict:
    """What the course grader measures of one part, as plain numbers."""
    torch.manual_seed(0)
    model = getattr(homework, part).load(checkpoint).to(device)
    memory = profiled_memory(model)
    x = torch.randn(1024, 1024, device=device)
    with torch.no_grad():
        difference = (model(x) - homework.bignet.load(checkpoint).to(device)(x)).abs()
    result = {"memory": memory, "max_diff": difference.max().item(), "mean_diff": difference.mean().item()}
    result["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    try:  # its stats' backward pass: the mean output, from inputs that need no gradient
        model(x).mean().backward()
        result["backward"] = True
    except RuntimeError:  # nothing in the model needs a gradient
        result["backward"] = False
    model.zero_grad(set_to_none=True)
    if result["trainable"] and train_steps:
        result["accuracy"] = train(model, device, train_steps)
    return result


# The course's grader's caps on the LoRA parts' trainable parameters (fewer than these): grader.parts adopts them.
TRAINABLE_CAPS = {"lora": 2_000_000, "qlora": 1_500_000}


def refusals(part, figures: dict) -> list[str]:
    """What the course's grader refuses in the figures `drive` measured of `part` (a grader.parts.Part): none for full marks."""
    checks = [
        (figures["backward"], "its backward pass fails: nothing in the model is trainable"),
        (figures["max_diff"] <= part.max_diff, f"max diff {figures['max_diff']:.3g} > {part.max_diff}"),
        (part.mean_diff is None or figures["mean_diff"] <= part.mean_diff, f"mean diff {figures['mean_diff']:.3g} > {part.mean_diff}"),
        (figures["memory"] <= part.memory_limit, f"memory {figures['memory'] / 2**20:.2f} MB > {part.memory_limit / 2**20:g} MB"),
        (
            figures["trainable"] < TRAINABLE_CAPS.get(part.name, math.inf),
            f"{figures['trainable']:,} trainable parameters, not fewer than {TRAINABLE_CAPS.get(part.name, 0):,}",
        ),
    ]
    if part.name in TRAINABLE_CAPS:  # a training loop over model.parameters(): the adapters learn
        before, after = figures.get("accuracy", (0.5, 0.5))
        checks.append((after >= max(0.8, before + 0.2), f"training reached {after:.2f} from {before:.2f}"))
    return [why for ok, why in checks if not ok]


def drive_in_fresh_interpreter(folder: Path, part: str) -> dict:
    """
    `drive` as the course grader runs it: a fresh interpreter in `folder` (which holds the homework package
    and bignet.pth), `import homework` and nothing imported before. RuntimeError if it fails.
    """
    result = subprocess.run(
        [sys.executable, "-m", "tests.course_grader", "--drive", part, "bignet.pth"],
        cwd=folder, capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""},
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{part} failed under the course grader's driver: {result.stderr[-2000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def train(model: torch.nn.Module, device: str, steps: int) -> tuple[float, float]:
    """(accuracy before, best accuracy after each step): AdamW over model.parameters(), a frozen random head, random labels."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(128, 1024, generator=generator).to(device)
    labels = torch.randint(0, 2, (128,), generator=generator).to(device)
    head = torch.nn.Linear(1024, 2).to(device).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)  # all of them, as the course grader does: frozen ones get no gradient
    accuracies = []
    for _ in range(steps + 1):
        logits = head(model(x))
        accuracies.append((logits.argmax(dim=1) == labels).float().mean().item())
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return accuracies[0], max(accuracies[1:])


if __name__ == "__main__":  # drive_in_fresh_interpreter: one part, in a fresh interpreter, as JSON
    print(json.dumps(drive(sys.argv[2], sys.argv[3])))
