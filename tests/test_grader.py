"""
The grader on a corpus of submissions: the reference solution, and copies of it that each break
one thing, made at test time by editing the reference (an edit that no longer matches the
reference fails loudly). Each gets exactly its intended score, and a reason that says why.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader.grade import grade
from grader.release import strip_markers
from grader.report import gradescope, render

REFERENCE = Path(__file__).resolve().parent.parent / "homework"
TIMEOUT = 30  # seconds per part for the broken submissions: their slowest part takes about 6 s here (the reference report gets the real limit)
FULL = {"half_precision": 20, "lora": 30, "low_precision": 20, "qlora": 30, "lower_precision": 5}
STUB = "def load(path=None):\n    raise NotImplementedError()\n"


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


HALF_NET = "        super().__init__(make_linear=HalfLinear)\n"
ADAPTERS = """        self.lora_a = torch.nn.Linear(in_features, lora_dim, bias=False, dtype=torch.float32)
        self.lora_b = torch.nn.Linear(lora_dim, out_features, bias=False, dtype=torch.float32)
"""
ESCAPE = Path("/tmp/grader-test-escaped.txt")

# A 4-bit model that claims to be under 9 MB: its packed weights live in plain attributes, which
# theoretical memory does not count; the allocator does.
HIDDEN_4BIT = '''
import torch

from .bignet import BigNet, load_weights
from .low_precision import block_dequantize_4bit, block_quantize_4bit


class Sneaky4Bit(torch.nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.shape = (out_features, in_features)
        self.bias = torch.nn.Parameter(torch.zeros(out_features))
        self.packed = None
        self._register_load_state_dict_pre_hook(self.quantize)

    def quantize(self, state_dict, prefix, *args):
        self.packed = block_quantize_4bit(state_dict.pop(prefix + "weight").flatten())

    def forward(self, x):
        return torch.nn.functional.linear(x, block_dequantize_4bit(*self.packed).view(self.shape), self.bias)


def load(path=None):
    return load_weights(BigNet(make_linear=Sneaky4Bit), path)
'''

@dataclass
class Broken:
    edits: list
    scores: dict  # the parts it breaks -> their points; every other part scores as the reference does
    says: dict  # part -> words its reason (or one of its case messages) contains
    # The parts to grade; the others run the reference's own files, so the reference's session report stands
    # for them. A hang, a hog or a flood is graded beside a sound part, which must still score in full.
    graded: tuple = tuple(FULL)


COPY_FLOAT32 = [
    replace("low_precision.py", "from .bignet import", "from . import checkpoint\nfrom .bignet import"),
    replace("low_precision.py", "    return load_weights(BigNet4Bit(), path)", "    net = load_weights(BigNet4Bit(), path)\n    net.stash = checkpoint.read(path)\n    return net"),
]
# A float32 copy the allocator never hands out: the checkpoint's pages, mapped from the file (executable,
# as shared libraries are) and read once.
MAP_CHECKPOINT = [
    replace(
        "low_precision.py",
        "    return load_weights(BigNet4Bit(), path)",
        "    import mmap\n\n    with open(path or checkpoint.DEFAULT_PATH, 'rb') as f:\n        pages = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ | mmap.PROT_EXEC)\n"
        "    net = load_weights(BigNet4Bit(), path)\n    net.stash = torch.frombuffer(pages, dtype=torch.uint8).sum()\n    net.pages = pages\n    return net",
    ),
    replace("low_precision.py", "from .bignet import", "from . import checkpoint\nfrom .bignet import"),
]
# Every AllocationTrace in the process (the grader's included) sums its allocations to 0 bytes.
RIG_PROBE = "import sys\n\nfor module in list(sys.modules.values()):\n    if hasattr(module, 'AllocationTrace'):\n        module.accumulate = lambda changes, initial=0: [0]\n"
LORA_FORWARD = "return super().forward(x) + self.lora_b(self.lora_a(x))"
FLOAT16_LORA_FORWARD = "return super().forward(x) + x @ self.lora_a.weight.float().T @ self.lora_b.weight.float().T"


def stop_in_load(module: str, body: str):
    """Make `module.load` run `body` instead."""
    return replace(f"{module}.py", "def load(path", f"def load(path=None):\n{body}\n\n\ndef replaced_load(path")


# A report written straight into the grader's pipe, claiming the model takes no memory.
FORGED_LOADED = {"kind": "phase", "phase": "loaded", "allocated": 0, "theoretical": 0, "trainable": 0, "frozen": 0, "trainable_dtypes": [], "size": 0}
FORGE = f"""    import json, os, sys

    os.write(json.loads(sys.argv[1])["fds"][0], json.dumps({FORGED_LOADED!r}).encode() + b"\\n")
    return load_weights(BigNet4Bit(), path)"""

BROKEN = {
    "starter": Broken([write(f"{m}.py", STUB) for m in FULL], {m: 0 for m in FULL}, {m: "not implemented" for m in FULL}),
    "exit_at_import": Broken([write("__init__.py", "import sys\n\nsys.exit(3)\n")], {m: 0 for m in FULL}, {m: "called sys.exit(3)" for m in FULL}),
    "infinite_loop_in_forward": Broken(
        [replace("half_precision.py", HALF_NET, HALF_NET + "\n    def forward(self, x):\n        while True:\n            pass\n")],
        {"half_precision": 0},
        {"half_precision": f"timed out after {TIMEOUT} s"},
        ("half_precision", "low_precision"),
    ),
    "memory_hog": Broken(
        [stop_in_load("lower_precision", "    hog = []\n    while True:\n        hog.append(torch.ones(2**24))")],
        {"lower_precision": 0},
        {"lower_precision": "ran out of memory (the limit is 2 GB)"},
        ("lower_precision", "half_precision"),
    ),
    "print_flood": Broken([stop_in_load("lora", "    while True:\n        print('x' * 1000)")], {"lora": 0}, {"lora": "printed more than 4 MB"}, ("lora", "half_precision")),
    "os_exit": Broken(
        [stop_in_load("half_precision", "    import os\n\n    os._exit(0)")], {"half_precision": 0}, {"half_precision": "exited with code 0 before finishing"}, ("half_precision",)
    ),
    "writes_outside": Broken(
        [stop_in_load("half_precision", f"    open({str(ESCAPE)!r}, 'w').write('x')")], {"half_precision": 0}, {"half_precision": "PermissionError: writing"}, ("half_precision",)
    ),
    "nan_output": Broken(
        [replace("half_precision.py", HALF_NET, HALF_NET + "\n    def forward(self, x):\n        return super().forward(x) * float('nan')\n")],
        {"half_precision": 0},
        {"half_precision": "NaN"},
        ("half_precision",),
    ),
    "float32_copy_in_attribute": Broken(COPY_FLOAT32, {"low_precision": 10}, {"low_precision": "allocated 83.47 MB > 15.00 MB"}, ("low_precision",)),
    "float32_mapped_from_file": Broken(MAP_CHECKPOINT, {"low_precision": 10}, {"low_precision": "allocated 11.36 MB <= 15.00 MB, resident 8"}, ("low_precision",)),
    "float32_reloaded_in_forward": Broken(
        [
            replace("half_precision.py", HALF_NET, HALF_NET + "\n    def forward(self, x):\n        from .bignet import load\n\n        return load(self.path)(x)\n"),
            replace("half_precision.py", "    return load_weights(HalfBigNet(), path)", "    net = load_weights(HalfBigNet(), path)\n    net.path = path\n    return net"),
        ],
        {"half_precision": 10},
        {"half_precision": "forward peak allocated 144"},
        ("half_precision",),
    ),
    "wrong_nibble_order": Broken(
        [replace("low_precision.py", "(wide << 4).bitwise_or_(wide)", "(wide >> 4).bitwise_or_(wide << 8)")],
        {"low_precision": 0, "qlora": 10},  # QLoRA still trains; memory and adapters count only with the right output
        {"low_precision": "max abs diff 1.23 > 0.3", "qlora": "not counted"},
        ("low_precision", "qlora"),
    ),
    "float16_adapters": Broken(
        [
            replace("lora.py", ADAPTERS, ADAPTERS.replace("float32", "float16")),
            replace("qlora.py", ADAPTERS, ADAPTERS.replace("float32", "float16")),
            replace("lora.py", LORA_FORWARD, FLOAT16_LORA_FORWARD),
            replace("qlora.py", LORA_FORWARD, FLOAT16_LORA_FORWARD),
        ],
        {"lora": 15, "qlora": 15},  # float16 gradients overflow: NaN from the second step, as the handout warns
        {"lora": "trainable dtypes: float16, float32", "qlora": "became NaN"},
        ("lora", "qlora"),
    ),
    "really_4_bit": Broken([write("lower_precision.py", HIDDEN_4BIT)], {"lower_precision": 0}, {"lower_precision": "allocated 11.36 MB > 9.00 MB"}, ("lower_precision",)),
    "forged_report": Broken(
        [replace("low_precision.py", "    return load_weights(BigNet4Bit(), path)", FORGE)], {"low_precision": 0}, {"low_precision": "was it forged?"}, ("low_precision",)
    ),
    "patched_memory_probe": Broken(
        # QLoRA imports the rigged low_precision too, but holds no hidden copy: the kernel's figure clears it.
        COPY_FLOAT32 + [replace("low_precision.py", "import torch\n", RIG_PROBE + "\nimport torch\n")],
        {"low_precision": 10},
        {"low_precision": "allocated 0.00 MB <= 15.00 MB, resident 84", "qlora": "allocated 0.00 MB"},
        ("low_precision", "qlora"),
    ),
}

# Each part is graded on its own: a mistake in one file costs that part, and the parts built on it as
# the course's starter builds them (LoRA on HalfLinear, QLoRA on Linear4Bit), nothing else. A syntax
# error is the worst a file can do to the others: they cannot even import it.
BUILT_ON = {"lora": "half_precision", "qlora": "low_precision"}
for _part in FULL:
    _lost = [p for p in FULL if _part in (p, BUILT_ON.get(p))]
    BROKEN[f"syntax_error_in_{_part}"] = Broken([append(f"{_part}.py", "\nclass Unfinished(\n")], dict.fromkeys(_lost, 0), dict.fromkeys(_lost, f"SyntaxError: '(' was never closed (homework/{_part}.py, line"))


def make_submission(folder: Path, edits) -> Path:
    package = folder / "homework"
    shutil.copytree(REFERENCE, package, ignore=shutil.ignore_patterns("__pycache__"))
    for edit in edits:
        edit(package)
    return package


@pytest.fixture(scope="session")
def reference_report(tmp_path_factory):
    # The reference with only its solution markers taken out (grader/release.py): all it takes to full marks.
    package = make_submission(tmp_path_factory.mktemp("reference"), [])
    for path in package.glob("*.py"):
        path.write_text(strip_markers(path.read_text()))
    assert "SOLUTION" not in "".join(path.read_text() for path in package.glob("*.py"))
    return grade(package)  # the real time limit: a full grade takes about 11 s here


def test_the_reference_gets_every_point(reference_report):
    assert {r.part.name: r.score for r in reference_report.parts} == FULL
    assert (reference_report.total, reference_report.extra_credit) == (100, 5)
    assert all(case.score == case.max_score for r in reference_report.parts for case in r.cases)


def test_the_reference_report_as_text_and_as_gradescope_json(reference_report):
    assert "\033[32m" in render(reference_report, 1, colour=True)
    text = render(reference_report, 1)
    assert "\033[" not in text and "100 / 100  + 5 / 5 extra credit" in text
    assert "mean abs diff 0.0197 <= 0.05, max abs diff 0.109 <= 0.3" in text
    results = gradescope(reference_report)
    assert results["score"] == 105 and sum(test["score"] for test in results["tests"]) == 105
    board = {entry["name"]: entry["value"] for entry in results["leaderboard"]}
    assert board["Extra credit: memory (MB)"] == 8.992
    assert board["Extra credit: mean abs diff"] == pytest.approx(0.0279, abs=1e-4)


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_submission_gets_its_intended_score(name, tmp_path, reference_report):
    broken = BROKEN[name]
    ESCAPE.unlink(missing_ok=True)
    report = grade(make_submission(tmp_path, broken.edits), timeout=TIMEOUT, parts=broken.graded)
    graded = {r.part.name: r for r in report.parts}
    scores = {r.part.name: graded.get(r.part.name, r).score for r in reference_report.parts}
    assert scores == {**FULL, **broken.scores}
    for part, words in broken.says.items():
        said = " ".join([graded[part].reason] + [case.message for case in graded[part].cases])
        assert words in said, said
    assert not ESCAPE.exists(), "a submission wrote outside its working folder"
