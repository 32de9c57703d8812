"""
What the grading process (trusted) and a part's process (untrusted: it runs the submission) say to
each other, and how each answer is checked. The grading process asks, one request at a time; the
part's process only answers. Whatever it sends is data: JSON headers, and tensors read back with
torch.load(weights_only=True). An answer must name the request it answers by that request's nonce,
a random token the part's process sees only once the request has arrived, so no answer can be
written ahead; anything that is not the answer asked for stops the part (BadAnswer).

A message is one JSON header line, then `size` bytes of payload (a dict of tensors saved with
torch.save, or nothing). This file runs in the part's process too: it imports only the standard
library and torch.
"""

import enum
import io
import json
import os
import secrets
import signal
from dataclasses import dataclass, field

import torch

MAX_HEADER = 64 * 1024
MAX_PAYLOAD = 64 * 2**20  # an output of 4096 x 1024 float32 is 16 MB
# On this signal the part's process writes its threads' stacks to its output (faulthandler): before it is
# stopped, the grading process learns where the submission's code was. POSIX only (None elsewhere).
STACK_SIGNAL = getattr(signal, "SIGUSR1", None)


class Ask(enum.Enum):
    """The requests; the comment says what the part's process does, and what it answers with."""

    START = "start"  # confine itself (confinement.py) and warm up: the protections in force
    LOAD = "load"  # torch.manual_seed(seed); model = homework.<part>.load(path): the names, shapes and dtypes of its tensors
    FORWARD = "forward"  # model(x) without gradients: y, and (if `profile`) the allocator's peak and the multiply-adds by dtype
    LAYERS = "layers"  # model(x) without gradients, keeping what goes in and out of the modules named: "NAME in", "NAME out"
    PROFILED_LOAD = "profiled_load"  # the same load again, under the allocator's profiler: the bytes it still holds
    TRAIN = "train"  # AdamW(lr) on the trainable parameters, then model(x) keeping the graph: features
    STEP = "step"  # backward from the features with this gradient, one optimizer step, then model(x) again: features
    TRAINED = "trained"  # the trainable parameters, by name
    ASSIGN = "assign"  # copy these tensors into the parameters of those names


# The fields each answer carries, beside its tensors (by name).
ANSWER_FIELDS = {
    Ask.START: {"protections": dict},
    Ask.LOAD: {"tensors": list},
    Ask.FORWARD: {"peak": int, "products": dict},
    Ask.LAYERS: {},
    Ask.PROFILED_LOAD: {"allocated": int},
    Ask.TRAIN: {},
    Ask.STEP: {},
    Ask.TRAINED: {},
    Ask.ASSIGN: {},
}
ANSWER_TENSORS = {Ask.FORWARD: ("y",), Ask.TRAIN: ("features",), Ask.STEP: ("features",)}  # TRAINED, LAYERS: any names


class Status(enum.Enum):
    """How a part's run ended."""

    OK = "ok"
    ERROR = "error"  # the submission raised
    TIMEOUT = "timeout"
    CRASHED = "crashed"  # killed, ran out of memory, exited, died
    REFUSED = "refused"  # it broke a rule: answered what was not asked, kept the checkpoint, read files in forward


class PartStopped(Exception):
    """The part's process can go no further: it scores 0, for `reason`."""

    def __init__(self, status: Status, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class BadAnswer(PartStopped):
    def __init__(self, reason: str):
        super().__init__(Status.REFUSED, reason)


@dataclass
class Request:
    ask: Ask
    fields: dict = field(default_factory=dict)  # plain JSON values
    tensors: dict = field(default_factory=dict)
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))

    def encode(self) -> bytes:
        return encode({"ask": self.ask.value, "nonce": self.nonce, **self.fields}, self.tensors)


@dataclass
class Answer:
    fields: dict
    tensors: dict


