"""What the grading process accepts as an answer (grader/protocol.py): only the one it asked for."""

import pytest
import torch

from grader.protocol import Ask, BadAnswer, PartStopped, Request, Status, TensorInfo, check_answer, encode, take_message


def answer_to(request: Request, fields: dict, tensors: dict | None = None, nonce: str | None = None):
    message, rest = take_message(encode({"nonce": request.nonce if nonce is None else nonce, **fields}, tensors))
    assert rest == b""
    return check_answer(request, *message)


def test_an_answer_must_carry_the_nonce_of_the_request_it_answers():
    request = Request(Ask.FORWARD, {"profile": False}, {"x": torch.zeros(2, 3)})
    answer = answer_to(request, {"peak": 5, "products": {"float32": 6}}, {"y": torch.ones(2, 3)})
    assert answer.fields == {"peak": 5, "products": {"float32": 6}} and torch.equal(answer.tensors["y"], torch.ones(2, 3))
    with pytest.raises(BadAnswer, match="other than the answer to forward"):
        answer_to(request, {"peak": 5}, {"y": torch.ones(2, 3)}, nonce="0" * 16)  # written ahead, before the request existed
    assert Request(Ask.FORWARD).nonce != request.nonce


def test_an_answer_needs_its_fields_and_tensors_of_the_right_types():
    request = Request(Ask.FORWARD)
    for fields, tensors, says in (({}, {"y": torch.ones(1)}, "no valid 'peak'"), ({"peak": True}, {"y": torch.ones(1)}, "no valid 'peak'"), ({"peak": 1, "products": {}}, {}, "lacks y")):
        with pytest.raises(BadAnswer, match=says):
            answer_to(request, fields, tensors)


def test_an_error_answer_stops_the_part_with_the_submissions_reason():
    with pytest.raises(PartStopped) as stopped:
        answer_to(Request(Ask.LOAD), {"error": "not implemented"})
    assert stopped.value.status == Status.ERROR and stopped.value.reason == "not implemented"


def test_a_load_answer_describes_tensors_that_the_grader_counts_itself():
    info = TensorInfo("layer.weight", (1024, 1024), torch.float16, False)
    answer = answer_to(Request(Ask.LOAD), {"tensors": [info.encode()]})
    assert answer.fields["tensors"] == [info] and info.bytes == 2 * 2**20
    for entry in (["w", [2, -1], "float32", True], ["w", [2], "float99", True], ["w", [2], "float32"], "w"):
        with pytest.raises(BadAnswer, match="its answer to load has a tensor"):
            answer_to(Request(Ask.LOAD), {"tensors": [entry]})


def test_messages_are_taken_only_when_complete_and_well_formed():
    message = b'{"nonce": "a", "size": 3}\nabc'
    assert take_message(message + message[:5]) == (({"nonce": "a", "size": 3}, b"abc"), message[:5])
    assert take_message(message[:-1]) == (None, message[:-1])
    for bad in (b'{"size": -1}\n', b"[1, 2]\n", b"not json\n", b"x" * (64 * 1024 + 1)):
        with pytest.raises(ValueError):
            take_message(bad)
