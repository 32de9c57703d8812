"""ZeRO stage 1 on two processes: each holds half of AdamW's state, and the training is unchanged."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from homework import bignet
from homework.optim.sharded import max_abs_difference, train_sharded, train_single_process

REPO = Path(__file__).resolve().parent.parent
RUN = dict(steps=3, batch_size=16, lr=1e-3, seed=0)


@pytest.fixture(scope="module")
def sharded(checkpoint_path):
    return train_sharded(processes=2, **RUN)


@pytest.fixture(scope="module")
def single(checkpoint_path):
    return train_single_process(**RUN)


def test_each_rank_holds_about_half_of_the_state(sharded, single):
    (whole,) = single.measured_state_bytes
    assert len(sharded.measured_state_bytes) == 2
    for share in sharded.measured_state_bytes:
        assert 0.4 * whole <= share <= 0.6 * whole
    assert sum(sharded.measured_state_bytes) == pytest.approx(whole, rel=0.01)


def test_measured_state_is_the_theoretical_one(sharded, single):
    # Theoretical: two float32 moments per element plus a 4-byte step counter per parameter, for
    # the parameters each process updates; for one process, 2 x 4 x 18,903,040 bytes + 46 x 4.
    assert single.theoretical_state_bytes == [2 * 4 * 18_903_040 + 46 * 4]
    for run in (sharded, single):
        for measured, theoretical in zip(run.measured_state_bytes, run.theoretical_state_bytes, strict=True):
            assert measured == pytest.approx(theoretical, rel=0.01)


def test_trained_weights_match_single_process_training(sharded, single):
    # Two half-batches summed and averaged round differently from one whole batch, by ~1e-7
    # relative. AdamW's update lr * m / (sqrt(v) + eps) is insensitive to that except where the
    # gradient is near eps = 1e-8, where a tiny change in the gradient moves the update by a
    # fraction of lr: a few such elements differ by up to ~1e-5 (2.7e-5 after 5 steps of 64),
    # the rest by under 1e-6. Training that went wrong (unaveraged gradients, a lost update)
    # moves weights by about lr = 1e-3 per step.
    assert max_abs_difference(sharded.state_dict, single.state_dict) < 1e-4
    differences = torch.cat([(sharded.state_dict[k] - single.state_dict[k]).abs().flatten() for k in single.state_dict])
    assert (differences > 1e-6).float().mean() < 1e-4
    assert max_abs_difference(sharded.state_dict, bignet.load().state_dict()) > 1e-3  # it did train


def test_batch_must_split_evenly_across_processes():
    result = subprocess.run(
        [sys.executable, "-m", "homework.optim.sharded", "--processes", "2", "--batch-size", "15"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --batch-size must be divisible by the number of processes, 2, not 15"
