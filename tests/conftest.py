import pytest
import torch

from homework import bignet
from homework.compare import random_inputs


@pytest.fixture(scope="session")
def checkpoint_path():
    """The default checkpoint, created on first use like the tools do."""
    return bignet.default_checkpoint()


@pytest.fixture(scope="session")
def inputs():
    return random_inputs(1024, seed=0)


@pytest.fixture(scope="session")
def reference_output(checkpoint_path, inputs):
    with torch.no_grad():
        return bignet.load(checkpoint_path)(inputs)
