"""
The grader's own homework package: the homework/ folder beside grader/ (the reference solution),
imported under a private name, so that no submission's files are ever imported in its place. Every
use the grader makes of the homework goes through the functions here, each named for what it gives.
"""

import functools
import importlib
import importlib.util
import sys
from pathlib import Path

import torch

from .release import BEGIN

HOMEWORK_DIR = Path(__file__).resolve().parent.parent / "homework"
CHECKPOINT_DIR = HOMEWORK_DIR.parent / "checkpoints"
PACKAGE = "_grader_homework"  # a name no submission uses


def import_private(name: str, package_dir: Path):
    """Import the package in `package_dir` under `name`; its modules then import as `name.module`."""
    spec = importlib.util.spec_from_file_location(name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return package


@functools.cache
def _module(name: str):
    if PACKAGE not in sys.modules:
        import_private(PACKAGE, HOMEWORK_DIR)
    return importlib.import_module(f"{PACKAGE}.{name}")


def weight_families() -> tuple[str, ...]:
    """The weight families a checkpoint may be drawn from (homework.checkpoint.FAMILIES)."""
    return _module("checkpoint").FAMILIES


def default_checkpoint_path() -> Path:
    """Where the homework tools keep the default checkpoint (seed 0, default family)."""
    return _module("checkpoint").DEFAULT_PATH


def make_checkpoint(path: Path, seed: int = 0, family: str = "default", draws=None) -> Path:
    """BigNet's checkpoint for a seed and family, or from `draws` (homework.bignet.make_checkpoint); replaces `path`."""
    return _module("bignet").make_checkpoint(path, seed, family, draws, force=True)


def bignet() -> torch.nn.Module:
    """A new float32 BigNet (on the current default device: "meta" builds one without weights)."""
    return _module("bignet").BigNet()


def random_inputs(n: int, seed: int) -> torch.Tensor:
    """homework.data.random_inputs: the inputs every output case feeds."""
    return _module("data").random_inputs(n, seed)


@functools.cache
def has_reference() -> bool:
    """
    Whether homework/ beside the grader is the reference solution: the staff's checkout, whose files keep
    their solution markers (grader/release.py takes them out of the starter). A student's checkout holds
    their own work there, which nothing should be compared with.
    """
    files = [HOMEWORK_DIR / f"{part}.py" for part in ("half_precision", "low_precision")]
    return all(any(BEGIN.match(line) for line in file.read_text().splitlines()) for file in files)


def load_reference(scheme: str, path: Path) -> torch.nn.Module:
    """The reference solution's `scheme` (a part's name, e.g. "low_precision") loaded with a checkpoint."""
    return _module(scheme).load(path)


def adamw_step(param: torch.Tensor, grad: torch.Tensor, state: dict, lr: float) -> None:
    """
    One step of torch.optim.AdamW (its defaults, but `lr`) on one tensor, in place, with `state` ({} at
    first): homework.optim.functional's, the same arithmetic, which unlike torch.optim's step does not
    import torch's compiler (1 s of CPU time).
    """
    functional = _module("optim.functional")
    if not state:
        state.update(functional.adam_init(param))
    functional.adam_step(param, grad, state, functional.AdamSettings(lr=lr, weight_decay=1e-2, decoupled=True))
