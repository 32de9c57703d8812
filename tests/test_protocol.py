"""What the grading process accepts as an answer (grader/protocol.py): only the one it asked for, every field valid."""

import pytest
import torch

from grader.protocol import CONTRACTS, Ask, BadAnswer, PartStopped, Request, Stop, check_answer, encode, one_line, take_message


def answer_to(request: Request, fields: dict, tensors: dict | None = None, nonce: str | None = None):
    message, rest = take_message(encode({"nonce": request.nonce if nonce is None else nonce, **fields}, tensors))
    assert rest == b""
    return check_answer(request, *message)


def test_every_request_is_declared_with_what_its_answer_carries():
    assert set(CONTRACTS) == set(Ask)
    with pytest.raises(AssertionError):
        Request(Ask.FORWARD, {"profile": False})  # no x: a request is built as its contract says, or not at all


def test_an_answer_must_carry_the_nonce_of_the_request_it_answers():
    request = Request(Ask.FORWARD, {"profile": False}, {"x": torch.zeros(2, 3)})
    answer = answer_to(request, {"products": {"float32": 6}}, {"y": torch.ones(2, 3)})
    assert answer.fields == {"products": {"float32": 6}} and torch.equal(answer.tensors["y"], torch.ones(2, 3))
    with pytest.raises(BadAnswer, match="other than the answer to forward"):
        answer_to(request, {"products": {}}, {"y": torch.ones(2, 3)}, nonce="0" * 16)  # written ahead, before the request existed
    assert Request(Ask.FORWARD, {"profile": False}, {"x": torch.zeros(1)}).nonce != request.nonce


@pytest.mark.parametrize("products", [None, {"float32": True}, {"float32": -1}, {"float32": 10**400}, {"float32": 1.5}, [1]])
def test_a_field_of_the_wrong_type_or_range_is_refused(products):
    request = Request(Ask.FORWARD, {"profile": True}, {"x": torch.zeros(1)})
    with pytest.raises(BadAnswer, match="no valid 'products'"):
        answer_to(request, {"products": products}, {"y": torch.ones(1)})


def test_an_answer_holds_just_the_tensors_its_contract_names():
    request = Request(Ask.FORWARD, {"profile": False}, {"x": torch.zeros(1)})
    for tensors in ({}, {"y": torch.ones(1), "extra": torch.ones(1)}):
        with pytest.raises(BadAnswer, match="does not hold just y"):
            answer_to(request, {"products": {}}, tensors)


def test_a_load_answer_carries_the_models_tensors_views_with_their_whole_storage():
    whole = torch.arange(10.0)
    answer = answer_to(
        Request(Ask.LOAD, {"path": "p", "seed": 0, "send": True}), {"names": ["w", "v"], "trainable": []}, {"w": whole, "v": whole[2:4]}
    )
    assert answer.tensors["v"].untyped_storage().nbytes() == 40 and answer.tensors["v"].tolist() == [2.0, 3.0]
    with pytest.raises(BadAnswer, match="no valid 'names'"):
        answer_to(Request(Ask.LOAD, {"path": "p", "seed": 0, "send": False}), {"names": "w", "trainable": []})


def test_only_plain_cpu_tensors_are_taken():
    request = Request(Ask.TRAINED)
    for odd in (torch.zeros(3, 3).to_sparse(), torch.zeros(3, device="meta")):
        with pytest.raises(BadAnswer, match="not a plain CPU tensor"):
            answer_to(request, {}, {"w": odd})


def test_an_error_answer_stops_the_part_with_the_submissions_reason_on_one_line():
    with pytest.raises(PartStopped) as stopped:
        answer_to(Request(Ask.TRAINED), {"error": "not\nimplemented\x1b[31m" + "x" * 1000})
    assert (
        stopped.value.stop == Stop.RAISED and stopped.value.reason.startswith("not implemented [31m") and len(stopped.value.reason) == 300
    )


def test_reasons_are_one_printable_line_of_limited_length():
    assert one_line("a\n\tb\x00c") == "a b c"
    assert one_line("é✓ ok") == "é✓ ok"
    assert len(one_line("x" * 500, 100)) == 100


def test_messages_are_taken_only_when_complete_and_well_formed():
    message = b'{"nonce": "a", "size": 3}\nabc'
    assert take_message(message + message[:5]) == (({"nonce": "a", "size": 3}, b"abc"), message[:5])
    assert take_message(message[:-1]) == (None, message[:-1])
    with pytest.raises(ValueError, match="a message of 200 MB, over the limit of 160 MB"):
        take_message(b'{"size": 209715200}\n')
    for bad in (b'{"size": -1}\n', b"[1, 2]\n", b"not json\n", b'{"size": NaN}\n', b'{"size": true}\n', b"x" * (64 * 1024 + 1)):
        with pytest.raises(ValueError):
            take_message(bad)
