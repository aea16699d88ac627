import pytest

from tests.unit.fake_cluster import running_stack


@pytest.fixture
async def stack():
    """The in-process cluster (tests/unit/fake_cluster.py) with nothing launched;
    test files that need a model launched first define their own `stack`."""
    async with running_stack() as s:
        yield s
