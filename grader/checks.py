"""
The pure checks that turn what the grading process received into points: each takes tensors and
numbers counted here, never a figure a part's process reported, and returns (passed, message). The
warnings, which cost nothing, also read what the part's process said of its own matrix products.
"""

import math

import torch

from .parts import DRAW_SPREAD, LOSSY, MIN_TRAINABLE, TRAINING, Part, mb
from .wire import torch_name


def check_output(y: torch.Tensor, reference: torch.Tensor, max_limit: float, mean_limit: float | None) -> tuple[bool, str, dict]:
    if y.shape != reference.shape or not y.is_floating_point():
        return False, f"the output is {describe_tensor(y)}; expected float {tuple(reference.shape)}", {}
    y = y.float()
    if not torch.isfinite(y).all():
        return False, "the output has NaN or inf values", {}
    diff = (y - reference).abs()
    diffs = {"max_diff": diff.max().item(), "mean_diff": diff.mean().item()}
    checks = [] if mean_limit is None else [at_most("mean abs diff", diffs["mean_diff"], mean_limit)]
    checks.append(at_most("max abs diff", diffs["max_diff"], max_limit))
    return summarize(checks) + (diffs,)


def figures(diffs: dict, max_limit: float, mean_limit: float | None) -> list[tuple[str, float, float]]:
    """(name, value, limit) of each output figure that has a limit."""
    named = [("max abs diff", diffs["max_diff"], max_limit), ("mean abs diff", diffs["mean_diff"], mean_limit)]
    return [(name, value, limit) for name, value, limit in named if limit]


def near_limit(diffs: dict, max_limit: float, mean_limit: float | None) -> str:
    """
    A case that hidden draws of its weight family could turn the other way ("" if none could): one
    that passed with a figure within DRAW_SPREAD below its limit, or one that failed with every
    failing figure within DRAW_SPREAD above it. A figure that misses by more fails on hidden cases too.
    """
    checked = figures(diffs, max_limit, mean_limit)
    over = [(name, value, limit) for name, value, limit in checked if value > limit]
    close = [figure for figure in (over or checked) if figure[2] / (1 + DRAW_SPREAD) < figure[1] < figure[2] * (1 + DRAW_SPREAD)]
    if not close or len(close) < len(over):
        return ""
    name, value, limit = close[0]
    return (
        f"{name} {value:.3g} is within {DRAW_SPREAD:.0%} of its limit {limit:.3g}, as much as hidden cases of this weight family vary:"
        f" one may {'pass' if over else 'fail'}"
    )


def is_lossy(diffs: dict, max_limit: float, mean_limit: float | None) -> bool:
    """An output within LOSSY times its limits: a lossy BigNet, whose memory and adapters count though the output fails."""
    return bool(diffs) and all(value <= LOSSY * limit for _, value, limit in figures(diffs, max_limit, mean_limit))


def check_memory(part: Part, memory: int) -> tuple[bool, str]:
    return at_most("memory", memory, part.memory_limit, mb)


def check_adapters(part: Part, specs: dict, trainable: list[str]) -> tuple[bool, str]:
    """`specs`: the model's tensors' dtypes and shapes (wire.Spec), by name."""
    count = sum(specs[name].numel for name in trainable)
    dtypes = sorted({torch_name(specs[name].dtype) for name in trainable})
    checks = [
        fewer_than("trainable parameters", count, part.max_trainable, millions, why=" (the course's grader's cap)"),
        at_least("trainable parameters", count, MIN_TRAINABLE, millions),
        (dtypes == ["float32"], f"trainable dtypes: {', '.join(dtypes) or 'none'} (float32 needed)"),
    ]
    return summarize(checks)


def check_training(start: float, final: float, steps: int, finite: bool) -> tuple[float, str]:
    """(progress from 0 to 1, message): the share of the way from the starting accuracy to the target."""
    target = TRAINING.target
    if not (math.isfinite(start) and math.isfinite(final)):
        return 0.0, "the accuracy is NaN"
    message = f"accuracy {start:.3f} -> {final:.3f} after {steps} steps (target {target} within {TRAINING.steps} steps)"
    if not finite:
        return 0.0, f"the outputs became NaN or inf during training ({message})"
    return (1.0 if final >= target else max(0.0, min(1.0, (final - start) / (target - start)))), message


def features_fail(features: torch.Tensor, x: torch.Tensor) -> str:
    """Why `features` cannot be scored ("" if they can): one row of BigNet's width per input."""
    if features.shape != x.shape or not features.is_floating_point():
        return f"the model's features are {describe_tensor(features)}; expected float {tuple(x.shape)}"
    return ""


def accuracy(features: torch.Tensor, head: torch.nn.Linear, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (head(features.float()).argmax(dim=1) == labels).float().mean().item()


def loss_gradient(features: torch.Tensor, head: torch.nn.Linear, labels: torch.Tensor) -> torch.Tensor:
    """d(cross entropy of the head's logits)/d(features): all a part's process needs to train, and no label."""
    features = features.detach().float().requires_grad_()
    loss = torch.nn.functional.cross_entropy(head(features), labels)
    return torch.autograd.grad(loss, features)[0]


def time_warning(products: dict, used: float, limit: float, slowest: str) -> str:
    """
    Before time costs points: a part that used over half its CPU time (hidden cases run several times
    as many inputs, checkpoints and training steps), and where that time goes. `products`: the
    multiply-adds by dtype, `slowest`: the place in the student's code whose products cost the most
    (part_runtime.MatrixProducts), as the part's process sent them.
    """
    if used <= limit / 2:
        return ""
    said = f"it used {used:.0f} s of CPU time, over half its limit of {limit:g} s, and hidden cases are several times larger"
    total = sum(products.values())
    half = sum(n for dtype, n in products.items() if dtype in ("float16", "bfloat16"))
    if total and half / total > 0.5:
        said += f"; {half / total:.0%} of its matrix products are in float16 or bfloat16, which a CPU computes 15 to 20 times slower than float32"
    return said + (f"; most of the time goes to the matrix products at {slowest}" if slowest else "")


def at_most(name: str, value: float, limit: float, show=lambda x: f"{x:.3g}") -> tuple[bool, str]:
    return value <= limit, f"{name} {show(value)} {'<=' if value <= limit else '>'} {show(limit)}"


def fewer_than(name: str, value: float, limit: float, show=lambda x: f"{x:.3g}", why: str = "") -> tuple[bool, str]:
    return value < limit, f"{name} {show(value)} {'<' if value < limit else '>='} {show(limit)}{why}"


def at_least(name: str, value: float, limit: float, show=lambda x: f"{x:.3g}") -> tuple[bool, str]:
    return value >= limit, f"{name} {show(value)} {'>=' if value >= limit else '<'} {show(limit)}"


def summarize(checks: list[tuple[bool, str]]) -> tuple[bool, str]:
    """All-or-nothing: passed if every check passed; the message lists them all."""
    return all(ok for ok, _ in checks), ", ".join(text for _, text in checks)


def millions(count: float) -> str:
    return f"{count / 1e6:.2f} M"


def describe_tensor(y) -> str:
    if isinstance(y, torch.Tensor):
        return f"{str(y.dtype).removeprefix('torch.')} {tuple(y.shape)}"
    return f"a {type(y).__name__}"
