"""
What the grading process (trusted) and a part's process (untrusted: it runs the submission) say to
each other. The grading process asks, one request at a time; the part's process only answers.
Every request, and what its answer must carry, is declared once here (CONTRACTS). Whatever a part's
process sends is data: a JSON header, and tensors read back with torch.load(weights_only=True). An
answer must name the request it answers by that request's nonce, a random token the part's process
sees only once the request has arrived, so no answer can be written ahead; anything that is not the
answer asked for, or a field of the wrong type or range, stops the part (BadAnswer).

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
MAX_PAYLOAD = 160 * 2**20  # a loaded model's tensors: float32 BigNet (72 MB) fits, to be counted and refused
# On this signal the part's process writes its threads' stacks to its output (faulthandler): before it is
# stopped, the grading process learns where the submission's code was. POSIX only (None elsewhere).
STACK_SIGNAL = getattr(signal, "SIGUSR1", None)
MAX_COUNT = 2**62  # any count a part's process reports (multiply-adds) is below this


class Ask(enum.Enum):
    START = "start"
    LOAD = "load"
    REPLACE = "replace"
    FORWARD = "forward"
    LAYERS = "layers"
    TRAIN = "train"
    STEP = "step"
    TRAINED = "trained"


def names(value) -> bool:
    return isinstance(value, list) and len(value) <= 100_000 and all(isinstance(n, str) and len(n) <= 1000 for n in value)


def counts(value) -> bool:
    return (
        isinstance(value, dict)
        and len(value) <= 100
        and all(isinstance(k, str) and type(n) is int and 0 <= n < MAX_COUNT for k, n in value.items())
    )


def texts(value) -> bool:
    return isinstance(value, dict) and len(value) <= 100 and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


@dataclass(frozen=True)
class Contract:
    """What a request carries beside its nonce, and what its answer must carry. Tensors: their names, or None for any."""

    doing: str  # what the part's process does
    fields: tuple = ()
    tensors: tuple | None = ()
    answer_fields: dict = field(default_factory=dict)  # name -> a check of its value
    answer_tensors: tuple | None = ()


CONTRACTS = {
    Ask.START: Contract(
        "confine itself (confinement.py) and warm up; answer what protections are in force",
        ("part", "submission", "readable", "path", "memory_cap", "output_cap", "protections"),
        answer_fields={"protections": texts},
    ),
    Ask.LOAD: Contract(
        "torch.manual_seed(seed); model = homework.<part>.load(path); answer the names of its parameters and buffers, "
        "which of them are trainable, and (if `send`) the tensors themselves",
        ("path", "seed", "send"),
        answer_fields={"names": names, "trainable": names},
        answer_tensors=None,
    ),
    Ask.REPLACE: Contract(
        "put these tensors in place of the model's parameters and buffers of those names (trainable as named)", ("trainable",), None
    ),
    Ask.FORWARD: Contract(
        "model(x) without gradients; answer y, and (if `profile`) the multiply-adds of its matrix products by dtype",
        ("profile",),
        ("x",),
        {"products": counts},
        ("y",),
    ),
    Ask.LAYERS: Contract(
        "model(x) without gradients, keeping what goes in and out of the modules named", ("names",), ("x",), answer_tensors=None
    ),
    Ask.TRAIN: Contract(
        "AdamW(lr) on the trainable parameters, then model(x) keeping the graph", ("lr",), ("x",), answer_tensors=("features",)
    ),
    Ask.STEP: Contract(
        "backward from the features with this gradient, one optimizer step, then model(x) again",
        (),
        ("gradient",),
        answer_tensors=("features",),
    ),
    Ask.TRAINED: Contract("answer the trainable parameters, by name", answer_tensors=None),
}


class Stop(enum.Enum):
    """Why a part's process stopped before its part was graded in full."""

    RAISED = "raised"  # the submission raised
    TIMEOUT = "timeout"
    CRASHED = "crashed"  # killed, ran out of memory, exited, died
    REFUSED = "refused"  # it broke a rule: answered what was not asked
    GRADER_FAILED = "grader failed"  # the grader's own failure, on this part only


class PartStopped(Exception):
    """The part can go no further: it scores 0, for `reason`."""

    def __init__(self, stop: Stop, reason: str):
        super().__init__(reason)
        self.stop, self.reason = stop, reason


class BadAnswer(PartStopped):
    def __init__(self, reason: str):
        super().__init__(Stop.REFUSED, reason)


@dataclass
class Request:
    ask: Ask
    fields: dict = field(default_factory=dict)  # plain JSON values
    tensors: dict = field(default_factory=dict)
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))

    def __post_init__(self):
        contract = CONTRACTS[self.ask]
        assert set(self.fields) == set(contract.fields), f"{self.ask.value} takes {contract.fields}"
        assert contract.tensors is None or set(self.tensors) == set(contract.tensors), f"{self.ask.value} takes tensors {contract.tensors}"

    def encode(self) -> bytes:
        return encode({"ask": self.ask.value, "nonce": self.nonce, **self.fields}, self.tensors)


