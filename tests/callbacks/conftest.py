import pytest
import torch

from cb_helpers import grok_run


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.set_flush_denormal(True)


@pytest.fixture(scope="session")
def comprehension_run(tmp_path_factory):
    """Config A's model at frac 0.9, 800 steps, every 40 (memorizes ~200, val acc >= 0.99 ~600):
    one real run shared by the science and progress-measure tests (do not modify it; copy it)."""
    return grok_run(tmp_path_factory.mktemp("comprehension"), steps=800, frac=0.9, every=40)
