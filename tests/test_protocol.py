"""What the grading process accepts as an answer (grader/protocol.py): only the one it asked for, every field valid, every tensor within its bounds."""

import pytest
import torch

from grader.protocol import (
    CONTRACTS,
    Ask,
    BadAnswer,
    Bound,
    Expect,
    PartStopped,
    Request,
    Stop,
    check_answer,
    encode,
    one_line,
    printable,
    take_message,
)
from grader.wire import FLOATS, dump

FORWARD = Expect({"y": Bound(elements=6)})


def answer_to(request: Request, fields: dict, tensors: dict | bytes | None = None, nonce: str | None = None):
    payload = tensors if isinstance(tensors, bytes) else dump(tensors or {})
    message, rest = take_message(b"".join(encode({"nonce": request.nonce if nonce is None else nonce, **fields}, payload)))
    assert rest == b""
    return check_answer(request, *message)


def forward(profile: bool = False) -> Request:
    return Request(Ask.FORWARD, {"profile": profile}, {"x": torch.zeros(2, 3)}, FORWARD)


def test_every_request_is_declared_with_what_its_answer_carries():
    assert set(CONTRACTS) == set(Ask)
    with pytest.raises(AssertionError):
        Request(Ask.FORWARD, {"profile": False})  # no x: a request is built as its contract says, or not at all


def test_an_answer_must_carry_the_nonce_of_the_request_it_answers():
    request = forward()
    answer = answer_to(request, {"products": {"float32": 6}, "slowest": ""}, {"y": torch.ones(2, 3)})
    assert answer.fields == {"products": {"float32": 6}, "slowest": ""} and torch.equal(answer.tensors.tensor("y"), torch.ones(2, 3))
    with pytest.raises(BadAnswer, match="other than the answer to forward"):
        # written ahead, before the request existed
        answer_to(request, {"products": {}, "slowest": ""}, {"y": torch.ones(2, 3)}, nonce="0" * 16)
    assert forward().nonce != request.nonce


@pytest.mark.parametrize("products", [None, {"float32": True}, {"float32": -1}, {"float32": 10**400}, {"float32": 1.5}, [1]])
def test_a_field_of_the_wrong_type_or_range_is_refused(products):
    with pytest.raises(BadAnswer, match="no valid 'products'"):
        answer_to(forward(True), {"products": products}, {"y": torch.ones(1)})


def test_an_answer_holds_just_the_tensors_its_request_expects_each_within_its_bound():
    for tensors, words in (
        ({}, "does not hold y"),
        ({"y": torch.ones(1), "extra": torch.ones(1)}, "holds 'extra', which was not asked for"),
        ({"y": torch.ones(7)}, "'y', which has 7 elements, more than the 6 asked for"),
    ):
        with pytest.raises(BadAnswer, match=words):
            answer_to(forward(), {"products": {}, "slowest": ""}, tensors)
    layers = Request(
        Ask.LAYERS, {"names": ["a"]}, {"x": torch.zeros(2, 3)}, Expect({"a in": Bound(shape=(2, 3), dtypes=FLOATS)}, some=True)
    )
    assert not answer_to(layers, {}, {}).tensors.specs  # a module it could not watch: none of them
    with pytest.raises(BadAnswer, match="'a in', which has shape \\(65536, 3\\), not \\(2, 3\\)"):
        answer_to(layers, {}, {"a in": torch.zeros(1, 3).expand(65536, 3)})  # rows it was not asked for: refused from the header
    with pytest.raises(BadAnswer, match="'a in', which is I64, not BF16 or F16 or F32 or F64"):
        answer_to(layers, {}, {"a in": torch.zeros(2, 3, dtype=torch.int64)})


def test_a_load_answer_carries_a_models_tensors_of_any_names_each_its_own_elements_alone():
    whole = torch.arange(10.0)
    load = Request(Ask.LOAD, {"path": "p", "send": True}, expect=Expect(model=True))
    answer = answer_to(load, {"dtypes": {"w": "F32", "v": "F32"}, "trainable": []}, {"w": whole, "v": whole[2:4]})
    assert answer.tensors.specs["v"].nbytes == 8 and answer.tensors.tensor("v").tolist() == [2.0, 3.0]
    assert answer.tensors.nbytes == 48  # a view crosses as its own elements, and counts as them
    for dtypes in ("w", {"w": "F33"}, {"w": 1}):
        with pytest.raises(BadAnswer, match="no valid 'dtypes'"):
            answer_to(Request(Ask.LOAD, {"path": "p", "send": False}), {"dtypes": dtypes, "trainable": []})
    with pytest.raises(BadAnswer, match="no valid 'trainable'"):  # a name listed twice would count its parameters twice
        answer_to(load, {"dtypes": {"w": "F32", "v": "F32"}, "trainable": ["w", "w"]}, {"w": whole, "v": whole[2:4]})
    with pytest.raises(BadAnswer, match="holds .w., which was not asked for"):  # no tensors were asked for: none may come
        answer_to(Request(Ask.LOAD, {"path": "p", "send": False}), {"dtypes": {}, "trainable": []}, {"w": whole})


def test_a_payload_that_is_not_safetensors_is_refused_before_anything_is_read():
    import io

    pickled = io.BytesIO()
    torch.save({"y": torch.ones(2, 3)}, pickled)  # what the grader once read with torch.load
    with pytest.raises(BadAnswer, match="its answer to forward has a payload that is not safetensors"):
        answer_to(forward(), {"products": {}, "slowest": ""}, pickled.getvalue())


def test_an_error_answer_stops_the_part_with_the_submissions_reason_on_one_line():
    with pytest.raises(PartStopped) as stopped:
        answer_to(Request(Ask.LOAD, {"path": "checkpoint.pth", "send": False}), {"error": "not\nimplemented\x1b[31m" + "x" * 1000})
    assert (
        stopped.value.stop == Stop.RAISED and stopped.value.reason.startswith("not implemented [31m") and len(stopped.value.reason) == 300
    )


def test_reasons_are_one_printable_line_of_limited_length():
    assert one_line("a\n\tb\x00c") == "a b c"
    assert one_line("é✓ ok") == "é✓ ok"
    assert len(one_line("x" * 500, 100)) == 100


def test_what_a_part_printed_keeps_its_lines_and_shows_every_control_character_as_an_escape():
    drawn = "\x1b[2J\x1b[H\x1b[8mTotal 100 / 100\x1b[0m\r\nnext\tline\x07\x9b\u202e"
    assert printable(drawn) == "\\x1b[2J\\x1b[H\\x1b[8mTotal 100 / 100\\x1b[0m\nnext    line\\x07\\x9b\\u202e"
    assert printable("é✓ ok\n") == "é✓ ok\n"


def test_messages_are_taken_only_when_complete_and_well_formed():
    message = b'{"nonce": "a", "size": 3}\nabc'
    assert take_message(message + message[:5]) == (({"nonce": "a", "size": 3}, b"abc"), message[:5])
    assert take_message(message[:-1]) == (None, message[:-1])
    with pytest.raises(ValueError, match="a message of 200 MB, over the limit of 160 MB"):
        take_message(b'{"size": 209715200}\n')
    nested = b"[" * 200_000 + b"\n"  # deeper than Python's stack: the part's doing, not the grader's failure
    twice = b'{"size": 0, "size": 1}\n'
    for bad in (b'{"size": -1}\n', b"[1, 2]\n", b"not json\n", b'{"size": NaN}\n', b'{"size": true}\n', b"x" * (2**20 + 1), nested, twice):
        with pytest.raises(ValueError):
            take_message(bad)