@dataclass
class Answer:
    fields: dict
    tensors: dict


def encode(header: dict, tensors: dict | None = None) -> bytes:
    buffer = io.BytesIO()
    if tensors:
        torch.save(tensors, buffer)
    with buffer.getbuffer() as payload:  # one copy of a model's tensors into the message, not two
        return b"".join([json.dumps({**header, "size": len(payload)}).encode(), b"\n", payload])


def decode_tensors(payload: bytes) -> dict:
    """A payload back as {name: tensor}; anything else raises ValueError."""
    if not payload:
        return {}
    try:
        tensors = torch.load(io.BytesIO(payload), weights_only=True)
    except Exception as e:
        raise ValueError(f"tensors that cannot be read back ({type(e).__name__})") from None
    if not isinstance(tensors, dict) or not all(
        isinstance(k, str) and type(v) in (torch.Tensor, torch.nn.Parameter) for k, v in tensors.items()
    ):
        raise ValueError("a payload that is not a dict of named tensors")
    plain = [name for name, t in tensors.items() if t.layout != torch.strided or t.device.type != "cpu" or t.is_quantized]
    if plain:  # sparse, quantized or meta tensors: their storage is not what they hold
        raise ValueError(f"a tensor that is not a plain CPU tensor ({plain[0][:60]})")
    return {name: tensor.detach() for name, tensor in tensors.items()}


def take_message(buffer: bytearray) -> tuple[tuple[dict, bytes] | None, bytearray]:
    """The first complete message in `buffer` (None if it is not all there yet), and what follows it."""
    end = buffer.find(b"\n", 0, MAX_HEADER)
    if end < 0:
        if len(buffer) >= MAX_HEADER:
            raise ValueError("a header that is too long")
        return None, buffer
    try:
        header = json.loads(buffer[:end], parse_constant=refuse_constant)
    except ValueError:
        raise ValueError("a header that is not JSON") from None
    if not isinstance(header, dict) or type(header.get("size")) is not int or header["size"] < 0:
        raise ValueError("a header without a valid size")
    if header["size"] > MAX_PAYLOAD:
        raise ValueError(f"a message of {header['size'] / 2**20:.0f} MB, over the limit of {MAX_PAYLOAD / 2**20:.0f} MB")
    stop = end + 1 + header["size"]
    if len(buffer) < stop:
        return None, buffer
    with memoryview(buffer) as view:  # one copy of the payload, not two (a model's tensors: up to MAX_PAYLOAD)
        return (header, bytes(view[end + 1 : stop])), bytearray(view[stop:])


def refuse_constant(name: str):
    """NaN and Infinity are not JSON, though Python's json module reads them."""
    raise ValueError(name)


def binary_mode(fd: int) -> None:
    """Windows: no newline translation on a pipe's descriptor (messages are bytes). Elsewhere there is none to turn off."""
    if os.name == "nt":
        import msvcrt

        msvcrt.setmode(fd, os.O_BINARY)


def read_message(fd: int) -> tuple[dict, bytes]:
    """One whole message from `fd`, blocking: how the part's process reads a request (only one is ever in flight)."""
    buffer = bytearray()  # grown in place: a model's tensors come in many reads
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
    The answer to `request`, checked against its contract: the right nonce, every field valid, the
    tensors it must have. Raises PartStopped for an error the submission raised, BadAnswer for anything else.
    """
    contract = CONTRACTS[request.ask]
    if header.get("nonce") != request.nonce:
        raise BadAnswer(f"it sent something other than the answer to {request.ask.value} (was the grader's pipe written to?)")
    if header.get("error") is not None:
        raise PartStopped(Stop.RAISED, one_line(str(header["error"])))
    fields = {}
    for name, valid in contract.answer_fields.items():
        if not valid(header.get(name)):
            raise BadAnswer(f"its answer to {request.ask.value} has no valid {name!r}")
        fields[name] = header[name]
    try:
        tensors = decode_tensors(payload)
    except ValueError as e:
        raise BadAnswer(f"its answer to {request.ask.value} has {e}") from None
    if contract.answer_tensors is not None and tensors.keys() != set(contract.answer_tensors):
        raise BadAnswer(f"its answer to {request.ask.value} does not hold just {', '.join(contract.answer_tensors) or 'no tensors'}")
    return Answer(fields, tensors)


def one_line(text: str, limit: int = 300) -> str:
    """`text` as one line of printable characters, at most `limit` of them: how a reason is shown anywhere."""
    printable = "".join(c if c.isprintable() else " " for c in " ".join(text.split()))
    return printable if len(printable) <= limit else printable[: limit - 3] + "..."
