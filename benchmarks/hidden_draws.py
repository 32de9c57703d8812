"""
How far an output case's figures move from one draw of hidden cases to the next, for the reference
and for each honest style of tests/corpus/honest: on each weight family, the public checkpoint
(grader.suite.PUBLIC) and DRAWS hidden ones, each figure as a share of its case's limit
(grader.reference.output_limits: the limits grow with the reference scheme's own error there).
The grader warns about a public figure within parts.DRAW_SPREAD of its limit; that figure comes from
here (a benchmark, not a test: about 5 minutes on 2 cores for 10 draws):

    python -m benchmarks.hidden_draws --draws 10
"""

import contextlib
import importlib
import io
import tempfile
from functools import partial
from pathlib import Path

import fire
import torch

from grader.parts import PARTS
from grader.reference import checkpoint_path, one_thread, output_limits, reference_outputs
from grader.suite import PUBLIC, Checkpoint, Inputs, Suite, derived_seed
from grader.trusted import import_private, load_reference, random_inputs
from tests.corpus import STYLES, honest_package, style_parts

OUTPUT_PARTS = {part.name: part for part in PARTS if part.name in ("half_precision", "low_precision", "lower_precision")}


def share_of_limit(load, part, checkpoint: Checkpoint, inputs: Inputs) -> float:
    """The larger of (max diff / its limit, mean diff / its limit) of the model `load` makes, on one case."""
    suite = Suite((checkpoint,), (inputs,))
    max_limit, mean_limit = output_limits(part, suite)[checkpoint, inputs]
    with one_thread(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # a style may print as it goes
        y = load(str(checkpoint_path(checkpoint)))(random_inputs(inputs.n, inputs.seed))
    diff = (y.float() - reference_outputs(suite)[checkpoint, inputs]).abs()
    return max(diff.max().item() / max_limit, diff.mean().item() / mean_limit if mean_limit else 0.0)


def main(draws: int = 10) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        models = {("reference", name): partial(load_reference, name) for name in OUTPUT_PARTS}
        for style in STYLES:
            package = import_private(f"_style_{style}", honest_package(style, Path(tmp) / style))
            for name in OUTPUT_PARTS.keys() & set(style_parts(style)):
                models[style, name] = importlib.import_module(f"{package.__name__}.{name}").load
        print(f"{'model':<44} {'family':<13} {'public':>7} {'draws: min':>11} {'max':>6} {'spread':>7}")
        spreads = []
        for (who, name), load in sorted(models.items()):
            for public in PUBLIC.checkpoints:
                hidden = [
                    Checkpoint(derived_seed(k, f"draw {public.family}"), public.family, secret=True) for k in range(draws)
                ]  # drawn as hidden ones are
                seen = share_of_limit(load, OUTPUT_PARTS[name], public, Inputs())
                shares = [share_of_limit(load, OUTPUT_PARTS[name], c, Inputs(derived_seed(k, "inputs"), 256)) for k, c in enumerate(hidden)]
                spread = max(abs(s / seen - 1) for s in shares)
                spreads.append(spread)
                print(
                    f"{who + ' ' + name:<44} {public.family:<13} {seen:7.3f} {min(shares):11.3f} {max(shares):6.3f} {spread:7.1%}",
                    flush=True,
                )
        print(f"largest spread: {max(spreads):.1%} of the public figure")


if __name__ == "__main__":
    fire.Fire(main)
