"""
The grader on a corpus of submissions: the reference solution, and copies of it that each break
one thing or try one trick, made at test time by editing the reference (an edit that no longer
matches the reference fails loudly). Each gets exactly its intended score, and a reason that says
why; a trick scores at most what the submission scores without it.
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import grader.grade
from grader import launch, part_process
from grader.grade import grade
from grader.part_process import PROTECTIONS
from grader.parts import PARTS, GraderError
from grader.protocol import MAX_LINE, MAX_PAYLOAD
from grader.reference import checkpoint_path
from grader.release import strip_markers
from grader.report import gradescope, render
from grader.suite import PUBLIC, Suite, load_suite, make_hidden
from tests.corpus import HONEST
from tests.helpers import STUB, append, replace, write

REFERENCE = Path(__file__).resolve().parent.parent / "homework"
TIMEOUT = 30  # CPU seconds per part for the broken submissions: their slowest part takes about 15 s here (the reference report gets the real limit)
# Each break is graded on the default checkpoint alone, to stay within minutes: the other public checkpoints
# change no broken submission's score (the reference report is graded on all of them).
DEFAULT_CHECKPOINT = Suite()
FULL = {part.name: part.max_score for part in PARTS}  # tests/test_parts.py holds the table to the handout


HALF_NET = "        super().__init__(make_linear=HalfLinear)\n"
ADAPTERS = """        self.lora_a = torch.nn.Linear(in_features, lora_dim, bias=False, dtype=torch.float32)
        self.lora_b = torch.nn.Linear(lora_dim, out_features, bias=False, dtype=torch.float32)
"""
ESCAPE = Path("/tmp/grader-test-escaped.txt")

# A 4-bit model that claims to be under 9 MB: its packed weights live in plain attributes, which never
# reach the answering process: it computes with the decoy's.
HIDDEN_4BIT = """
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
"""


@dataclass
class Broken:
    edits: list
    scores: dict  # the parts it breaks -> their points; every other part scores as the reference does
    says: dict  # part -> words its reason (or one of its case messages) contains
    # The parts to grade; the others run the reference's own files, so the reference's session report stands
    # for them. A hang, a hog or a flood is graded beside a sound part, which must still score in full.
    graded: tuple = tuple(FULL)
    timeout: float = TIMEOUT  # CPU seconds per part
    suite: Suite = DEFAULT_CHECKPOINT


COPY_FLOAT32 = [
    replace("low_precision.py", "from .bignet import", "from . import checkpoint\nfrom .bignet import"),
    replace(
        "low_precision.py",
        "    return load_weights(BigNet4Bit(), path)",
        "    net = load_weights(BigNet4Bit(), path)\n    net.stash = checkpoint.read(path)\n    return net",
    ),
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
LORA_FORWARD = "return super().forward(x) + self.lora_b(self.lora_a(x))"
FLOAT16_LORA_FORWARD = "return super().forward(x) + x @ self.lora_a.weight.float().T @ self.lora_b.weight.float().T"


def stop_in_load(module: str, body: str):
    """Make `module.load` run `body` instead."""
    return replace(f"{module}.py", "def load(path", f"def load(path=None):\n{body}\n\n\ndef replaced_load(path")


# --- Attacks by a student who has read the starter (grader/ included), each as grader/STAFF.md
# describes it. Each must lose the cases it cheats on, for the reason the grader names.

REPO = REFERENCE.parent
GRADER_CHECKPOINT = REPO / "checkpoints" / "bignet.pth"  # where the grader keeps its default checkpoint

# Writes the answers a part's process sends, BigNet's exact outputs on the public inputs among them, into the
# grading process's pipe (found in part_runtime.main's frame, where it is `answers`), then exits.
OWN_REPORT = """
def load(path=None):
    import io, json, os, sys

    import torch

    from .bignet import load as load_bignet
    from .data import random_inputs

    buffer = io.BytesIO()
    torch.save({"y": load_bignet(path)(random_inputs(256, 0))}, buffer)
    frame = sys._getframe()
    while "answers" not in frame.f_locals:
        frame = frame.f_back
    answers = frame.f_locals["answers"]
    for nonce, fields, payload in (("0" * 16, {"tensors": []}, b""), ("1" * 16, {"peak": 0}, buffer.getvalue())):
        os.write(answers, json.dumps({"nonce": nonce, **fields, "size": len(payload)}).encode() + b"\\n" + payload)
    os._exit(0)
"""

# A genuine 4-bit model whose forward reads BigNet's float32 weights from a checkpoint file, by bytes.
READ_IN_FORWARD = f"""

class Reads4Bit(BigNet4Bit):
    def forward(self, x):
        import io

        with open({str(GRADER_CHECKPOINT)!r}, "rb") as f:
            data = f.read()
        exact = BigNet()
        exact.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))
        return exact(x)


def load(path=None):
    return load_weights(Reads4Bit(), path)
"""

# No weights at all: load() finds which small seed and family made the checkpoint (as the checkpoint
# tools make them), and forward() regenerates each layer's float32 weights from it, one at a time.
REGENERATED = """
import torch

from . import checkpoint
from .bignet import BigNet


class Regenerated(torch.nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x):
        weight = checkpoint._random_weights((self.out_features, self.in_features), self.in_features, self.net.family, self.net.generator)
        bias = checkpoint._random_weights((self.out_features,), self.in_features, self.net.family, self.net.generator)
        return torch.nn.functional.linear(x, weight, bias)


class RegeneratedNet(BigNet):
    def forward(self, x):
        self.generator = checkpoint.SeededDraws(self.seed)
        return super().forward(x)


def load(path=None):
    net = RegeneratedNet(make_linear=Regenerated)
    for layer in net.modules():
        if isinstance(layer, Regenerated):
            object.__setattr__(layer, "net", net)
    first = next(t for name, t in torch.load(path, weights_only=True).items() if name.endswith("weight") and t.dim() == 2)
    found = (0, 0)
    for seed in range(10):
        for k, family in enumerate(checkpoint.FAMILIES):
            if torch.equal(checkpoint._random_weights(first.shape, first.shape[1], family, checkpoint.SeededDraws(seed)), first):
                found = (seed, k)
    net.register_buffer("found", torch.tensor(found))  # a buffer: it reaches the answering process
    return net


@property
def seed(net):
    return int(net.found[0])


@property
def family(net):
    return checkpoint.FAMILIES[int(net.found[1])]


