"""Shared fixture: a run directory written from a MemoryTrace (see run_writer.py)."""
import pytest

from run_writer import write_run


@pytest.fixture
def make_run_dir(tmp_path):
    def _make(trace, name="run", meta=None):
        return write_run(tmp_path / name, trace, meta)
    return _make
