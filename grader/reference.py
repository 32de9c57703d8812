"""
What a submission is compared with, computed in the grading process from the grader's own homework
package (grader/trusted.py): the submission's files are never imported here.

- checkpoint_path: the checkpoint file of a case, generated on first use: a public one from torch's
  generator and its seed (anyone can make it again), a hidden one from the secret seed through a
  cryptographic stream (SecretDraws), whose output reveals neither the seed nor the rest of it;
- write_decoy: what an answering process loads, of the same names and shapes, from a fresh seed;
- training_data: the noise task, drawn so that no tensor a part's process sees reveals the labels;
- reference_outputs: the float32 BigNet's outputs, computed once per case and kept (output_file);
- output_limits: each part's output thresholds for a case. On the public case they are the ones in
  parts.py; on a hidden checkpoint or batch they grow by how much larger the reference scheme's own
  error is there than on the public case (never shrink), so a harder weight family gets a
  proportionally looser limit.
"""

import contextlib
import functools
import hashlib
import json
import math
import os
import secrets
from pathlib import Path

import safetensors.torch
import torch

from . import trusted
from .launch import running_as_root
from .parts import PARTS, GraderError, Part
from .suite import PUBLIC_CASE, PUBLIC_SCALES, Checkpoint, Inputs, Suite, derived_seed

HIDDEN_DIR = trusted.CHECKPOINT_DIR / "hidden"


class SecretDraws:
    """
    Uniform and normal draws (as homework.checkpoint.SeededDraws) from SHAKE-256 of a secret key, one
    stretch of its output per draw: no draw reveals the key, nor any other draw, unlike torch's
    generator, whose state its own output gives away.
    """

    def __init__(self, key: bytes):
        self.key, self.draws = key, 0

    def _uniform64(self, shape) -> torch.Tensor:
        count = math.prod(shape)
        stream = hashlib.shake_256(self.key + self.draws.to_bytes(8, "little")).digest(4 * count)
        self.draws += 1
        words = torch.frombuffer(bytearray(stream), dtype=torch.int32).to(torch.float64) % 2**32
        return ((words + 0.5) / 2**32).view(shape)  # strictly between 0 and 1

    def uniform(self, shape) -> torch.Tensor:
        return self._uniform64(shape).float()

    def normal(self, shape) -> torch.Tensor:
        return torch.special.ndtri(self._uniform64(shape)).float()  # the normal's inverse CDF


def checkpoint_path(checkpoint: Checkpoint) -> Path:
    """
    The checkpoint's file, generated the first time (the default one where the homework tools keep it). A
    hidden one's name is a hash of its secret seed: nothing in it names the seed or the family.
    """
    if checkpoint == Checkpoint():
        path = trusted.default_checkpoint_path()
    elif checkpoint.secret:
        key = f"BigNet checkpoint {checkpoint.family} {checkpoint.seed}".encode()
        path = HIDDEN_DIR / f"{hashlib.blake2b(key, digest_size=8).hexdigest()}.pth"
    else:
        path = HIDDEN_DIR / f"seed{checkpoint.seed}-{checkpoint.family}.pth"
    if not path.exists():  # force: a grader side by side may have just made it too
        trusted.make_checkpoint(path, checkpoint.seed, checkpoint.family, SecretDraws(key) if checkpoint.secret else None)
    private(path)
    return path


def private(path: Path) -> None:
    """As root, parts run as users of their own (launch.Uids): the grader's files are not theirs to read."""
    if running_as_root():
        path.chmod(0o600)


def write_decoy(path: Path) -> None:
    """
    A checkpoint of BigNet's names and shapes, from a seed drawn now and forgotten: what an answering
    process loads. Its values need only be ones no part can know beforehand; they hide nothing, so
    torch's generator draws them: 0.3 s of CPU time on every grading run, against 1.2 to 1.7 s for
    SecretDraws (measured side by side).
    """
    trusted.make_checkpoint(path, seed=secrets.randbits(64))