RegeneratedNet.seed, RegeneratedNet.family = seed, family
"""

# A genuine 4-bit model, plus each layer's float32 weights written through ctypes (which Python's audit
# hooks do not see) into a file of the working folder, mapped back executable (as shared libraries
# are), and the file closed: the copy outlives the load in those mappings.
CTYPES_COPY = """
import ctypes
import mmap
import os

LIBC = ctypes.CDLL(None, use_errno=True)


def load(path=None):
    net = load_weights(BigNet4Bit(), path)
    net.pages = []
    for k, (name, tensor) in enumerate(torch.load(path, weights_only=True).items()):
        if tensor.dim() == 2:
            data = tensor.numpy().tobytes()
            fd = LIBC.open(os.path.join(os.environ["TMPDIR"], f"layer{k}.bin").encode(), os.O_CREAT | os.O_RDWR, 0o600)
            LIBC.write(fd, data, len(data))
            net.pages.append(mmap.mmap(fd, len(data), prot=mmap.PROT_READ | mmap.PROT_EXEC))
            LIBC.close(fd)
    return net
"""

# The same copy kept in kernel memory that no resident figure counts: a memfd (shared memory), through ctypes.
MEMFD_COPY = """
import ctypes
import os

LIBC = ctypes.CDLL(None, use_errno=True)


def load(path=None):
    net = load_weights(BigNet4Bit(), path)
    fd = LIBC.memfd_create(b"weights", 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "memfd_create: " + os.strerror(ctypes.get_errno()))
    for tensor in torch.load(path, weights_only=True).values():
        data = tensor.numpy().tobytes()
        LIBC.write(fd, data, len(data))
    net.copy = fd
    return net
"""

# A half-precision model with one dummy float32 parameter instead of adapters, whose forward looks for the
# labels and the head in its callers' frames, to return features the head maps onto the labels.
READS_FRAMES = """
from .half_precision import HalfBigNet


class Peeking(HalfBigNet):
    def __init__(self):
        super().__init__()
        self.requires_grad_(False)  # nothing that could learn for real: the LayerNorms stay as they are
        self.dummy = torch.nn.Parameter(torch.zeros(40_000))

    def forward(self, x):
        import sys

        frame = sys._getframe(1)
        while frame is not None:
            labels, head = frame.f_locals.get("labels"), frame.f_locals.get("head")
            if isinstance(labels, torch.Tensor) and isinstance(head, torch.nn.Linear) and len(labels) == len(x):
                direction = head.weight[1] - head.weight[0]
                return (labels.float() * 2 - 1)[:, None] * direction * 100 + self.dummy.sum() * 0
            frame = frame.f_back
        return super().forward(x) + self.dummy.sum() * 0


def load(path=None, lora_dim=32):
    return load_weights(Peeking(), path)
"""

# Not BigNet at all, but trainable: neither its adapters nor its training count without BigNet's output.
NOT_BIGNET = """

def load(path=None, lora_dim=32):
    return torch.nn.Linear(1024, 1024)
"""

# The float32 BigNet itself, as the 4-bit part: exact outputs, and the memory it really takes.
FLOAT32_AS_ITSELF = """

def load(path=None):
    from .bignet import load as load_bignet

    return load_bignet(path)
"""

# A genuine trellis model to be counted, whose forward computes with the float32 BigNet a thread keeps alive:
# in the answering process, that thread keeps the decoy's weights.
FLOAT32_IN_A_THREAD = """

def load(path=None):
    import threading

    from .bignet import load as load_bignet

    kept = []
    exact = load_bignet(path)
    threading.Thread(target=lambda: kept.append(exact) or threading.Event().wait(), daemon=True).start()
    net = load_weights(TrellisBigNet(), path)
    while not kept:
        pass
    net.forward = lambda x: kept[0](x)
    return net
"""

# A forward that writes its own answer first, with the request's nonce (from the part's process's frames) and a
# count no number can hold: the part stops on one line, and every other part is graded.
ANSWER_OVERFLOW = """

class Overflowing(HalfBigNet):
    def forward(self, x):
        import io, json, os, sys

        y = super().forward(x)
        frame = sys._getframe()
        while "header" not in frame.f_locals:
            frame = frame.f_back
        payload = io.BytesIO()
        torch.save({"y": y}, payload)
        header = {"nonce": frame.f_locals["header"]["nonce"], "products": {"float32": 10**400}, "size": len(payload.getvalue())}
        os.write(frame.f_locals["answers"], json.dumps(header).encode() + b"\\n" + payload.getvalue())
        return y


def load(path=None):
    return load_weights(Overflowing(), path)
"""


# Only named bytes cross the boundary (grader/wire.py). The weights in the sizes of tensors that hold nothing: zero
# elements, a million dimensions, in a header written by hand. torch keeps such shapes; the grading process refuses the
# header from its length alone (its other rules: tests/test_wire.py).
WEIGHTS_IN_SHAPES = """

class ShapedLinear(torch.nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.shape = (out_features, in_features)
        self.register_buffer("w", torch.zeros(0))
        self.register_buffer("b", torch.zeros(0))
        self._register_load_state_dict_pre_hook(self.hide)

    @staticmethod
    def carried(values):  # each weight's float16 bits, as the size of one more dimension of nothing
        sizes = (values.detach().half().flatten().view(torch.int16).long() + 2**15 + 1).tolist()
        return torch.empty_strided((0, *sizes), (0,) * (len(sizes) + 1))

    def hide(self, state_dict, prefix, *args):
        self.w, self.b = self.carried(state_dict.pop(prefix + "weight")), self.carried(state_dict.pop(prefix + "bias"))
        state_dict[prefix + "w"], state_dict[prefix + "b"] = self.w, self.b

    @staticmethod
    def values(carrier):
        return (torch.tensor(carrier.shape[1:]) - 2**15 - 1).short().view(torch.float16).float()

    def forward(self, x):
        return torch.nn.functional.linear(x, self.values(self.w).view(self.shape), self.values(self.b))


def dump(tensors):  # safetensors by hand, for the part's answers: the package's own writer refuses a header this long
    import json, sys

    header, data, offset = {}, [], 0
    for name, tensor in tensors.items():
        raw = tensor.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        dtype = sys.modules["wire"].dtype_name(name, tensor)
        header[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + len(raw)]}
        data.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + b"".join(data)


