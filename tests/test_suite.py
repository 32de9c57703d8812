"""grader/suite.py: the public cases, and the hidden ones staff write from secret seeds."""

import json

import pytest

import grader.suite
from grader.parts import GraderError
from grader.suite import GUESSABLE, PUBLIC, Inputs, load_suite
from tests.helpers import SECRET


def test_the_hidden_config_must_make_sense(tmp_path, monkeypatch):
    config = tmp_path / "hidden.json"
    complete = {"checkpoints": [{"seed": SECRET[0]}], "inputs": [{"seed": SECRET[1], "n": 64}], "train_seeds": [SECRET[2]]}
    config.write_text(json.dumps({**complete, "checkpoints": [{"seed": SECRET[0], "family": "spiky"}]}))
    with pytest.raises(GraderError, match="unknown weight family 'spiky'"):
        load_suite(config)
    config.write_text(json.dumps({**complete, "seeds": [1]}))
    with pytest.raises(GraderError, match="unknown keys"):
        load_suite(config)
    for guessable in (2, 2**32 + 5, GUESSABLE - 1):  # torch keeps a seed's low 32 bits
        config.write_text(json.dumps({**complete, "train_seeds": [guessable]}))
        with pytest.raises(GraderError, match=f"seed {guessable} is small enough for a submission to guess"):
            load_suite(config)
    assert load_suite() == PUBLIC
    config.write_text(json.dumps(complete))
    monkeypatch.setenv("GRADER_HIDDEN", str(config))
    assert load_suite().inputs == (Inputs(SECRET[1], 64),)


def test_secret_seeds_are_never_ones_the_suite_refuses(monkeypatch):
    draws = iter([5, 2**40 + 7, 2**40 + GUESSABLE])  # guessable low bits twice, then not
    monkeypatch.setattr(grader.suite.secrets, "randbits", lambda bits: next(draws))
    assert grader.suite.secret_seed() == 2**40 + GUESSABLE
