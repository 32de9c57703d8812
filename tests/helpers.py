"""What several test files share: the repository's place, running a command as a user does, a stub part, a zip, a BigNet-sized layer."""

import subprocess
import sys
import zipfile
from pathlib import Path

import torch

from grader.parts import PART_NAMES

REPO = Path(__file__).resolve().parent.parent
# A part left as the starter leaves it: load() raises NotImplementedError.
STUB = "def load(path=None):\n    raise NotImplementedError()\n"


# Secret seeds as `python -m grader hidden` draws them: 64 random-looking bits.
SECRET = [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93]


def run_tool(*args, cwd=None) -> subprocess.CompletedProcess:
    """Run `python -m homework.<tool> ...` from another folder: no tool may depend on where it is started."""
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""})


def run_grader(*args: str) -> subprocess.CompletedProcess:
    """Run `python -m grader ...` from the repository's root, as the README says."""
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=REPO, capture_output=True, text=True)


# Edits that make a submission from the reference package (tests/test_grader.py, tests/test_mistakes.py): each fails
# loudly where the reference no longer holds what it edits.
def replace(file: str, old: str, new: str):
    def edit(package: Path) -> None:
        text = (package / file).read_text()
        assert text.count(old) == 1, f"{old!r} is not in {file} exactly once: update the test to the reference"
        (package / file).write_text(text.replace(old, new))

    return edit


def append(file: str, text: str):
    def edit(package: Path) -> None:
        with open(package / file, "a") as f:
            f.write(text)

    return edit


def write(file: str, text: str):
    def edit(package: Path) -> None:
        (package / file).write_text(text)

    return edit


def write_zip(path, entries, method=zipfile.ZIP_DEFLATED):
    """`entries` maps a name, or a ZipInfo for the odd cases, to the bytes to store."""
    with zipfile.ZipFile(path, "w", method) as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    return path


def starter_zip(folder: Path, name: str) -> Path:
    """A zip of the reference with every part left unimplemented: the quickest submission to grade."""
    path = folder / f"{name}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted((REPO / "homework").rglob("*.py")):
            text = STUB if file.parent.name == "homework" and file.stem in PART_NAMES else file.read_text()
            archive.writestr(file.relative_to(REPO).as_posix(), text)
    return path


def bignet_sized_layer(seed=0):
    """A 1024x1024 weight and a 1024 bias, as in each of BigNet's Linear layers."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(1024, 1024, generator=generator) / 32),
        torch.nn.Parameter(torch.randn(1024, generator=generator)),
    ]


def run_optimizer(optimizer_class, steps=50, **settings):
    """The parameters after `steps` steps on a fixed sequence of gradients (the same for every optimizer)."""
    params = bignet_sized_layer()
    optimizer = optimizer_class(params, **settings)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            # A gradient that depends on the weights, as a real one does, plus noise.
            p.grad = p.detach() * 0.1 + torch.randn(p.shape, generator=generator)
        optimizer.step()
    return [p.detach() for p in params]