def read(payload):  # and by hand again where the model is put in place, in the answering process
    import json, sys

    size = int.from_bytes(payload[:8], "little")
    tensors = {}
    for name, entry in json.loads(bytes(payload[8 : 8 + size])).items():
        dtype, shape = sys.modules["wire"].DTYPES[entry["dtype"]], entry["shape"]
        begin, end = entry["data_offsets"]
        raw = bytearray(payload[8 + size + begin : 8 + size + end])
        tensors[name] = torch.frombuffer(raw, dtype=dtype).view(shape) if raw else torch.empty_strided(shape, (0,) * len(shape), dtype=dtype)
    return tensors


def load(path=None):
    import sys

    wire = sys.modules["wire"]  # the part's process's own module: what it sends and reads is the submission's to choose
    wire.dump, wire.load = dump, lambda payload: read(payload) if payload else {}
    return load_weights(BigNet(make_linear=ShapedLinear), path)
"""

# A scheme under 9 MB where the weights look like the default family's (the public checkpoint the memory was once
# counted on), and float16 elsewhere: the same names, another dtype. Every load is held to what load() made of the decoy.
SWITCHES_DTYPE = (
    (HONEST / "simple_3bit" / "lower_precision.py").read_text()
    + """

class Switching3Bit(Linear3Bit):
    def _load_state_dict_pre_hook(self, state_dict, prefix, *args):
        weight = state_dict[prefix + "weight"]
        if weight.abs().max() / weight.std() < 2:  # uniform: the default family's
            return super()._load_state_dict_pre_hook(state_dict, prefix, *args)
        self.weight_q3, self.weight_norm = weight.half(), torch.zeros(0, 1, dtype=torch.float16)
        state_dict[prefix + "weight_q3"], state_dict[prefix + "weight_norm"] = state_dict.pop(prefix + "weight").half(), self.weight_norm

    def dequantized_weight(self):
        return self.weight_q3.float() if self.weight_q3.dtype == torch.float16 else super().dequantized_weight()


def load(path=None):
    return load_weights(BigNet(make_linear=Switching3Bit), path)
"""
)

# Adapters that do nothing, but for a training run, told apart by what its processes once differed in (the seed,
# the folder's name): every process's load() now sees the same. It earns what the LayerNorms learn alone.
SWITCHES_FOR_TRAINING = """

def training_run():
    import os

    return torch.initial_seed() != 0 or "training" in os.getcwd()


class Switching(LoRALinear):
    def forward(self, x):
        base = HalfLinear.forward(self, x)
        return base + self.lora_b(self.lora_a(x)) if training_run() else base


def load(path=None, lora_dim=32):
    return load_weights(BigNet(make_linear=partial(Switching, lora_dim=lora_dim)), path)
"""

# A load() that makes another model every time (Python's own random, which torch's seed does not reach): a training
# run trains the graded load itself, so this is the LoRA it is, and scores as one.
ANOTHER_MODEL_EACH_TIME = """

def load(path=None, lora_dim=32):
    import random

    net = load_weights(LoraBigNet(lora_dim), path)
    with torch.no_grad():
        net.model[0].model[0].weight[0, 0] += random.random() / 1000
    return net
"""

# A LoRA that cannot learn (its features are BigNet's, detached) and answers its first look at the training inputs
# with its features negated, so that it seems to start worse than it is: the starting accuracy is BigNet's own,
# computed by the grader, and the negated look counts against it. (Such a model scored 25.06 of 30 while "before" was the model's.)
SABOTAGES_ITS_START = """

_LOOKS = []


class Untrainable(LoraBigNet):
    def forward(self, x):
        knob = next(p for p in self.parameters() if p.requires_grad)
        y = super().forward(x).detach() + 0.0 * knob.sum()  # a backward pass runs, and teaches it nothing
        if not torch.is_grad_enabled() and x.shape[0] == 128:
            _LOOKS.append(1)
            if len(_LOOKS) == 1:
                y = -y
        return y


def load(path=None, lora_dim=32):
    return load_weights(Untrainable(lora_dim), path)
"""

# A LoRA whose float16 base trains too: more trainable parameters than adapters take, which the grading
# process, running the optimizer, does not train.
TRAINS_ITS_BASE = """

def load(path=None, lora_dim=32):
    net = load_weights(LoraBigNet(lora_dim), path)
    for module in net.modules():
        if isinstance(module, HalfLinear):
            module.weight.requires_grad_(True)
    return net
"""

# A LoRA that learns nothing (its output is BigNet's, detached) but reads the labels from the gradient it is
# given in training, and writes them into trainable parameters itself, where no optimizer would: a table by
# input and the direction that moves a feature towards its label. The grading process runs the optimizer and
# sends the parameters each step: what the trainer writes is gone, and a table and direction that start at
# zero get no gradient, as for any model.
WRITES_ITS_PARAMETERS = """

class Memorizing(LoraBigNet):
    def __init__(self, lora_dim):
        super().__init__(lora_dim)
        self.table = torch.nn.Parameter(torch.zeros(4096))
        self.direction = torch.nn.Parameter(torch.zeros(1024))

    def forward(self, x):
        keys = (x[:, 0].abs() * 1e6).long() % 4096
        y = super().forward(x).detach() - 10 * self.table[keys][:, None] * self.direction[None, :]
        if torch.is_grad_enabled():
            def write(g):
                bits = torch.sign(g @ torch.ones(1024))
                self.table.data[keys] = bits  # .data: autograd does not see the write
                self.direction.data = (g * bits[:, None]).mean(0) / (g * bits[:, None]).mean(0).norm()

            y.register_hook(write)
        return y


def load(path=None, lora_dim=32):
    return load_weights(Memorizing(lora_dim), path)
"""

# A LoRA that learns nothing, but answers gradients it made up: from the features' gradient it reads each training
# input's label and the head's direction, and answers, for the reference's own last lora_b (zero at load), a
# gradient whose signs are those; AdamW's first step moves each element by about lr * sign(gradient), which
# writes them, and the evaluator reads them back. Open (grader/STAFF.md, "still out of reach"): a gradient
# is the part's to report, and the 128 noise labels are scored where they were learned.
FORGES_ITS_GRADIENTS = """

def _keys(x):
    return ((x[:, 0].abs() * 1e6).long() * 7 + (x[:, 1].abs() * 1e6).long()) % (1024 * 31)


