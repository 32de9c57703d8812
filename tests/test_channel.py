"""grader/channel.py: messages through real pipes, read and written by the channel's threads."""

import os
import threading
import time

import pytest
import torch

from grader import channel as channel_module
from grader.channel import Channel
from grader.protocol import encode
from grader.wire import dump


@pytest.fixture
def pipes():
    """(the channel, the part's end of its requests, the part's end of its answers)."""
    requests_r, requests_w = os.pipe()
    answers_r, answers_w = os.pipe()
    channel = Channel(requests_w, answers_r)
    yield channel, requests_r, answers_w
    channel.close()
    for fd in (requests_r, answers_w):
        try:
            os.close(fd)
        except OSError:  # a test closed it already
            pass


def read_exactly(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        data += os.read(fd, n - len(data))
    return data


def test_a_request_goes_out_and_an_answer_comes_back_in_pieces(pipes):
    channel, requests, answers = pipes
    request = b"".join(encode({"ask": "forward", "nonce": "n"}, dump({"x": torch.ones(3)})))
    channel.send(request[:10], request[10:])
    assert read_exactly(requests, len(request)) == request
    answer = b"".join(encode({"nonce": "n", "products": {}}))
    os.write(answers, answer[:5])
    assert channel.take(0.05) is None  # not all there yet
    os.write(answers, answer[5:])
    assert channel.take(1.0) == ({"nonce": "n", "products": {}, "size": 0}, b"")


def test_a_send_never_blocks_though_the_part_reads_nothing(pipes):
    channel, _, _ = pipes
    finished = threading.Event()
    threading.Thread(target=lambda: (channel.send(b"x" * 2**24), finished.set()), daemon=True).start()
    assert finished.wait(5)  # 16 MB: far more than a pipe holds, queued for the writer's thread


def test_an_ended_process_is_an_end_of_file_after_its_last_message(pipes):
    channel, _, answers = pipes
    os.write(answers, b"".join(encode({"nonce": "n"})))
    os.close(answers)
    assert channel.take(1.0) == ({"nonce": "n", "size": 0}, b"")
    with pytest.raises(EOFError):
        channel.take(1.0)


def test_what_is_not_a_message_is_refused(pipes):
    channel, _, answers = pipes
    os.write(answers, b"not json\n")
    with pytest.raises(ValueError, match="not JSON"):
        channel.take(1.0)


def test_the_reader_waits_while_more_than_any_message_is_unread(monkeypatch):
    monkeypatch.setattr(channel_module, "UNREAD_LIMIT", 1000)
    requests_r, requests_w = os.pipe()
    answers_r, answers_w = os.pipe()
    channel = Channel(requests_w, answers_r)
    os.write(answers_w, b"x" * 2000)  # no header line: nothing the channel could take
    deadline = time.monotonic() + 10
    while len(channel.received) < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.write(answers_w, b"y" * 100)
    time.sleep(0.3)
    assert bytes(channel.received) == b"x" * 2000  # the y's wait in the pipe
    channel.close()
    for fd in (requests_r, answers_w):
        os.close(fd)


def test_a_model_passed_on_goes_out_from_its_file(pipes, tmp_path):
    """A payload of 3 MB, in a file: the header says its size, and its bytes follow, read from the file as they are written."""
    channel, requests, _ = pipes
    kept = tmp_path / "model.safetensors"
    kept.write_bytes(dump({"w": torch.arange(3 * 2**18, dtype=torch.float32)}))
    header, payload = encode({"ask": "replace", "nonce": "n"}, kept)
    assert payload == kept and header.endswith(f'"size": {kept.stat().st_size}}}\n'.encode())
    channel.send(header, payload)
    assert read_exactly(requests, len(header) + kept.stat().st_size) == header + kept.read_bytes()
