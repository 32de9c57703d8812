"""
What is graded: the parts, their points, every threshold, and the cases a grading run covers.

Each threshold sits next to what the reference solution measures (CPU, torch 2.13, the public
case: the default checkpoint and 256 inputs of seed 0). Staff add hidden cases with a JSON file
(see `load_suite` and grader/README.md) without changing anything here.
"""

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

MB = 2**20  # the handout's MB


class GraderError(Exception):
    """The grader itself cannot run (a bad path, a bad config): one line, no traceback."""


@dataclass(frozen=True)
class Part:
    name: str  # the homework module, e.g. "low_precision"
    title: str
    points: dict  # case kind -> points: output, memory, adapters, training
    memory_limit: float  # bytes, for the theoretical and the allocated size of the loaded model
    max_diff: float  # max |output - BigNet's output| on the public case
    mean_diff: float | None  # mean |output - BigNet's output| on the public case, where checked
    scheme: str  # the reference module whose error on a hidden checkpoint scales these thresholds
    extra_credit: bool = False  # all-or-nothing, on top of the 100 points
    max_trainable: int | None = None  # adapters: fewer trainable parameters than this (the course's grader's cap)

    @property
    def max_score(self) -> float:
        return sum(self.points.values())


PARTS = (
    # Reference: max diff 0.00032 (the handout's tolerance is 0.002); 36.07 MB. One float32 layer more is 40.07 MB.
    Part("half_precision", "Half precision", {"output": 10, "memory": 10}, 40 * MB, 0.002, None, "half_precision"),
    # Reference: the half-precision outputs at load (B starts at zero); 40.57 MB. Up to 10 MB of adapters.
    # Fewer than 2 M trainable parameters, as the course's grader requires: rank 53 at most on all 18 layers.
    Part("lora", "LoRA", {"output": 10, "memory": 5, "adapters": 5, "training": 10}, 50 * MB, 0.002, None, "half_precision", max_trainable=2_000_000),
    # Reference: mean diff 0.0197, max 0.109 (2.5x and 2.8x margins; a swapped nibble order gives 0.22 and 1.2); 11.36 MB.
    # Codes unpacked to one per byte take 19.3 MB.
    Part("low_precision", "4-bit", {"output": 10, "memory": 10}, 15 * MB, 0.3, 0.05, "low_precision"),
    # Reference: the 4-bit outputs at load; 15.86 MB. The 4-bit limit plus 10 MB of adapters, as for LoRA.
    # Fewer than 1.5 M trainable parameters, as the course's grader requires: rank 40 at most.
    Part("qlora", "QLoRA", {"output": 10, "memory": 5, "adapters": 5, "training": 10}, 25 * MB, 0.3, 0.05, "low_precision", max_trainable=1_500_000),
    # Reference: mean diff 0.0279, max 0.168; 8.99 MB (9,429,064 bytes, trellis-coded). The limits are the handout's.
    Part("lower_precision", "Lower precision (extra credit)", {"output": 2, "memory": 3}, 9 * MB, 0.5, 0.1, "lower_precision", extra_credit=True),
)
PART_NAMES = tuple(part.name for part in PARTS)

# LoRA adapters: trainable, float32, at least rank 1 on all 18 layers, and under each part's max_trainable.
# Reference: 1.19 M (rank 32, plus the LayerNorms).
MIN_TRAINABLE = 18 * 2 * 1024
# The training objective: homework.fit's noise classification, smaller (128 samples, not 1000) to be fast.
# Reference: from 0.50 (chance) to 0.80 in 5 steps. Partial credit from the model's starting accuracy to the target.
TRAINING = {"samples": 128, "steps": 20, "lr": 1e-3, "target": 0.8}

# How much an output figure, as a share of its limit, moves from the public case of a weight family to hidden
# ones: the most measured for the honest corpus over 10 draws of each family (benchmarks/hidden_draws.py).
# A public figure closer to its limit than that is warned about: a hidden case may fail.
DRAW_SPREAD = 0.30

# A part's time is the CPU time its processes use, as the kernel counts it: the same on an idle machine, a
# busy one or Gradescope's half core (part_process.Budget). The slowest honest style, float16 arithmetic on the
# CPU, used 74 s on LoRA's hidden suite; the reference 21 s at most (grader/README.md has each style's figures).
TIMEOUT = 300  # CPU seconds per part
# Code that blocks or sleeps uses no CPU time: the wall clock stops it, at twice the CPU limit. With every core
# busy, the float16-compute LoRA took 202 s of wall-clock time for its 74 s of CPU time.
WALL_FACTOR = 2
MEMORY_CAP = 2 * 2**30  # per part; the reference stays under 0.5 GB
OUTPUT_CAP = 4 * MB  # what a part may print


@dataclass(frozen=True)
class Checkpoint:
    seed: int = 0
    family: str = "default"  # default, gaussian, heavy_tailed: see homework/checkpoint.py
    secret: bool = False  # drawn through a cryptographic stream (reference.SecretDraws), not torch's generator