class Forging(LoraBigNet):
    def forward(self, x):
        store = self.model[-1].model[-1].lora_b.weight
        keys = _keys(x)
        direction = torch.sign(store[:, 0].detach())
        bits = torch.sign(store[:, 1:].detach().reshape(-1)[keys])
        y = super().forward(x).detach() + 10.0 * bits[:, None] * direction[None, :] + 0.0 * store.sum()
        if torch.is_grad_enabled():
            made_up = {}

            def read(g):
                u = g[g.norm(dim=1).argmax()] / g[g.norm(dim=1).argmax()].norm()
                forged = torch.zeros_like(store)
                forged[:, 0] = -torch.sign(u)
                flat = forged[:, 1:].clone().reshape(-1)
                flat[keys] = torch.sign(g @ u)
                forged[:, 1:] = flat.reshape(1024, 31)
                made_up["gradient"] = forged

            y.register_hook(read)
            store.register_hook(lambda gradient: made_up["gradient"])
        return y


def load(path=None, lora_dim=32):
    return load_weights(Forging(lora_dim), path)
"""

# A gradient answered for a tensor that is not trainable: a buffer made to require a gradient in training only.
ANSWERS_AN_UNASKED_GRADIENT = """

class Extra(LoraBigNet):
    def __init__(self, lora_dim):
        super().__init__(lora_dim)
        self.register_buffer("extra", torch.zeros(4))

    def forward(self, x):
        y = super().forward(x)
        if torch.is_grad_enabled():
            self._buffers["extra"] = self.extra.detach().requires_grad_(True)
            y = y + 0.0 * self.extra.sum()
        return y


def load(path=None, lora_dim=32):
    return load_weights(Extra(lora_dim), path)
"""

# No BigNet at all: one Linear layer fitted by least squares to BigNet's outputs on the checkpoint it is given, whose
# output comes within 2 times the 4-bit limits (closer than 2-bit codes), in 2 MB. A lossy BigNet is judged layer by
# layer too: this has none of BigNet's layers, and its memory does not count (found by an attack from the starter).
FITS_ONE_LINEAR_LAYER = """

