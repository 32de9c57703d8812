import subprocess
import sys

import pytest
import torch

from homework import bignet, checkpoint
from homework.bignet import BigNet
from homework.checkpoint import CheckpointError
from homework.checkpoint.__main__ import main as checkpoint_main

# Pinned: the checkpoint must be the same tensors on every machine. If a PyTorch upgrade changes
# its random number generator, this fails, and every figure measured on the checkpoint moves.


DEFAULT_FINGERPRINT = "cc2647cffeb8b532"


def test_default_checkpoint_is_deterministic(checkpoint_path):
    assert checkpoint.fingerprint(checkpoint.read(checkpoint_path)) == DEFAULT_FINGERPRINT
    assert checkpoint.fingerprint(checkpoint.make_state_dict(BigNet(), seed=0)) == DEFAULT_FINGERPRINT


def test_seeds_and_families_differ_and_have_their_shape():
    def linear_weights(state):
        return torch.cat([v.flatten() for k, v in state.items() if v.dim() == 2])

    default, gaussian, heavy = (linear_weights(checkpoint.make_state_dict(BigNet(), 0, f)) for f in checkpoint.FAMILIES)
    assert checkpoint.fingerprint(checkpoint.make_state_dict(BigNet(), 1)) != DEFAULT_FINGERPRINT
    std = 1 / (3 * 1024) ** 0.5  # PyTorch's default Linear init
    for w in (default, gaussian, heavy):
        assert w.std().item() == pytest.approx(std, rel=0.02)

    def kurtosis(w):
        return ((w - w.mean()) ** 4).mean() / w.var() ** 2

    assert kurtosis(default) < 2 < kurtosis(gaussian) < 3.5 < kurtosis(heavy)  # uniform 1.8, normal 3, t(5) 9
    assert default.abs().max() <= 1 / 32
    assert heavy.abs().max() > 10 * std


def test_save_refuses_to_overwrite(tmp_path):
    path = tmp_path / "net.pth"
    checkpoint.save(checkpoint.make_state_dict(BigNet(), seed=1), path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="already exists"):
        checkpoint.save(checkpoint.make_state_dict(BigNet()), path)
    assert path.read_bytes() == before
    checkpoint.save(checkpoint.make_state_dict(BigNet()), path, force=True)
    assert checkpoint.fingerprint(checkpoint.read(path)) == DEFAULT_FINGERPRINT


def test_interrupted_save_leaves_nothing_behind(tmp_path, monkeypatch):
    path = tmp_path / "net.pth"
    path.write_bytes(b"old")

    def crash(state, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save({"a": torch.zeros(1)}, path, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["net.pth"] and path.read_bytes() == b"old"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no checkpoint at"),
        (b"not a checkpoint", "truncated or not a PyTorch checkpoint; recreate it with"),
        ("truncated", "truncated or not a PyTorch checkpoint; recreate it with"),
        ([1, 2, 3], "does not hold a state dict of tensors"),
    ],
)
def test_bad_checkpoints_get_a_one_line_error(tmp_path, checkpoint_path, content, message):
    path = tmp_path / "bad.pth"
    if content == "truncated":
        path.write_bytes(checkpoint_path.read_bytes()[: 10**6])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=message) as error:
        bignet.load(path)
    assert "\n" not in str(error.value)


def test_fingerprint_makes_the_default_checkpoint_on_first_use(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(checkpoint, "DEFAULT_PATH", tmp_path / "checkpoints" / "bignet.pth")
    checkpoint_main("fingerprint")
    assert capsys.readouterr().out.strip() == DEFAULT_FINGERPRINT and checkpoint.DEFAULT_PATH.exists()


def test_checkpoint_cli_from_another_folder(tmp_path):
    run = [sys.executable, "-m", "homework.checkpoint"]
    env_cwd = dict(cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(checkpoint.DEFAULT_PATH.parent.parent), "PATH": ""})
    made = subprocess.run(run + ["create", "g.pth", "--seed", "3", "--family", "gaussian"], **env_cwd)
    assert made.returncode == 0 and (tmp_path / "g.pth").exists(), made.stderr
    again = subprocess.run(run + ["create", "g.pth"], **env_cwd)
    assert again.returncode == 1 and again.stderr == "error: g.pth already exists; pass --force to replace it\n"
    printed = subprocess.run(run + ["fingerprint", "g.pth"], **env_cwd)
    assert printed.stdout.strip() == checkpoint.fingerprint(checkpoint.make_state_dict(BigNet(), 3, "gaussian"))
