"""
The tensors that cross the boundary between the grading process and a part's process, both ways, in
the safetensors format (the ecosystem's format for untrusted weights): an 8-byte length, a JSON
header giving each tensor's name, dtype, shape and place, then the tensors' raw little-endian bytes.
Nothing else crosses: no pickle, no compression, no strides, no storage offsets, no storage shared
between tensors. So a tensor carries its elements and nothing more, and what it costs is what it is:
its element count times its element size.

A part's process writes the format with the safetensors package (dump) and reads it as the grading
process does (load). The grading process reads what a part's process sent with Tensors.parse,
which checks the header alone, before any byte is decoded, and refuses (ValueError) a header whose
places do not tile the payload exactly, an unknown dtype, more than MAX_DIMS dimensions or more than
MAX_TENSORS tensors. It then decodes only what it scores (Tensors.tensor) and passes the rest on as
bytes (Tensors.encode).

How much a shape can carry beside the bytes: with at most MAX_DIMS dimensions whose product (a
0 counted as a 1) is at most MAX_PAYLOAD, a shape is one of fewer than 2**39 (counted by
tests/test_wire.py), so a model's MAX_TENSORS shapes carry at most 39 * 512 bits, 2.5 KB, whatever
the weights.

This file runs in the part's process too: it imports only the standard library, torch and safetensors.
"""

import json
import math
from typing import NamedTuple

import safetensors.torch
import torch

MAX_PAYLOAD = 160 * 2**20  # a loaded model's tensors: float32 BigNet (72 MB) fits, to be counted and refused
MAX_HEADER = 256 * 2**10  # the JSON header: MAX_TENSORS names of MAX_NAME characters, with their dtypes and shapes
MAX_TENSORS = 512  # in any answer: BigNet has 46, the reference's QLoRA 82, the honest corpus 118 at most
MAX_NAME = 300  # characters: a module path such as model.10.model.4.lora_b.weight is 30
MAX_DIMS = 4
# safetensors' names for the dtypes torch has.
DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "U16": torch.uint16, "I32": torch.int32,
    "U32": torch.uint32, "I64": torch.int64, "U64": torch.uint64, "F16": torch.float16, "BF16": torch.bfloat16,
    "F32": torch.float32, "F64": torch.float64, "C64": torch.complex64, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}  # fmt: skip
NAMES = {dtype: name for name, dtype in DTYPES.items()}
FLOATS = frozenset({"F16", "BF16", "F32", "F64"})  # what outputs and features may be


def torch_name(dtype: str) -> str:
    """torch's name for one of safetensors' dtypes, as a student knows it: "float16" for "F16"."""
    return str(DTYPES[dtype]).removeprefix("torch.")


class Spec(NamedTuple):
    """One tensor in a payload: its dtype (safetensors' name), its shape, and where its bytes are in the data."""

    dtype: str
    shape: tuple
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class Tensors:
    """Named tensors as a checked safetensors header and the bytes it describes: a tensor is decoded only when asked for."""

    def __init__(self, specs: dict[str, Spec], data: bytes | memoryview):
        self.specs, self.data = specs, data

    @classmethod
    def parse(cls, payload: bytes) -> "Tensors":
        """The tensors of a payload (empty: none), checked from its header alone; ValueError says what is wrong with it."""
        if not payload:
            return cls({}, b"")
        size = int.from_bytes(payload[:8], "little") if len(payload) >= 8 else 0
        if not 0 < size <= len(payload) - 8:
            raise ValueError("a payload that is not safetensors (no header of a valid length)")
        if size > MAX_HEADER:
            raise ValueError(f"a safetensors header of {size / 2**10:.0f} KB, over the limit of {MAX_HEADER / 2**10:.0f} KB")
        try:
            header = json.loads(bytes(payload[8 : 8 + size]), parse_constant=refuse, object_pairs_hook=unique)
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError among them; brackets nested too deep
            raise ValueError("a safetensors header that is not JSON") from None
        if not isinstance(header, dict):
            raise ValueError("a safetensors header that is not a table of tensors")
        if len(header) > MAX_TENSORS:
            raise ValueError(f"{len(header)} tensors, more than any BigNet model has ({MAX_TENSORS})")
        specs = {name: spec(name, entry) for name, entry in header.items()}
        data = memoryview(payload)[8 + size :]
        end = 0
        for place in sorted(specs.values(), key=lambda s: (s.begin, s.end)):
            if place.begin != end:
                raise ValueError(
                    f"tensors whose places do not tile the payload ({'a gap' if place.begin > end else 'an overlap'} at byte {end})"
                )
            end = place.end
        if end != len(data):
            raise ValueError(f"tensors whose places do not tile the payload ({len(data) - end} bytes after the last)")
        return cls(specs, data)

    @property
    def nbytes(self) -> int:
        """What the tensors hold: each one's element count times its element size."""
        return sum(spec.nbytes for spec in self.specs.values())

    def dtypes(self) -> dict[str, str]:
        return {name: spec.dtype for name, spec in self.specs.items()}

    def raw(self, name: str) -> memoryview:
        spec = self.specs[name]
        return memoryview(self.data)[spec.begin : spec.end]

    def tensor(self, name: str) -> torch.Tensor:
        """A tensor of its own, decoded from the bytes."""
        spec = self.specs[name]
        if not spec.nbytes:
            return torch.empty(spec.shape, dtype=DTYPES[spec.dtype])
        return torch.frombuffer(bytearray(self.raw(name)), dtype=DTYPES[spec.dtype]).view(spec.shape)

    def encode(self) -> bytes:
        """The same tensors as safetensors written anew from the checked header: names sorted, nothing else in it."""
        return b"".join(self.pieces())

    def save(self, path) -> None:
        """encode(), into a file."""
        with open(path, "wb") as file:
            for piece in self.pieces():
                file.write(piece)

    def pieces(self):
        header, offset = {}, 0
        for name in sorted(self.specs):
            spec = self.specs[name]
            header[name] = {"dtype": spec.dtype, "shape": list(spec.shape), "data_offsets": [offset, offset + spec.nbytes]}
            offset += spec.nbytes
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # as safetensors pads it
        yield len(text).to_bytes(8, "little") + text
        for name in sorted(self.specs):
            yield self.raw(name)