def training_data(samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.nn.Linear]:
    """
    homework.data's noise task (random inputs, balanced labels, a frozen random head), with the inputs, the
    labels and the head each drawn from a seed of its own: a part's process sees the inputs, and
    whatever it learns of their generator tells it nothing of the labels or the head.
    """

    def generator(purpose: str) -> torch.Generator:
        return torch.Generator().manual_seed(derived_seed(seed, purpose))

    x = trusted.random_inputs(samples, derived_seed(seed, "inputs"))
    width = x.shape[1]
    labels = (torch.randperm(samples, generator=generator("labels")) < samples // 2).long()
    head = torch.nn.Linear(width, 2)
    with torch.no_grad():
        head.weight.copy_(torch.randn(2, width, generator=generator("head")) / width**0.5)
        head.bias.zero_()
    return x, labels, head.requires_grad_(False)


def reference_outputs(suite: Suite) -> dict:
    """
    {(checkpoint, inputs): BigNet's output} for every case of `suite`, each computed once and kept in
    checkpoints/hidden/ (as private as the checkpoints), under a name made of what it is computed from:
    the checkpoint's file, the grader's BigNet and inputs (output_file). A grading run then reads 1 MB
    per case instead of mapping 72 MB of weights and computing; a changed file computes it again.
    """
    outputs = {}
    for checkpoint in suite.checkpoints:
        for inputs in suite.inputs:
            path = output_file(checkpoint, inputs)
            try:
                outputs[checkpoint, inputs] = safetensors.torch.load_file(path)["y"]
            except (OSError, safetensors.SafetensorError, KeyError):  # not made yet, or cut short: made again
                with one_thread(), torch.no_grad():
                    outputs[checkpoint, inputs] = y = mapped_bignet(checkpoint)(trusted.random_inputs(inputs.n, inputs.seed))
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_suffix(f".{os.getpid()}.tmp")
                safetensors.torch.save_file({"y": y}, temporary)
                private(temporary)
                os.replace(temporary, path)  # atomic: graders side by side in a batch may read it meanwhile
    return outputs


def output_file(checkpoint: Checkpoint, inputs: Inputs) -> Path:
    """Where BigNet's output on a case is kept: named by a digest of the checkpoint's file (name, size, time), BigNet's code and the inputs."""
    file = checkpoint_path(checkpoint)
    made = file.stat()
    digest = hashlib.blake2b(f"{file.name} {made.st_size} {made.st_mtime_ns} {inputs.seed} {inputs.n}".encode(), digest_size=12)
    for name in ("bignet.py", "data.py"):  # BigNet's layers, and how inputs are drawn
        digest.update((trusted.HOMEWORK_DIR / name).read_bytes())
    return HIDDEN_DIR / f"output-{digest.hexdigest()}.safetensors"


def bignet_features(checkpoint: Checkpoint, x: torch.Tensor) -> torch.Tensor:
    """The float32 BigNet's features for `x` (a training run's inputs): where a model that matches BigNet starts from."""
    with one_thread(), torch.no_grad():
        return mapped_bignet(checkpoint)(x)


def output_limits(part: Part, suite: Suite) -> dict:
    """{(checkpoint, inputs): (max diff, mean diff or None)} allowed for `part`."""
    limits = {}
    for checkpoint in suite.checkpoints:
        for inputs in suite.inputs:
            scale_max, scale_mean = error_scales(part.scheme, checkpoint, inputs)
            limits[checkpoint, inputs] = (part.max_diff * scale_max, part.mean_diff and part.mean_diff * scale_mean)
    return limits


def error_scales(scheme: str, checkpoint: Checkpoint, inputs: Inputs) -> tuple[float, float]:
    """How much larger the reference `scheme`'s (max, mean) error is on a case than on the public one, never below 1."""
    if (checkpoint, inputs) == PUBLIC_CASE:
        return 1.0, 1.0
    if inputs == PUBLIC_CASE[1] and (scheme, checkpoint) in PUBLIC_SCALES:
        return PUBLIC_SCALES[scheme, checkpoint]
    (max_here, mean_here), (max_public, mean_public) = (reference_error(scheme, *case) for case in ((checkpoint, inputs), PUBLIC_CASE))
    return max(1.0, max_here / max_public), max(1.0, mean_here / mean_public)


def precompute(suite: Suite) -> None:
    """Make `suite`'s checkpoints, BigNet's outputs and the reference errors ahead of grading: once for a batch (before graders run side
    by side and would each make them), once in a Gradescope image (instead of once per submission)."""
    reference_outputs(suite)  # the checkpoints too
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
                diff = (
                    model(trusted.random_inputs(inputs.n, inputs.seed))
                    - reference_outputs(Suite((checkpoint,), (inputs,)))[checkpoint, inputs]
                ).abs()
        except NotImplementedError:
            raise GraderError(f"hidden cases need the reference solution's homework/{scheme}.py beside the grader") from None
        cache[key] = (diff.max().item(), diff.mean().item())
        HIDDEN_DIR.mkdir(parents=True, exist_ok=True)
        temporary = cache_path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(cache, indent=1))
        os.replace(temporary, cache_path)  # atomic: graders side by side in a batch may read it meanwhile
    return tuple(cache[key])


