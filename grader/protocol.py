"""
What the grading process (trusted) and a part's process (untrusted: it runs the submission) say to
each other. The grading process asks, one request at a time; the part's process only answers.
Every request, and what its answer carries, is declared once here (CONTRACTS). Whatever a part's
process sends is data: a JSON line of fields, and tensors in the safetensors format (wire.py),
whose names, dtypes and shapes the request bounds (Expect) and which are checked from their header
before any byte of them is read. An answer must name the request it answers by that request's
nonce, a random token the part's process sees only once the request has arrived, so no answer can
be written ahead; anything that is not the answer asked for, or a field or tensor out of its
bounds, stops the part (BadAnswer).

A message is one JSON line, then `size` bytes of payload (wire.py's format, or nothing). This file
runs in the part's process too: it imports only the standard library and wire.py.
"""

import enum
import json
import os
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path

if __package__:  # the grading process: grader.wire
    from . import wire
else:  # a part's process: the runtime files side by side (part_runtime.py)
    import wire

MAX_LINE = 2**20  # a message's JSON line: a LOAD answer names up to wire.MAX_TENSORS tensors twice
MAX_PAYLOAD = wire.MAX_PAYLOAD
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
    BACKWARD = "backward"


def names(value) -> bool:
    """Tensor names, each once: a name listed twice would count twice."""
    return (
        isinstance(value, list)
        and len(value) <= wire.MAX_TENSORS
        and all(isinstance(n, str) and len(n) <= wire.MAX_NAME for n in value)
        and len(set(value)) == len(value)
    )


def dtypes(value) -> bool:
    """{tensor name: its dtype, as safetensors names it}."""
    return isinstance(value, dict) and names(list(value)) and all(dtype in wire.DTYPES for dtype in value.values())


def counts(value) -> bool:
    return (
        isinstance(value, dict)
        and len(value) <= 100
        and all(isinstance(k, str) and type(n) is int and 0 <= n < MAX_COUNT for k, n in value.items())
    )


def text(value) -> bool:
    """A short line for the student (a place in their code): the grading process shows it escaped."""
    return isinstance(value, str) and len(value) <= 300


def texts(value) -> bool:
    return isinstance(value, dict) and len(value) <= 100 and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


@dataclass(frozen=True)
class Contract:
    """What a request carries beside its nonce, and the fields its answer must carry. Tensors: their names, or None for any."""

    doing: str  # what the part's process does, and which tensors it answers with (the request's Expect bounds them)
    fields: tuple = ()
    tensors: tuple | None = ()
    answer_fields: dict = field(default_factory=dict)  # name -> a check of its value


CONTRACTS = {
    Ask.START: Contract(
        "confine itself (confinement.py) and warm up; answer what protections are in force",
        ("part", "submission", "written", "readable", "path", "memory_cap", "output_cap", "protections"),
        answer_fields={"protections": texts},
    ),
    Ask.LOAD: Contract(
        "torch.manual_seed(0); model = homework.<part>.load(path); answer the dtypes of its parameters and buffers by name, "
        "which of them are trainable, and (if `send`) the tensors themselves",
        ("path", "send"),
        answer_fields={"dtypes": dtypes, "trainable": names},
    ),
    Ask.REPLACE: Contract(
        "put these tensors in place of the model's parameters and buffers of those names (trainable as named)", ("trainable",), None
    ),
    Ask.FORWARD: Contract(
        "model(x) without gradients; answer y, and (if `profile`) the multiply-adds of its matrix products by dtype,"
        " and the place in the student's code whose products cost the most",
        ("profile",),
        ("x",),
        {"products": counts, "slowest": text},
    ),
    Ask.LAYERS: Contract(
        "model(x) without gradients; answer what goes in and out of the modules named, where it is a float tensor of x's shape",
        ("names",),
        ("x",),
    ),
    Ask.TRAIN: Contract("model(x) keeping the graph; answer it as features", (), ("x",)),
    Ask.BACKWARD: Contract(
        "backward from the features with this gradient; answer the gradients the trainable parameters got, by name", (), ("gradient",)
    ),
}


@dataclass(frozen=True)
class Bound:
    """What one tensor of an answer may be: exactly `shape`, or at most `elements` elements; one of `dtypes` (None: any)."""

    shape: tuple | None = None
    elements: int | None = None
    dtypes: frozenset | None = None

    def problem(self, spec: "wire.Spec") -> str:
        if self.dtypes is not None and spec.dtype not in self.dtypes:
            return f"is {spec.dtype}, not {' or '.join(sorted(self.dtypes))}"
        if self.shape is not None and spec.shape != self.shape:
            return f"has shape {spec.shape}, not {self.shape}"
        if self.elements is not None and spec.numel > self.elements:
            return f"has {spec.numel} elements, more than the {self.elements} asked for"
        return ""