def spec(name, entry) -> Spec:
    """One header entry, checked: a name, a known dtype, at most MAX_DIMS dimensions, and bytes for exactly its elements."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise ValueError(f"a tensor name that is not 1 to {MAX_NAME} characters")
    shown = repr(name[:60])
    if name == "__metadata__":
        raise ValueError("metadata: nothing but tensors may cross")
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise ValueError(f"a header entry for {shown} that is not a dtype, a shape and a place")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPES:
        raise ValueError(f"{shown} of an unknown dtype")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(type(n) is int and n >= 0 for n in shape)):
        raise ValueError(f"{shown} of a shape that is not at most {MAX_DIMS} sizes")
    if math.prod(max(n, 1) for n in shape) > MAX_PAYLOAD:
        raise ValueError(f"{shown} of a shape larger than any payload")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)):
        raise ValueError(f"{shown} without a place")
    begin, end = offsets
    if not 0 <= begin <= end or end - begin != math.prod(shape) * DTYPES[dtype].itemsize:
        raise ValueError(f"{shown} whose place does not hold its elements")
    return Spec(dtype, tuple(shape), begin, end)


def refuse(constant: str):
    """NaN and Infinity are not JSON, though Python's json module reads them."""
    raise ValueError(constant)


def unique(pairs: list) -> dict:
    """A JSON object whose keys are all different: a name given twice is refused, not resolved."""
    table = dict(pairs)
    if len(table) != len(pairs):
        raise ValueError("a name given twice")
    return table


def dump(tensors: dict) -> bytes:
    """Tensors as a payload (nothing: b""), written by the safetensors package from a plain copy of each."""
    if not tensors:
        return b""
    plain, storages = {}, set()
    for name, tensor in tensors.items():
        dtype_name(name, tensor)
        tensor = tensor.detach().to("cpu")
        storage = tensor.untyped_storage()
        whole = tensor.is_contiguous() and tensor.storage_offset() == 0 and storage.nbytes() == tensor.numel() * tensor.element_size()
        shared = tensor.numel() and storage.data_ptr() in storages
        if not whole or shared:  # safetensors writes neither views nor storage shared by two names
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        storages.add(tensor.untyped_storage().data_ptr())
        plain[name] = tensor
    return safetensors.torch.save(plain)


def dtype_name(name: str, tensor: torch.Tensor) -> str:
    """safetensors' name for the tensor's dtype; TypeError for one the format does not have."""
    if tensor.dtype not in NAMES:
        raise TypeError(f"{name} is a {tensor.dtype} tensor: the grader takes {', '.join(str(d).removeprefix('torch.') for d in NAMES)}")
    return NAMES[tensor.dtype]


def load(payload: bytes) -> dict:
    """
    A payload as {name: tensor}, each decoded from the payload in turn: one copy of a model's bytes
    beside the payload (the safetensors package's own reader makes two).
    """
    tensors = Tensors.parse(payload)
    return {name: tensors.tensor(name) for name in tensors.specs}
