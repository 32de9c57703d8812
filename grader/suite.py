"""
The cases a grading run covers: checkpoints (a seed and a weight family), batches of inputs and
training seeds. The public self-check's are fixed here; staff write hidden ones, from secret seeds,
to a JSON file (`make_hidden`, `load_suite`; see grader/STAFF.md) without changing any code.
"""

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from .parts import GraderError
from .trusted import weight_families


@dataclass(frozen=True)
class Checkpoint:
    seed: int = 0
    family: str = "default"  # one of homework.checkpoint.FAMILIES
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
    families, path = weight_families(), Path(path)
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
    for checkpoint in suite.checkpoints:
        if checkpoint.family not in weight_families():
            raise GraderError(f"hidden config {path}: unknown weight family {checkpoint.family!r}")
    if not suite.checkpoints or not suite.inputs or not suite.train_seeds or not all(0 < i.n <= 4096 for i in suite.inputs):
        raise GraderError(f"hidden config {path}: needs at least one checkpoint, input batch and training seed, and batches of 1 to 4096")
    if suite.checkpoints[0].family != weight_families()[0]:  # where a lossy BigNet is told from no BigNet (parts.LOSSY)
        raise GraderError(f"hidden config {path}: the first checkpoint must be of the {weight_families()[0]} family")
    seeds = [c.seed for c in suite.checkpoints] + [i.seed for i in suite.inputs] + list(suite.train_seeds)
    if not all(isinstance(seed, int) and 0 <= seed < 2**64 for seed in seeds):
        raise GraderError(f"hidden config {path}: seeds are whole numbers from 0 to 2^64 - 1")
    guessable = [seed for seed in seeds if seed % 2**32 < GUESSABLE]
    if guessable:
        raise GraderError(
            f"hidden config {path}: seed {guessable[0]} is small enough for a submission to guess; make secret ones with: python -m grader hidden PATH"
        )
    return suite
