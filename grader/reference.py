"""
What a submission is compared with, computed in the grading process from the grader's own checkout
(the homework/ folder beside grader/), imported under a private name: the submission's files are
never imported here.

- checkpoint_path: the checkpoint file of a case, generated on first use;
- reference_outputs: the float32 BigNet's outputs;
- output_limits: each part's output thresholds for a case. On the public case they are the ones in
  parts.py; on a hidden checkpoint or batch they grow by how much larger the reference scheme's own
  error is there than on the public case (never shrink), so a harder weight family gets a
  proportionally looser limit.
"""

import contextlib
import functools
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import torch

from .parts import PARTS, PUBLIC_CASE, Checkpoint, GraderError, Inputs, Part, Suite

HOMEWORK_DIR = Path(__file__).resolve().parent.parent / "homework"
CHECKPOINT_DIR = HOMEWORK_DIR.parent / "checkpoints"
HIDDEN_DIR = CHECKPOINT_DIR / "hidden"
TRUSTED = "_grader_homework"  # the grader's own homework package, under a name no submission uses


def import_private(name: str, package_dir: Path):
    """Import the package in `package_dir` under `name`; its modules then import as `name.module`."""
    spec = importlib.util.spec_from_file_location(name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return package


@functools.cache
def trusted(module: str):
    """A module of the grader's own homework package."""
    if TRUSTED not in sys.modules:
        import_private(TRUSTED, HOMEWORK_DIR)
    return importlib.import_module(f"{TRUSTED}.{module}")


def checkpoint_path(checkpoint: Checkpoint) -> Path:
    """The checkpoint's file, generated the first time (the default one where the homework tools keep it)."""
    tools = trusted("checkpoint")
    path = tools.DEFAULT_PATH if checkpoint == Checkpoint() else HIDDEN_DIR / f"seed{checkpoint.seed}-{checkpoint.family}.pth"
    if not path.exists():  # force: a grader side by side may have just made it too
        tools.save(tools.make_state_dict(trusted("bignet").BigNet(), checkpoint.seed, checkpoint.family), path, force=True)
    if os.geteuid() == 0:  # as root, parts run as another user (sandbox.worker_identity): the grader's files are not theirs to read
        path.chmod(0o600)
    return path


@functools.cache
def reference_outputs(suite: Suite) -> dict:
    """{(checkpoint, inputs): BigNet's output} for every case of `suite`."""
    outputs = {}
    with one_thread(), torch.no_grad():
        for checkpoint in suite.checkpoints:
            try:
                net = trusted("bignet").load(checkpoint_path(checkpoint))
            except trusted("checkpoint").CheckpointError as e:  # e.g. a truncated checkpoints/bignet.pth
                raise GraderError(str(e)) from None
            for inputs in suite.inputs:
                outputs[checkpoint, inputs] = net(trusted("compare").random_inputs(inputs.n, inputs.seed))
    return outputs


def output_limits(part: Part, suite: Suite) -> dict:
    """{(checkpoint, inputs): (max diff, mean diff or None)} allowed for `part`."""
    limits = {}
    for checkpoint in suite.checkpoints:
        for inputs in suite.inputs:
            scale_max = scale_mean = 1.0
            if (checkpoint, inputs) != PUBLIC_CASE:
                (max_here, mean_here), (max_public, mean_public) = (reference_error(part.scheme, *case) for case in ((checkpoint, inputs), PUBLIC_CASE))
                scale_max, scale_mean = max(1.0, max_here / max_public), max(1.0, mean_here / mean_public)
            limits[checkpoint, inputs] = (part.max_diff * scale_max, part.mean_diff and part.mean_diff * scale_mean)
    return limits


def precompute(suite: Suite) -> None:
    """Make `suite`'s checkpoints and reference errors ahead of grading: once for a batch (before graders run side
    by side and would each make them), once in a Gradescope image (instead of once per submission)."""
    for checkpoint in suite.checkpoints:
        checkpoint_path(checkpoint)
    for part in PARTS:
        output_limits(part, suite)


def reference_error(scheme: str, checkpoint: Checkpoint, inputs: Inputs) -> tuple[float, float]:
    """(max, mean) |output - BigNet's| of the reference `scheme` on a case, cached in checkpoints/hidden/."""
    cache_path = HIDDEN_DIR / "reference_errors.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    key = f"{scheme} checkpoint {checkpoint.seed} {checkpoint.family} inputs {inputs.seed} {inputs.n}"
    if key not in cache:
        try:
            model = reference_model(scheme, checkpoint)
            with one_thread(), torch.no_grad():
                diff = (model(trusted("compare").random_inputs(inputs.n, inputs.seed)) - reference_outputs(Suite((checkpoint,), (inputs,)))[checkpoint, inputs]).abs()
        except NotImplementedError:
            raise GraderError(f"hidden cases need the reference solution's homework/{scheme}.py beside the grader") from None
        cache[key] = (diff.max().item(), diff.mean().item())
        HIDDEN_DIR.mkdir(parents=True, exist_ok=True)
        temporary = cache_path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(cache, indent=1))
        os.replace(temporary, cache_path)  # atomic: batch workers may read it meanwhile
    return tuple(cache[key])


@functools.lru_cache(maxsize=2)  # a hidden checkpoint's and the public one: a scheme loads once per checkpoint, not per case
def reference_model(scheme: str, checkpoint: Checkpoint) -> torch.nn.Module:
    """The reference `scheme` loaded with `checkpoint` (the trellis-coded one, the slowest, takes about a second)."""
    with one_thread():
        return trusted(scheme).load(checkpoint_path(checkpoint))


@contextlib.contextmanager
def one_thread():
    """Compute on one thread, as the workers do: the same numbers on every machine, and the workers keep the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