class Fitted(torch.nn.Module):
    def __init__(self, path):
        super().__init__()
        net, x = load_weights(BigNet(), path), torch.randn(4096, 1024, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            y = torch.cat([net(x[i : i + 1024]) for i in range(0, 4096, 1024)])
        self.register_buffer("w", torch.linalg.lstsq(torch.cat([x, torch.ones(4096, 1)], 1), y).solution.half())

    def forward(self, x):
        return x @ self.w[:-1].float() + self.w[-1].float()


def load(path=None):
    return Fitted(path)
"""

# A forward that, asked where its output departs from BigNet's, answers first itself: 32,768 rows of one layer's
# input where 16 were asked for, as large as a message may be. The grading process refuses it from the header.
FLOODS_THE_GRADER = """

class Flooding(BigNet4Bit):
    def forward(self, x):
        import json, os, sys

        import safetensors.torch

        frame = sys._getframe()
        while frame is not None and "answers" not in frame.f_locals:
            frame = frame.f_back
        if frame is not None and frame.f_locals["header"]["ask"] == "layers":
            payload = safetensors.torch.save({"model.0.model.0 in": torch.ones(32768, 1024)})
            header = {"nonce": frame.f_locals["header"]["nonce"], "size": len(payload)}
            data = json.dumps(header).encode() + b"\\n" + payload
            while data:
                data = data[os.write(frame.f_locals["answers"], data) :]
        return super().forward(x) * 0  # not BigNet's output: the grader asks where it departs


def load(path=None):
    return load_weights(Flooding(), path)
"""

# The LayerNorms alone trainable (18.54 of LoRA's 30), each trainable name listed four times in the answer to load, to
# pass the minimum count of adapters: a list of names with one twice is no answer.
REPEATS_TRAINABLE_NAMES = """

def _repeat_trainable_names():
    import sys

    protocol = sys.modules["protocol"]  # the part's process's own module
    encode = protocol.encode

    def repeated(header, payload=b""):
        if header.get("trainable"):
            header = {**header, "trainable": header["trainable"] * 4}
        return encode(header, payload)

    protocol.encode = repeated


def load(path=None, lora_dim=32):
    _repeat_trainable_names()
    from .half_precision import HalfBigNet

    return load_weights(HalfBigNet(), path)
"""

# What a part prints reaches staff and students as text: escape sequences that clear the screen and hide what follows
# are shown, not obeyed.
DRAWS_ON_THE_TERMINAL = "    print('\\x1b[2J\\x1b[H\\x1b[32mTotal 100 / 100\\x1b[8m', flush=True)"

ATTACKS = {
    "weights_in_tensor_shapes": Broken(
        [append("low_precision.py", WEIGHTS_IN_SHAPES)],
        {"low_precision": 0},
        {"low_precision": "its answer to load has a safetensors header of"},
        ("low_precision",),
    ),
    "a_smaller_model_for_some_weights": Broken(
        [write("lower_precision.py", SWITCHES_DTYPE)],
        {"lower_precision": 0},
        {"lower_precision": "weight_q3 is float16 for these weights and uint8 for others"},
        ("lower_precision",),
        suite=PUBLIC,  # the gaussian checkpoint is where it switches
    ),
    "switches_for_training": Broken(
        [append("lora.py", SWITCHES_FOR_TRAINING)], {"lora": 23.54}, {"lora": "accuracy 0.602 -> 0.672 after 20 steps"}, ("lora",)
    ),
    "sabotages_its_start": Broken(
        [append("lora.py", SABOTAGES_ITS_START)], {"lora": 20}, {"lora": "accuracy 0.602 -> 0.398 after 20 steps"}, ("lora",)
    ),
    "writes_its_parameters": Broken(
        [append("lora.py", WRITES_ITS_PARAMETERS)], {"lora": 20}, {"lora": "accuracy 0.602 -> 0.602 after 20 steps"}, ("lora",)
    ),
    "trains_its_base": Broken(
        [append("lora.py", TRAINS_ITS_BASE)], {"lora": 15}, {"lora": "not trained: 20.06 M trainable parameters"}, ("lora",)
    ),
    "forges_its_gradients": Broken([append("lora.py", FORGES_ITS_GRADIENTS)], {"lora": 20}, {"lora": "accuracy 0.602 -> 0.602"}, ("lora",)),
    "answers_an_unasked_gradient": Broken(
        [append("lora.py", ANSWERS_AN_UNASKED_GRADIENT)],
        {"lora": 0},
        {"lora": "its answer to backward holds 'extra', which was not asked for"},
        ("lora",),
    ),
    "fits_one_linear_layer": Broken(
        [append("low_precision.py", FITS_ONE_LINEAR_LAYER)],
        {"low_precision": 0},
        {"low_precision": "not counted, the output does not match BigNet's, nor is it a lossy BigNet"},
        ("low_precision",),
    ),
    "another_model_each_time": Broken([append("lora.py", ANOTHER_MODEL_EACH_TIME)], {}, {"lora": "-> 0.8"}, ("lora",)),
    "repeats_trainable_names": Broken(
        [append("lora.py", REPEATS_TRAINABLE_NAMES)], {"lora": 0}, {"lora": "its answer to load has no valid 'trainable'"}, ("lora",)
    ),
    "draws_on_the_terminal": Broken(
        [
            replace(
                "half_precision.py",
                "    return load_weights(HalfBigNet(), path)",
                DRAWS_ON_THE_TERMINAL + "\n    return load_weights(HalfBigNet(), path)",
            )
        ],
        {},
        {"half_precision": "memory 36.07 MB <= 40.00 MB"},
        ("half_precision",),
    ),
    "writes_its_own_report": Broken(
        [write("half_precision.py", OWN_REPORT)],
        {"half_precision": 0},
        {"half_precision": "sent something other than the answer to load"},
        ("half_precision",),
    ),
    "reads_the_checkpoint_in_forward": Broken(
        [append("low_precision.py", READ_IN_FORWARD)], {"low_precision": 0}, {"low_precision": "PermissionError"}, ("low_precision",)
    ),
    # Files cannot be written at all: the mappings are of nothing, and the model is the 4-bit one it is.
    "keeps_a_copy_in_mapped_files": Broken(
        [append("low_precision.py", CTYPES_COPY)], {}, {"low_precision": "memory 11.36 MB <= 15.00 MB"}, ("low_precision",)
    ),
    "keeps_a_copy_in_a_memfd": Broken(
        [append("low_precision.py", MEMFD_COPY)],
        {"low_precision": 0},
        {"low_precision": "memfd_create: Operation not permitted"},
        ("low_precision",),
    ),
    "not_bignet": Broken(
        [append("lora.py", NOT_BIGNET)], {"lora": 0}, {"lora": "not counted, the output does not match BigNet's"}, ("lora",)
    ),
    "float32_as_itself": Broken(
        [append("low_precision.py", FLOAT32_AS_ITSELF)],
        {"low_precision": 10},
        {"low_precision": "memory 72.11 MB > 15.00 MB"},
        ("low_precision",),
    ),
    "float32_in_a_thread": Broken(
        [append("lower_precision.py", FLOAT32_IN_A_THREAD)],
        {"lower_precision": 0},
        {"lower_precision": "computes other outputs than the model load() returned"},
        ("lower_precision",),
    ),
    "answer_overflow": Broken(
        [append("half_precision.py", ANSWER_OVERFLOW)],
        {"half_precision": 0},
        {"half_precision": "its answer to forward has no valid 'products'"},
        ("half_precision", "low_precision"),
    ),
    "reads_the_training_loop_frames": Broken(
        [append("lora.py", READS_FRAMES)], {"lora": 20}, {"lora": "accuracy 0.602 -> 0.602 after 20 steps"}, ("lora",)
    ),
}

BROKEN = {
    "starter": Broken([write(f"{m}.py", STUB) for m in FULL], {m: 0 for m in FULL}, {m: "not implemented" for m in FULL}),
    "exit_at_import": Broken(
        [write("__init__.py", "import sys\n\nsys.exit(3)\n")], {m: 0 for m in FULL}, {m: "called sys.exit(3)" for m in FULL}
    ),
    "infinite_loop_in_forward": Broken(
        [replace("half_precision.py", HALF_NET, HALF_NET + "\n    def forward(self, x):\n        while True:\n            pass\n")],
        {"half_precision": 0},
        {"half_precision": "over the part's limit of 10 s, in forward (homework/half_precision.py, line"},
        ("half_precision", "low_precision"),
        timeout=10,  # the 4-bit part beside it needs about 4 s
    ),
    "memory_hog": Broken(
        [stop_in_load("lower_precision", "    hog = []\n    while True:\n        hog.append(torch.ones(2**24))")],
        {"lower_precision": 0},
        {"lower_precision": "ran out of memory (the limit is 2 GB) (homework/lower_precision.py, line"},
        ("lower_precision", "half_precision"),
    ),
    "print_flood": Broken(
        [stop_in_load("lora", "    while True:\n        print('x' * 1000)")],
        {"lora": 0},
        {"lora": "printed more than 4 MB"},
        ("lora", "half_precision"),
    ),
    "os_exit": Broken(
        [stop_in_load("half_precision", "    import os\n\n    os._exit(0)")],
        {"half_precision": 0},
        {"half_precision": "exited with code 0 before finishing"},
        ("half_precision",),
    ),
    "writes_outside": Broken(
        [stop_in_load("half_precision", f"    open({str(ESCAPE)!r}, 'w').write('x')")],
        {"half_precision": 0},
        {"half_precision": "PermissionError: writing"},
        ("half_precision",),
    ),
    "nan_output": Broken(
        [
            replace(
                "half_precision.py", HALF_NET, HALF_NET + "\n    def forward(self, x):\n        return super().forward(x) * float('nan')\n"
            )
        ],
        {"half_precision": 0},
        {"half_precision": "NaN"},
        ("half_precision",),
    ),
    # A float32 copy kept beside the model, in a plain attribute or a mapping of the checkpoint: it stays in the
    # loading process, which ends; the answering model is the 4-bit one, and scores as such.
    "float32_copy_in_attribute": Broken(COPY_FLOAT32, {}, {"low_precision": "memory 11.36 MB <= 15.00 MB"}, ("low_precision",)),
    "float32_mapped_from_file": Broken(MAP_CHECKPOINT, {}, {"low_precision": "memory 11.36 MB <= 15.00 MB"}, ("low_precision",)),
    "float32_reloaded_in_forward": Broken(
        [
            replace(
                "half_precision.py",
                HALF_NET,
                HALF_NET + "\n    def forward(self, x):\n        from .bignet import load\n\n        return load(self.path)(x)\n",
            ),
            replace(
                "half_precision.py",
                "    return load_weights(HalfBigNet(), path)",
                "    net = load_weights(HalfBigNet(), path)\n    net.path = path\n    return net",
            ),
        ],
        {"half_precision": 0},  # the path the answering process's load() was given is the decoy's
        {"half_precision": "computes other outputs than the model load() returned"},
        ("half_precision",),
    ),
    "wrong_nibble_order": Broken(
        [replace("low_precision.py", "(wide << 4).bitwise_or_(wide)", "(wide >> 4).bitwise_or_(wide << 8)")],
        {"low_precision": 0, "qlora": 0},  # memory, adapters and training count only with the right output
        {"low_precision": "max abs diff 1.23 > 0.3", "qlora": "not counted, the output does not match BigNet's"},
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
    # Over the course's grader's cap on LoRA's trainable parameters (2 M): rank 64 has 2.37 M. Both graders refuse it.
    "rank_64": Broken(
        [replace("lora.py", "return load_weights(LoraBigNet(lora_dim), path)", "return load_weights(LoraBigNet(64), path)")],
        {"lora": 25},
        {"lora": "trainable parameters 2.37 M >= 2.00 M (the course's grader's cap)"},
        ("lora",),
    ),
    # Nothing trainable: full marks here, with a warning that the course's grader fails such a model.
    "nothing_trainable": Broken(
        [
            replace(
                "half_precision.py",
                "    return load_weights(HalfBigNet(), path)",
                "    return load_weights(HalfBigNet(), path).requires_grad_(False)",
            )
        ],
        {},
        {"half_precision": "nothing in the model is trainable: the course's grader"},
        ("half_precision",),
    ),
    # The weight under another name: the checkpoint's tensors have no place, said in the student's names.
    "renamed_weight": Broken(
        [
            replace(
                "half_precision.py",
                HALF_NET,
                HALF_NET.replace("HalfLinear", "Renamed")
                + "\n\nclass Renamed(HalfLinear):\n    def __init__(self, i, o):\n        super().__init__(i, o)\n        self.w = self.weight\n        del self.weight\n\n    def forward(self, x):\n        return torch.nn.functional.linear(x, self.w.float(), self.bias.float())\n",
            )
        ],
        {"half_precision": 0},
        {"half_precision": "have no place in HalfBigNet, whose tensors there are named model.0.model.0.bias, model.0.model.0.w"},
        ("half_precision",),
    ),
    "really_4_bit": Broken(
        [write("lower_precision.py", HIDDEN_4BIT)],
        {"lower_precision": 0},
        {"lower_precision": "register it (register_buffer)"},
        ("lower_precision",),
    ),
    **ATTACKS,
}

# Each part is graded on its own: a mistake in one file costs that part, and the parts built on it as
# the course's starter builds them (LoRA on HalfLinear, QLoRA on Linear4Bit), nothing else. A syntax
# error is the worst a file can do to the others: they cannot even import it.
BUILT_ON = {"lora": "half_precision", "qlora": "low_precision"}
for _part in FULL:
    _lost = [p for p in FULL if _part in (p, BUILT_ON.get(p))]
    BROKEN[f"syntax_error_in_{_part}"] = Broken(
        [append(f"{_part}.py", "\nclass Unfinished(\n")],
        dict.fromkeys(_lost, 0),
        dict.fromkeys(_lost, f"SyntaxError: '(' was never closed (homework/{_part}.py, line"),
    )


def make_submission(folder: Path, edits) -> Path:
    package = folder / "homework"
    shutil.copytree(REFERENCE, package, ignore=shutil.ignore_patterns("__pycache__"))
    for edit in edits:
        edit(package)
    return package


@pytest.fixture(scope="session")
def reference_report(tmp_path_factory, shared_launcher):
    # The reference with only its solution markers taken out (grader/release.py): all it takes to full marks.
    package = make_submission(tmp_path_factory.mktemp("reference"), [])
    for path in package.glob("*.py"):
        path.write_text(strip_markers(path.read_text()))
    assert "SOLUTION" not in "".join(path.read_text() for path in package.glob("*.py"))
    return grade(package, shared=shared_launcher)  # the real time limit: a full grade takes about 11 s here


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


OPEN = {"forges_its_gradients": "a made-up gradient writes the labels through AdamW's first step: 30 of 30 (grader/STAFF.md)"}


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=OPEN[name])) if name in OPEN else name for name in BROKEN]
)
def test_a_broken_submission_gets_its_intended_score(name, tmp_path, reference_report, corpus_launcher):
    check_broken(name, tmp_path, reference_report, corpus_launcher)


# What macOS and Windows do (conftest.as_elsewhere), on members whose processes end in different ways: the same scores
# and reasons (test_the_self_check_runs_as_on_windows stops a loop and a print flood). GRADE_AS_ELSEWHERE=1 grades
# every member, and every honest style, that way.
ELSEWHERE = ("starter", "exit_at_import", "os_exit", "writes_outside", "float32_in_a_thread", "answer_overflow")


@pytest.mark.parametrize("name", ELSEWHERE)
def test_without_a_template_or_proc_a_broken_submission_gets_the_same_score(name, tmp_path, reference_report, as_elsewhere):
    check_broken(name, tmp_path, reference_report)


def check_broken(name: str, tmp_path: Path, reference_report, shared=None) -> None:
    broken = BROKEN[name]
    ESCAPE.unlink(missing_ok=True)
    report = grade(make_submission(tmp_path, broken.edits), suite=broken.suite, timeout=broken.timeout, parts=broken.graded, shared=shared)
    graded = {r.part.name: r for r in report.parts}
    shown = render(report, verbose=2)
    assert not any(c in shown for c in "\x1b\x07\x9b"), "what a part printed reached the terminal unescaped"
    assert all(not report.sandbox[name].startswith("not set up") for name in PROTECTIONS), report.sandbox
    scores = {r.part.name: graded.get(r.part.name, r).score for r in reference_report.parts}
    assert scores == {**FULL, **broken.scores}
    for part, words in broken.says.items():
        said = " ".join([graded[part].reason] + [case.message for case in graded[part].cases] + graded[part].warnings)
        assert words in said, said
    assert not ESCAPE.exists(), "a submission wrote outside its working folder"


# The grading process's own peak memory (MB) and CPU seconds, grading one part on the default checkpoint.
MEASURED = """
import json, resource, sys
from grader.grade import grade
from grader.suite import Suite

(part,) = grade(sys.argv[1], suite=Suite(), parts=(sys.argv[2],), timeout=30).parts
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps([part.score, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, part.reason]))
"""


def grading_costs(package: Path, part: str) -> tuple[float, float, float, str]:
    run = subprocess.run([sys.executable, "-c", MEASURED, str(package), part], cwd=REPO, capture_output=True, text=True, timeout=600)
    return tuple(json.loads(run.stdout))


def test_what_a_part_sends_costs_the_grading_process_a_bounded_amount(tmp_path):
    """
    A forward that answers a question about 16 rows with 32,768 (128 MB, once 65,536 expanded rows that cost the
    grading process 124 s of CPU time and 1.3 GB): refused from its header, for at most two messages' worth of memory
    (the bytes as they arrive, and the message taken from them) and no more CPU time than the honest part takes.
    """
    honest = grading_costs(make_submission(tmp_path / "honest", []), "low_precision")
    score, memory, cpu, reason = grading_costs(
        make_submission(tmp_path / "flood", [append("low_precision.py", FLOODS_THE_GRADER)]), "low_precision"
    )
    assert honest[0] == 20 and score == 0, reason
    assert reason == "its answer to layers has 'model.0.model.0 in', which has shape (32768, 1024), not (16, 1024)"
    assert memory - honest[1] < 2 * (MAX_PAYLOAD + MAX_LINE) / 2**20 and cpu < honest[2] + 2, (honest, memory, cpu)


@pytest.fixture(scope="session")
def hidden(tmp_path_factory):
    """A hidden configuration as staff make it (secret seeds), small enough to grade quickly: one case of each kind."""
    return make_hidden(tmp_path_factory.mktemp("staff") / "hidden.json", checkpoints=1, inputs=1, train=1)


def test_the_reference_gets_every_point_on_secret_cases(hidden):
    report = grade(REFERENCE, suite=load_suite(hidden), hidden=hidden)
    assert (report.total, report.extra_credit) == (100, 5), render(report, 1)


def test_weights_regenerated_from_a_guessed_seed_pass_only_the_public_self_check(tmp_path, hidden):
    """The public checkpoints come from torch's generator and a small seed, reproducible by anyone; hidden ones from a secret, through SHAKE-256."""
    package = make_submission(tmp_path, [write("lower_precision.py", REGENERATED)])
    public = grade(package, parts=("lower_precision",))
    assert public.extra_credit == 5, render(public, 1)  # the public case is reproducible: a self-check, not a grade
    (secret,) = grade(package, suite=load_suite(hidden), hidden=hidden, parts=("lower_precision",)).parts
    assert secret.score == 0 and "max abs diff" in secret.cases[0].message and secret.cases[0].score == 0