@dataclass(frozen=True)
class Inputs:
    seed: int = 0
    n: int = 256


@dataclass(frozen=True)
class Suite:
    """
    The cases of one grading run. Memory is measured on the first checkpoint; outputs on every
    checkpoint and batch of inputs; training once per seed. The output (and training) points of a
    part are shared equally among its cases.
    """

    checkpoints: tuple = (Checkpoint(),)
    inputs: tuple = (Inputs(),)
    train_seeds: tuple = (0,)


# The public self-check: a checkpoint of each weight family the hidden cases draw from, at fixed seeds.
PUBLIC = Suite(checkpoints=(Checkpoint(), Checkpoint(1, "gaussian"), Checkpoint(2, "heavy_tailed")))
PUBLIC_CASE = (Checkpoint(), Inputs())  # the case the thresholds above were set on
# How much larger the reference scheme's (max, mean) output error is on the other public checkpoints than on
# the default one: their thresholds grow by it, as hidden cases' do (reference.output_limits). Written here,
# since the starter has no reference scheme to measure it with; tests/test_reference.py measures it again.
PUBLIC_SCALES = {
    ("half_precision", PUBLIC.checkpoints[1]): (1.311, 1.134),
    ("half_precision", PUBLIC.checkpoints[2]): (1.289, 1.128),
    ("low_precision", PUBLIC.checkpoints[1]): (1.465, 1.313),
    ("low_precision", PUBLIC.checkpoints[2]): (1.691, 1.527),
    ("lower_precision", PUBLIC.checkpoints[1]): (1.0, 1.008),
    ("lower_precision", PUBLIC.checkpoints[2]): (1.0, 1.013),
}
HIDDEN_ENV = "GRADER_HIDDEN"
# torch's CPU generator is seeded with the low 32 bits of a seed: below this, a submission could try them all.
GUESSABLE = 2**24


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for `purpose` (an order, an initialization) that reveals nothing of `seed`, the training data's."""
    return int.from_bytes(hashlib.blake2b(f"{purpose} {seed}".encode(), digest_size=8).digest(), "little")


def secret_seed() -> int:
    """64 random bits, drawn again in the 1 case in 256 whose low 32 bits are guessable (load_suite refuses those)."""
    while (seed := secrets.randbits(64)) % 2**32 < GUESSABLE:
        pass
    return seed


def make_hidden(path: str | Path, checkpoints: int = 3, inputs: int = 2, train: int = 2, force: bool = False) -> Path:
    """Staff: write a hidden configuration of secret cases (64 random bits per seed), readable by its owner only."""
    from .reference import trusted

    families, path = trusted("checkpoint").FAMILIES, Path(path)
    if path.exists() and not force:
        raise GraderError(f"{path} exists: give --force to replace it")
    config = {
        "checkpoints": [{"seed": secret_seed(), "family": families[k % len(families)]} for k in range(checkpoints)],
        "inputs": [{"seed": secret_seed(), "n": (256, 1024)[k % 2]} for k in range(inputs)],
        "train_seeds": [secret_seed() for _ in range(train)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(config, indent=1) + "\n")
    return path


def load_suite(path: str | Path | None = None) -> Suite:
    """The staff's hidden suite from a JSON file (`path`, or the GRADER_HIDDEN variable), else the public one."""
    path = path or os.environ.get(HIDDEN_ENV)
    if not path:
        return PUBLIC
    try:
        config = json.loads(Path(path).read_text())
        unknown = set(config) - {"checkpoints", "inputs", "train_seeds"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        suite = Suite(
            checkpoints=tuple(Checkpoint(**c, secret=True) for c in config.get("checkpoints", [{}])),
            inputs=tuple(Inputs(**i) for i in config.get("inputs", [{}])),
            train_seeds=tuple(int(s) for s in config.get("train_seeds", [0])),
        )
    except (OSError, ValueError, TypeError) as e:
        raise GraderError(f"cannot use the hidden config {path}: {e}") from None
    from .reference import trusted

    for checkpoint in suite.checkpoints:
        if checkpoint.family not in trusted("checkpoint").FAMILIES:
            raise GraderError(f"hidden config {path}: unknown weight family {checkpoint.family!r}")
    if not suite.checkpoints or not suite.inputs or not suite.train_seeds or not all(0 < i.n <= 4096 for i in suite.inputs):
        raise GraderError(f"hidden config {path}: needs at least one checkpoint, input batch and training seed, and batches of 1 to 4096")
    seeds = [c.seed for c in suite.checkpoints] + [i.seed for i in suite.inputs] + list(suite.train_seeds)
    if not all(isinstance(seed, int) and 0 <= seed < 2**64 for seed in seeds):
        raise GraderError(f"hidden config {path}: seeds are whole numbers from 0 to 2^64 - 1")
    guessable = [seed for seed in seeds if seed % 2**32 < GUESSABLE]
    if guessable:
        raise GraderError(f"hidden config {path}: seed {guessable[0]} is small enough for a submission to guess; make secret ones with: python -m grader hidden PATH")
    return suite
