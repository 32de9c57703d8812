"""grader/wire.py: what crosses the boundary is names, dtypes, shapes and bytes, checked from the header before any byte is read."""

import functools
import json
import math

import pytest
import safetensors.torch
import torch

from grader.wire import DTYPES, MAX_DIMS, MAX_PAYLOAD, MAX_TENSORS, Tensors, dump, load


def payload(header: dict, data: bytes = b"") -> bytes:
    """A safetensors payload written by hand, as a part's process could."""
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def test_tensors_cross_as_their_elements_in_every_dtype_torch_has():
    tensors = {name: torch.arange(6).view(2, 3).to(dtype) for name, dtype in DTYPES.items() if name != "BOOL"}
    tensors["BOOL"], tensors["empty"] = torch.tensor([True, False]), torch.empty(0, 1024)
    received = Tensors.parse(dump(tensors))
    assert received.dtypes() == {**{name: name for name in DTYPES}, "empty": "F32"}
    for name, tensor in tensors.items():
        assert torch.equal(
            received.tensor(name).view(torch.uint8),
            tensor.contiguous().view(torch.uint8).view(received.tensor(name).view(torch.uint8).shape),
        )
    assert received.nbytes == sum(t.numel() * t.element_size() for t in tensors.values())


def test_a_view_crosses_as_its_own_elements_and_a_shared_storage_once_per_name():
    layer = torch.zeros(4096, 1024)
    received = Tensors.parse(dump({"row": layer[:1], "w": layer[:2], "tied": layer[:2], "t": torch.zeros(3, 2).T}))
    assert (
        received.specs["row"].nbytes == 4096 and received.nbytes == 4096 + 2 * 8192 + 24
    )  # a view of a float32 layer costs its row, not the layer
    assert received.tensor("t").shape == (2, 3)


def test_what_the_grading_process_passes_on_is_safetensors_written_anew():
    tensors = {"b": torch.arange(3, dtype=torch.uint8), "a": torch.randn(2, 2), "c": torch.ones(1, dtype=torch.float16)}
    received = Tensors.parse(safetensors.torch.save(tensors, metadata=None))
    again = load(received.encode())  # what a part's process reads
    assert again.keys() == tensors.keys() and all(torch.equal(again[name], tensors[name]) for name in tensors)
    assert Tensors.parse(received.encode()).encode() == received.encode()


@pytest.mark.parametrize(
    "header, data, words",
    [
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 12, "4 bytes after the last"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "a gap at byte 0"),
        (
            {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
            b"\0" * 12,
            "an overlap at byte 8",
        ),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "whose place does not hold its elements"),
        ({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 1]}}, b"\0", "of an unknown dtype"),
        ({"w": {"dtype": "U8", "shape": [1] * 5, "data_offsets": [0, 1]}}, b"\0", f"not at most {MAX_DIMS} sizes"),
        ({"w": {"dtype": "U8", "shape": [0, 2**40, 2**40], "data_offsets": [0, 0]}}, b"", "a shape larger than any payload"),
        ({"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}}, b"", "not at most"),
        ({"w": {"dtype": "U8", "shape": [1.0], "data_offsets": [0, 1]}}, b"\0", "not at most"),
        ({"__metadata__": {"weights": "..."}}, b"", "metadata"),
        ({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "strides": [1]}}, b"\0", "not a dtype, a shape and a place"),
        (
            {f"w{k}": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]} for k in range(MAX_TENSORS + 1)},
            b"",
            "more than any BigNet model has",
        ),
    ],
)
def test_a_header_is_refused_unless_it_describes_the_payload_exactly(header, data, words):
    with pytest.raises(ValueError, match=words):
        Tensors.parse(payload(header, data))


def test_what_is_not_a_header_is_refused():
    for bad in (
        b"\x01",
        (10**6).to_bytes(8, "little") + b"{}",
        (2).to_bytes(8, "little") + b"[]",
        (4).to_bytes(8, "little") + b"\xff\xfe{}",
    ):
        with pytest.raises(ValueError):
            Tensors.parse(bad)
    twice = b'{"w": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}, "w": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}}'
    nested = b"[" * 200_000
    for header in (twice, nested):
        with pytest.raises(ValueError, match="not JSON"):
            Tensors.parse(len(header).to_bytes(8, "little") + header)


def test_a_tensor_of_a_dtype_the_format_lacks_is_refused_where_it_is_made():
    with pytest.raises(TypeError, match="w is a torch.complex128 tensor"):
        dump({"w": torch.zeros(2, dtype=torch.complex128)})


@functools.cache
def shapes(dims: int, most: int) -> int:
    """How many shapes of `dims` sizes (each >= 0) have a product of at most `most`, a 0 counted as a 1."""
    if dims == 0:
        return 1
    total, size = shapes(dims - 1, most), 1  # a size of 0 or 1: both count as 1
    while size <= most:
        quotient = most // size
        last = most // quotient
        total += (last - size + 1) * shapes(dims - 1, quotient)
        size = last + 1
    return total


def test_a_shape_carries_at_most_39_bits_so_a_model_at_most_2_5_kb_beside_its_bytes():
    count = sum(shapes(dims, MAX_PAYLOAD) for dims in range(MAX_DIMS + 1))
    assert math.log2(count) < 39  # as wire.py says
    assert 39 * MAX_TENSORS / 8 < 2.5 * 1000