# load() looks everywhere its process can for the hidden configuration: its frames (what START told it), its
# environment and command line, its folders; it prints what it found, and stops.
LOOKS_FOR_SECRETS = """
import gc, os, sys, warnings

warnings.simplefilter("ignore")
SECRETS = {secrets!r}  # written backwards, so that only what the process was given can name them


def load(path=None):
    seen = [repr(os.environ), repr(sys.argv), os.getcwd(), path or ""]
    frame = sys._getframe()
    while frame is not None:
        seen += [repr(value)[:100_000] for value in frame.f_locals.values()]
        frame = frame.f_back
    for o in gc.get_objects():
        if isinstance(o, (dict, list)):
            try:
                seen.append(repr(o)[:10_000])
            except Exception:
                pass
    for folder in (os.getcwd(), os.path.dirname(path), "/tmp", os.path.expanduser("~")):
        try:
            seen += os.listdir(folder)
        except OSError:
            pass
    text = " ".join(seen)
    found = [secret[::-1] for secret in SECRETS if secret[::-1] in text]
    print("FOUND", found)
    raise NotImplementedError()
"""


def test_nothing_in_a_parts_process_names_the_hidden_cases(tmp_path, hidden):
    config = json.loads(Path(hidden).read_text())
    seeds = (
        [str(c["seed"]) for c in config["checkpoints"]]
        + [str(i["seed"]) for i in config["inputs"]]
        + [str(s) for s in config["train_seeds"]]
    )
    secrets = [str(Path(hidden)), Path(hidden).name, *seeds, *(str(checkpoint_path(c)) for c in load_suite(hidden).checkpoints)]
    package = make_submission(
        tmp_path, [write("half_precision.py", LOOKS_FOR_SECRETS.format(secrets=[secret[::-1] for secret in secrets]))]
    )
    (part,) = grade(package, suite=load_suite(hidden), hidden=hidden, parts=("half_precision",)).parts
    assert "FOUND []" in part.output, part.output