@functools.lru_cache(maxsize=4)  # a hidden checkpoint's and the public one, and BigNet beside a scheme: each loads once per checkpoint
def reference_model(scheme: str, checkpoint: Checkpoint) -> torch.nn.Module:
    """The reference `scheme` (a part's module) loaded with `checkpoint`."""
    if scheme == "bignet":
        return mapped_bignet(checkpoint)
    with one_thread():
        return trusted.load_reference(scheme, checkpoint_path(checkpoint))


def mapped_bignet(checkpoint: Checkpoint) -> torch.nn.Module:
    """
    The float32 BigNet with `checkpoint`'s weights mapped from its file, not read into the grading
    process's own memory: 72 MB of page cache, which the kernel may reclaim, instead of twice that while
    it loads (Gradescope's default container has 768 MB for everything).
    """
    path = checkpoint_path(checkpoint)
    try:
        state = torch.load(path, mmap=True, weights_only=True)
        with torch.device("meta"):  # no weights of its own: the file's take their place
            net = trusted.bignet()
        net.load_state_dict(state, assign=True)  # strict: every name, with its shape
    except Exception as e:  # a truncated or foreign file: torch raises many kinds
        raise GraderError(f"cannot read the checkpoint {path} ({type(e).__name__}): remove it, and grading makes it again") from None
    return net.requires_grad_(False)


BIGNET_LINEARS = tuple(f"model.{2 * block}.model.{2 * layer}" for block in range(6) for layer in range(3))  # in the order they run


def first_departing_layer(layers: dict, scheme: str, checkpoint: Checkpoint, near: bool = False) -> str:
    """
    Where a model's output departs from BigNet's, from what went in and out of each of its Linear
    layers (`layers`: "NAME in" and "NAME out"): the first layer whose output, on the very input the
    model gave it, is further from BigNet's layer's than 4 times the reference `scheme`'s layer is
    (and than 0.001); or, for a `near` miss, where such a large error is not to be seen, further from
    the reference scheme's own layer than a tenth of that scheme's error (a dropped bias, say). A
    layer that did not run, after some that did, is named too. "" where the model's layers do not say.
    """
    exact, ours = (dict(reference_model(name, checkpoint).named_modules()) for name in ("bignet", scheme))
    with one_thread(), torch.no_grad():
        for k, name in enumerate(BIGNET_LINEARS):
            where = f"block {k // 3 + 1}, layer {k % 3 + 1} ({name})"
            x, y = layers.get(f"{name} in"), layers.get(f"{name} out")
            if x is None and y is None and k > 0:
                return f"; {where} was not called, though the layers before it were"
            tensors = isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
            if (
                not tensors
                or x.dim() != 2
                or x.shape[1] != 1024
                or y.shape != x.shape
                or not (x.is_floating_point() and y.is_floating_point())
            ):
                return ""
            x, y = x.float(), y.float()
            scheme_error = (ours[name](x) - exact[name](x)).abs().max().item()
            target, allowed = (ours, max(0.001, scheme_error / 10)) if near else (exact, max(0.001, 4 * scheme_error))
            diff = (y - target[name](x)).abs().max().item()
            if not diff <= allowed:  # NaN too
                whose = f"the reference solution's layer ({scheme}.py)" if near else "BigNet's"
                return f"; the first layer to depart from {whose} is {where}: max abs diff {diff:.3g} on the input the model gave it, over {allowed:.2g}"
    return "" if near else "; each Linear layer matches BigNet's on its own input: look at what is between them (ReLU, residual, LayerNorm)"


def layers_within(layers: dict, checkpoint: Checkpoint, allowed: float) -> bool:
    """
    Whether each of BigNet's Linear layers ran, and on the input the model gave it stays within `allowed`
    (max abs diff) of BigNet's own: a model built of BigNet's layers, each compressed (a lossy BigNet),
    not a function fitted to BigNet's outputs (a least-squares Linear layer comes within 2 times the
    4-bit limits, closer than 2-bit codes do, and is no BigNet).
    """
    exact = dict(reference_model("bignet", checkpoint).named_modules())
    with one_thread(), torch.no_grad():
        for name in BIGNET_LINEARS:
            x, y = layers.get(f"{name} in"), layers.get(f"{name} out")
            if x is None or y is None or not (y.float() - exact[name](x.float())).abs().max().item() <= allowed:  # NaN too
                return False
    return True


@contextlib.contextmanager
def one_thread():
    """Compute on one thread, as the part processes do: the same numbers on every machine, and they keep the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