@dataclass(frozen=True)
class Expect:
    """
    The tensors an answer must hold: just those named, each within its Bound (with `some`, any of
    them); with `model`, any names, within the format's own limits: a model's, which the grading
    process holds to the model's other loads.
    """

    tensors: dict = field(default_factory=dict)  # name -> Bound
    some: bool = False
    model: bool = False

    def problem(self, tensors: "wire.Tensors") -> str:
        if self.model:
            return ""
        unasked = sorted(tensors.specs.keys() - self.tensors.keys())
        if unasked:
            return f"holds {unasked[0][:60]!r}, which was not asked for"
        if not self.some and tensors.specs.keys() != self.tensors.keys():
            return f"does not hold {', '.join(sorted(self.tensors.keys() - tensors.specs.keys()))}"
        for name, spec in tensors.specs.items():
            problem = self.tensors[name].problem(spec)
            if problem:
                return f"has {name[:60]!r}, which {problem}"
        return ""


class Stop(enum.Enum):
    """Why a part's process stopped before its part was graded in full."""

    RAISED = "raised"  # the submission raised
    TIMEOUT = "timeout"
    CRASHED = "crashed"  # killed by the grader (its memory or output), exited, died
    KILLED = "killed by the system"  # not by the grader: the kernel does this when the machine's memory runs out
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
    tensors: dict | bytes | Path = field(default_factory=dict)  # by name, or a payload in wire.py's format (a model passed on), or its file
    expect: Expect = field(default_factory=Expect)  # the tensors its answer must hold
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))

    def __post_init__(self):
        contract = CONTRACTS[self.ask]
        assert set(self.fields) == set(contract.fields), f"{self.ask.value} takes {contract.fields}"
        assert contract.tensors is None or set(self.tensors) == set(contract.tensors), f"{self.ask.value} takes tensors {contract.tensors}"

    def encode(self) -> tuple:
        payload = self.tensors if isinstance(self.tensors, (bytes, Path)) else wire.dump(self.tensors)
        return encode({"ask": self.ask.value, "nonce": self.nonce, **self.fields}, payload)


@dataclass
class Answer:
    fields: dict
    tensors: "wire.Tensors"


def encode(header: dict, payload: bytes | Path = b"") -> tuple:
    """
    A message, as the two pieces written one after the other (write_all): its header line, and its
    payload, tens of MB never copied into one; a payload in a file is read from it as it is written.
    """
    size = payload.stat().st_size if isinstance(payload, Path) else len(payload)
    return json.dumps({**header, "size": size}).encode() + b"\n", payload


def write_all(fd: int, *pieces: bytes | Path) -> None:
    """Each piece in turn, in as many writes as the pipe takes, each from a view of what is left: not a copy of tens of MB each time."""
    for piece in pieces:
        if isinstance(piece, Path):  # 1 MB at a time: a model passed on is never all in memory here
            with open(piece, "rb") as file:
                while chunk := file.read(2**20):
                    write_all(fd, chunk)
            continue
        view = memoryview(piece)
        while view:
            view = view[os.write(fd, view) :]


def take_message(buffer: bytearray) -> tuple[tuple[dict, bytes | memoryview] | None, bytearray]:
    """The first complete message in `buffer` (None if it is not all there yet), and what follows it."""
    end = buffer.find(b"\n", 0, MAX_LINE)
    if end < 0:
        if len(buffer) >= MAX_LINE:
            raise ValueError("a header that is too long")
        return None, buffer
    try:
        header = json.loads(buffer[:end], parse_constant=wire.refuse, object_pairs_hook=wire.unique)
    except (ValueError, RecursionError):  # RecursionError: brackets nested deeper than Python's stack
        raise ValueError("a header that is not JSON") from None
    if not isinstance(header, dict) or type(header.get("size")) is not int or header["size"] < 0:
        raise ValueError("a header without a valid size")
    if header["size"] > MAX_PAYLOAD:
        raise ValueError(f"a message of {header['size'] / 2**20:.0f} MB, over the limit of {MAX_PAYLOAD / 2**20:.0f} MB")
    stop = end + 1 + header["size"]
    if len(buffer) < stop:
        return None, buffer
    if len(buffer) == stop:  # the message is all there is (one request, one answer): the payload is the buffer's, uncopied
        return (header, memoryview(buffer)[end + 1 :]), bytearray()
    with memoryview(buffer) as view:
        return (header, bytes(view[end + 1 : stop])), bytearray(view[stop:])


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
    tensors it expects, from their header. Raises PartStopped for an error the submission raised, BadAnswer for anything else.
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
        tensors = wire.Tensors.parse(payload)
    except ValueError as e:
        raise BadAnswer(one_line(f"its answer to {request.ask.value} has {e}")) from None
    problem = request.expect.problem(tensors)
    if problem:
        raise BadAnswer(one_line(f"its answer to {request.ask.value} {problem}"))
    return Answer(fields, tensors)


def one_line(text: str, limit: int = 300) -> str:
    """`text` as one line of printable characters, at most `limit` of them: how a reason is shown anywhere."""
    printable = "".join(c if c.isprintable() else " " for c in " ".join(text.split()))
    return printable if len(printable) <= limit else printable[: limit - 3] + "..."


def printable(text: str) -> str:
    """
    What a part printed, as text that only shows: lines kept, every other control character (an
    escape sequence that clears a terminal or hides text, say) written out as an escape, \\x1b.
    """
    text = text.replace("\r\n", "\n")  # Windows' line ends
    return "".join(c if c.isprintable() or c == "\n" else " " * 4 if c == "\t" else c.encode("unicode_escape").decode() for c in text)
