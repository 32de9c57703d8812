"""homework/cli.py: every tool's mistakes, each one line that says what would be valid, and nothing written."""

import pytest

from tests.helpers import run_tool


@pytest.mark.parametrize(
    "args, error, code",
    [
        (
            ["homework.stats", "bignet", "fancy_net"],
            "error: unknown model 'fancy_net'; choose from: bignet, half_precision, lora, low_precision, qlora, lower_precision",
            2,
        ),
        (["homework.compare", "bignet", "lora", "--device", "tpu"], "error: device 'tpu' is not available here; choose from: cpu", 2),
        (["homework.compare", "bignet"], "error: give at least two models: the first is the reference, e.g. bignet half_precision", 2),
        (["homework.fit", "lora", "--checkpoint", "missing.pth"], "error: no checkpoint at ", 1),
        (["homework.fit", "lora", "--checkpoint", "5"], "error: no checkpoint at ", 1),  # fire reads 5 as a number
        # Every numeric option: its name, and what would be valid.
        (["homework.stats", "bignet", "--batch-size", "0"], "error: --batch-size must be a whole number >= 1, not 0", 2),
        (["homework.stats", "bignet", "--batch-size", "abc"], "error: --batch-size must be a whole number >= 1, not 'abc'", 2),
        (
            ["homework.compare", "bignet", "half_precision", "--n-inputs", "abc"],
            "error: --n-inputs must be a whole number >= 1, not 'abc'",
            2,
        ),
        (["homework.compare", "bignet", "half_precision", "--seed", "-1"], "error: --seed must be a whole number >= 0, not -1", 2),
        (["homework.fit", "lora", "--steps", "-3"], "error: --steps must be a whole number >= 1, not -3", 2),
        (["homework.fit", "lora", "--steps", "2.5"], "error: --steps must be a whole number >= 1, not 2.5", 2),
        (["homework.fit", "lora", "--lr", "abc"], "error: --lr must be a number > 0, not 'abc'", 2),
        (["homework.fit", "lora", "--lr", "-0.1"], "error: --lr must be a number > 0, not -0.1", 2),
        (["homework.fit", "lora", "--seed", "True"], "error: --seed must be a whole number >= 0, not True", 2),
        (["homework.checkpoint", "create", "x.pth", "--seed", "abc"], "error: --seed must be a whole number >= 0, not 'abc'", 2),
        (
            ["homework.checkpoint", "create", "x.pth", "--family", "odd"],
            "error: unknown weight family 'odd'; choose from: default, gaussian, heavy_tailed",
            1,
        ),
        (
            ["homework.fit", "lora", "--optimizer", "adagrad"],
            "error: unknown optimizer 'adagrad'; choose from: torch_adamw, adamw, adam, sgd, cautious_adamw, galore, fira, adamw8bit, lbfgs",
            2,
        ),
        (["homework.fit", "lora", "--ema", "1.5"], "error: --ema must be a number between 0 and 1, not 1.5", 2),
        (["homework.fit", "lora", "--micro-batches", "0"], "error: --micro-batches must be a whole number >= 1, not 0", 2),
        (
            ["homework.fit", "lora", "--step-in-backward", "--micro-batches", "2"],
            "error: stepping in backward updates after every backward pass: it cannot accumulate micro-batches",
            2,
        ),
        (["homework.train_stats", "lora", "--optimizer", "adagrad"], "error: unknown optimizer 'adagrad'; choose from: ", 2),
        (["homework.checkpoint", "make"], "error: unknown command 'make'; choose from: create, fingerprint", 2),
        (
            ["homework.fit", "lora", "--optimizer", "torch_adamw", "--step-in-backward"],
            "error: stepping in backward needs an optimizer that updates one parameter at a time, not AdamW",
            2,
        ),
    ],
)
def test_tools_report_mistakes_in_one_line(args, error, code, tmp_path):
    result = run_tool(*args, cwd=tmp_path)
    assert result.returncode == code and result.stdout == ""
    assert result.stderr.startswith(error) and result.stderr.count("\n") == 1, result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written
