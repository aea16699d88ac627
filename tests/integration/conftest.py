import pytest
import requests

from tests.servers import start_local

GEMMA_UID = "gemma"


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("daemons"))


@pytest.fixture(scope="session")
def local(log_dir):
    """One real xinference-local with the embedded Gemma launched as `gemma`."""
    daemon = start_local(log_dir)
    try:
        r = requests.post(
            daemon.endpoint + "/v1/models",
            json={"model_name": "gemma-3", "model_uid": GEMMA_UID, "n_ctx": 2048},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def api(local):
    return local.endpoint
