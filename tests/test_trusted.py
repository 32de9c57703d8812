"""grader/trusted.py: the grader's own homework package, never the submission's, reached by named functions."""

import sys

import torch

from grader import trusted
from homework import checkpoint


def test_the_grader_imports_its_own_package_under_a_private_name():
    trusted.weight_families()
    assert trusted.PACKAGE in sys.modules and sys.modules[trusted.PACKAGE].__file__ == str(trusted.HOMEWORK_DIR / "__init__.py")
    assert all(not name.startswith("homework") for name in sys.modules if name.startswith(trusted.PACKAGE))


def test_what_the_grader_takes_from_the_homework(tmp_path):
    assert trusted.weight_families() == checkpoint.FAMILIES and trusted.default_checkpoint_path() == checkpoint.DEFAULT_PATH
    path = trusted.make_checkpoint(tmp_path / "c.pth", 1, "heavy_tailed")
    assert checkpoint.fingerprint(checkpoint.read(path)) == checkpoint.fingerprint(
        checkpoint.make_state_dict(trusted.bignet(), 1, "heavy_tailed")
    )
    with torch.no_grad():
        assert trusted.load_reference("half_precision", path)(trusted.random_inputs(4, 0)).shape == (4, 1024)