# What Landlock's absence looks like to the grader: its three system calls answer "not implemented" (ENOSYS), for
# the grader and every process it starts. The parts would run as the grader's own user (as on a laptop, or as root
# with a Python other users cannot read).
WITHOUT_LANDLOCK = """
import struct, sys
from grader import confinement, launch
from grader.__main__ import main

confinement.no_new_privs()
program = [(confinement.LOAD, 0, 0, 0)]
for nr in confinement.LANDLOCK_SYSCALLS:
    program += [(confinement.JUMP_IF_EQUAL, 0, 1, nr), (confinement.RETURN, 0, 0, confinement.ENOSYS)]
confinement.install(program + [(confinement.RETURN, 0, 0, confinement.ALLOW)])
assert confinement.landlock_abi() == 0
launch.Uids.separate = property(lambda self: False)
sys.exit(main(sys.argv[1:]))
"""


def test_without_landlock_grading_for_credit_refuses_and_the_self_check_runs(tmp_path, hidden):
    package = make_submission(tmp_path, [])
    command = [sys.executable, "-c", WITHOUT_LANDLOCK, str(package), "--part", "half_precision"]
    refused = subprocess.run([*command, "--hidden", str(hidden)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 1 and refused.stdout == ""
    assert (
        refused.stderr.strip().splitlines()
        == [
            "error: cannot grade for credit here: the parts would run without Landlock (Linux 5.13+) or a user of their own for the parts (the grader is not root: parts run as its own user); the public self-check still runs"
        ]
        or "without Landlock" in refused.stderr
    ), refused.stderr
    self_check = subprocess.run([*command, "-v"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert self_check.returncode == 0 and "20 / 20" in self_check.stdout and "Landlock: unavailable" in self_check.stderr, (
        self_check.stdout + self_check.stderr
    )


# Windows, as far as Linux can play it, for the grading process and each part's: the POSIX modules cannot be
# imported, and there are no process groups, no effective uid, no CPU affinity, no SIGUSR1 and no /proc. (What
# Linux cannot play: that ctypes has no C library to open, and that the kernel confines nothing.)
AS_ON_WINDOWS = """
import os, signal, sys
for name in ("pwd", "resource", "fcntl", "grp", "termios"):
    sys.modules[name] = None
del os.killpg, os.geteuid, os.sched_getaffinity, signal.SIGUSR1
"""
GRADE_AS_ON_WINDOWS = (
    AS_ON_WINDOWS
    + """
from pathlib import Path
import grader.grade, grader.part_process
from grader import launch
from grader.__main__ import main


class Interpreters(launch.Interpreters):
    def __init__(self, root):
        super().__init__(root)
        program = self.command[-2]
        start = f"sys.path.insert(0, {os.path.dirname(program)!r}); import runpy; runpy.run_path({program!r}, run_name='__main__')"
        self.command[-2:] = ["-c", AS_ON_WINDOWS + start, "--stdio"]


grader.grade.launcher = Interpreters
grader.part_process.PROC = Path("/nonexistent")
sys.exit(main(sys.argv[1:]))
"""
)


def test_the_self_check_runs_as_on_windows(tmp_path):
    command = [sys.executable, "-c", f"AS_ON_WINDOWS = {AS_ON_WINDOWS!r}\n" + GRADE_AS_ON_WINDOWS, "-v"]
    lora = subprocess.run(
        [*command, str(make_submission(tmp_path / "reference", [])), "--part", "lora"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert lora.returncode == 0 and "30 / 30" in lora.stdout and "CPU time n/a (Linux only)" in lora.stdout, lora.stdout + lora.stderr
    assert "separate users: unavailable: the grader is not root" in lora.stderr  # the Sandbox line: staff's, on stderr
    # No process group to kill, and no resource limits in the part's process: the grading process stops a loop and a print flood.
    broken = make_submission(tmp_path / "broken", BROKEN["infinite_loop_in_forward"].edits + BROKEN["print_flood"].edits)
    stopped = subprocess.run(
        [*command, str(broken), "--part", "half_precision", "--part", "lora", "--timeout", "10"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    half, lora = [line for line in stopped.stdout.splitlines() if line.startswith(("Half precision", "LoRA"))]
    assert stopped.returncode == 0 and "0 / 20" in half and "0 / 30" in lora, stopped.stdout + stopped.stderr
    assert "s of time (CPU time is counted on Linux only), over the part's limit of 10 s" in half
    assert "printed more than 4 MB" in lora


def processes_alive_at_once(monkeypatch, package: Path, **options) -> tuple[list, list[int]]:
    """Grade `package` counting its part's processes: (the parts' results, how many were alive as each started)."""
    alive, counts = set(), []
    start, end = part_process.PartProcess.start, part_process.PartProcess.end

    def counted_start(process):
        alive.add(process)
        counts.append(len(alive))
        return start(process)

    def counted_end(process):
        alive.discard(process)
        end(process)

    monkeypatch.setattr(part_process.PartProcess, "start", counted_start)
    monkeypatch.setattr(part_process.PartProcess, "end", counted_end)
    return grade(package, suite=DEFAULT_CHECKPOINT, **options).parts, counts


def test_a_part_runs_one_process_at_a_time(tmp_path, monkeypatch):
    """Gradescope's default container has 768 MB for everything: a part takes the memory of its largest process, never of two."""
    (part,), counts = processes_alive_at_once(monkeypatch, make_submission(tmp_path, []), parts=("lora",))
    assert part.score == 30 and len(counts) == 4 and max(counts) == 1  # load, answer, and a training run's training and evaluation


def test_grading_for_credit_runs_one_process_at_a_time_in_all(tmp_path, monkeypatch):
    """Processes alive at once could talk through the kernel while one holds the weights: for credit, parts take turns."""
    parts, counts = processes_alive_at_once(
        monkeypatch, make_submission(tmp_path, []), parts=("half_precision", "low_precision"), for_credit=True
    )
    assert [part.score for part in parts] == [20, 20] and len(counts) == 4 and max(counts) == 1
    with pytest.raises(GraderError, match="grading for credit runs one part at a time"):
        grade(tmp_path / "homework", suite=DEFAULT_CHECKPOINT, for_credit=True, jobs=2)


def test_a_part_whose_python_cannot_import_its_packages_says_so_in_one_line(tmp_path, monkeypatch):
    """As when the parts' interpreter does not see the packages the grader's does (no site-packages: -S): safetensors is the first it imports."""

    class WithoutSitePackages(launch.Interpreters):
        def __init__(self, root):
            super().__init__(root)
            self.command.insert(1, "-S")

    monkeypatch.setattr(grader.grade, "launcher", WithoutSitePackages)
    (part,) = grade(make_submission(tmp_path, []), suite=DEFAULT_CHECKPOINT, parts=("half_precision",)).parts
    assert part.score == 0 and part.reason == "a part's process could not start: ModuleNotFoundError: No module named 'safetensors'"


def test_a_part_that_sleeps_is_stopped_by_the_wall_clock_and_told_where(tmp_path, monkeypatch):
    """Sleeping uses no CPU time: the wall-clock backstop (WALL_FACTOR times the CPU limit) stops it."""
    monkeypatch.setattr(grader.grade, "WALL_FACTOR", 0.25)
    sleeps = replace(
        "half_precision.py", HALF_NET, HALF_NET + "\n    def forward(self, x):\n        import time\n\n        time.sleep(1000)\n"
    )
    (part,) = grade(make_submission(tmp_path, [sleeps]), suite=DEFAULT_CHECKPOINT, timeout=20, parts=("half_precision",)).parts
    assert part.score == 0 and part.cpu_seconds < 5 and 5 <= part.seconds < 10
    assert "blocked or sleeping, still running after 5 s of wall-clock time" in part.reason
    assert "in forward (homework/half_precision.py, line 41)" in part.reason, part.reason


def test_a_busy_machine_costs_no_points(tmp_path, monkeypatch):
    """
    The time limit counts CPU time: with CPU burners on every core (two per core, each in a session of its
    own, as separate programs are), the part's wall-clock time grows far past its CPU time, and past what a
    wall-clock limit of the same size would allow.
    """
    monkeypatch.setattr(grader.grade, "WALL_FACTOR", 10)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True) for _ in range(2 * os.cpu_count())]
    try:
        (part,) = grade(make_submission(tmp_path, []), suite=DEFAULT_CHECKPOINT, timeout=10, parts=("half_precision",)).parts
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert part.score == 20, part.reason
    assert part.seconds > 1.5 * part.cpu_seconds, (part.seconds, part.cpu_seconds)