@dataclass(frozen=True)
class TensorInfo:
    """One of the loaded model's parameters or buffers, as the LOAD answer describes it."""

    name: str
    shape: tuple
    dtype: torch.dtype
    trainable: bool  # a parameter with requires_grad

    @property
    def bytes(self) -> int:
        return torch.Size(self.shape).numel() * self.dtype.itemsize

    def encode(self) -> list:
        return [self.name, list(self.shape), str(self.dtype).removeprefix("torch."), self.trainable]

    @classmethod
    def decode(cls, entry) -> "TensorInfo":
        """ValueError unless `entry` is what encode() makes."""
        if not (isinstance(entry, list) and len(entry) == 4 and isinstance(entry[0], str) and isinstance(entry[1], list) and isinstance(entry[3], bool)):
            raise ValueError(f"a tensor described as {str(entry)[:60]}")
        name, shape, dtype, trainable = entry
        if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**40 for n in shape):
            raise ValueError(f"a tensor of shape {str(shape)[:60]}")
        if not isinstance(dtype, str) or not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"a tensor of dtype {str(dtype)[:30]}")
        return cls(name, tuple(shape), getattr(torch, dtype), trainable)


def encode(header: dict, tensors: dict | None = None) -> bytes:
    payload = b""
    if tensors:
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        payload = buffer.getvalue()
    return json.dumps({**header, "size": len(payload)}).encode() + b"\n" + payload


def decode_tensors(payload: bytes) -> dict:
    """A payload back as {name: tensor}; anything else raises ValueError."""
    if not payload:
        return {}
    try:
        tensors = torch.load(io.BytesIO(payload), weights_only=True)
    except Exception as e:
        raise ValueError(f"tensors that cannot be read back ({type(e).__name__})") from None
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
        raise ValueError("a payload that is not a dict of named tensors")
    return tensors


def take_message(buffer: bytes) -> tuple[tuple[dict, bytes] | None, bytes]:
    """The first complete message in `buffer` (None if it is not all there yet), and what follows it."""
    end = buffer.find(b"\n", 0, MAX_HEADER)
    if end < 0:
        if len(buffer) >= MAX_HEADER:
            raise ValueError("a header that is too long")
        return None, buffer
    try:
        header = json.loads(buffer[:end])
    except ValueError:
        raise ValueError("a header that is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("size"), int) or not 0 <= header["size"] <= MAX_PAYLOAD:
        raise ValueError("a header without a valid size")
    stop = end + 1 + header["size"]
    if len(buffer) < stop:
        return None, buffer
    return (header, buffer[end + 1 : stop]), buffer[stop:]


def read_message(fd: int) -> tuple[dict, bytes]:
    """One whole message from `fd`, blocking: how the part's process reads a request (only one is ever in flight)."""
    buffer = b""
    while True:
        message, _ = take_message(buffer)
        if message:
            return message
        data = os.read(fd, 2**20)
        if not data:
            raise EOFError("the grader closed the pipe")
        buffer += data


def check_answer(request: Request, header: dict, payload: bytes) -> Answer:
    """
    The answer to `request`, checked: the right nonce, the fields of the right types, the tensors
    it must have. Raises PartStopped for an error the submission raised, BadAnswer for anything else.
    """
    if header.get("nonce") != request.nonce:
        raise BadAnswer(f"it sent something other than the answer to {request.ask.value} (was the grader's pipe written to?)")
    if header.get("error") is not None:
        raise PartStopped(Status.ERROR, str(header["error"])[:400])
    fields = {}
    for name, kind in ANSWER_FIELDS[request.ask].items():
        value = header.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise BadAnswer(f"its answer to {request.ask.value} has no valid {name!r}")
        fields[name] = value
    try:
        tensors = decode_tensors(payload)
        if request.ask == Ask.LOAD:
            fields["tensors"] = [TensorInfo.decode(entry) for entry in fields["tensors"]]
    except ValueError as e:
        raise BadAnswer(f"its answer to {request.ask.value} has {e}") from None
    missing = set(ANSWER_TENSORS.get(request.ask, ())) - tensors.keys()
    if missing:
        raise BadAnswer(f"its answer to {request.ask.value} lacks {', '.join(sorted(missing))}")
    return Answer(fields, tensors)
