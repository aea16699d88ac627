import os
import tempfile

# xoscar reads XOSCAR_DIR when it is imported: keep its sockets out of ~/.xoscar.
# The daemons the tests start inherit both variables.
os.environ.setdefault("XOSCAR_DIR", tempfile.mkdtemp(prefix="xo-tests-"))
os.environ.setdefault("XINFERENCE_HOME", tempfile.mkdtemp(prefix="xinference-home-"))

import pytest  # noqa: E402
import requests  # noqa: E402

from tests.servers import start_local  # noqa: E402

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
        code = daemon.stop()
    assert code == 0, f"xinference-local did not exit cleanly:\n{daemon.log()[-3000:]}"


@pytest.fixture
def api(local):
    return local.endpoint
