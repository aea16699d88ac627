"""The file a supervisor keeps its launched models in: one per REST endpoint, replaced
atomically, readable only by its owner (launch envs may carry hub tokens); a damaged
or foreign file means starting without the models, never failing to start."""

import json
import os
import stat

from xinference.core.launched_store import LaunchedStore


def test_save_load_replace_and_clear(tmp_path):
    store = LaunchedStore.for_endpoint(tmp_path / "state", "127.0.0.1", 9997)
    assert store.load() == {}
    models = {"m": {"request": {"model_name": "gemma-3", "env": {"HF_TOKEN": "hf_x"}}, "replica": 2,
                    "workers": ["127.0.0.1:1"]}}
    store.save(models)
    assert store.load() == models
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    store.save({})
    assert store.load() == {}
    assert os.listdir(tmp_path / "state") == [store.path.name], "no temporary file left behind"
    other = LaunchedStore.for_endpoint(tmp_path / "state", "127.0.0.1", 9998)
    assert other.path != store.path and other.load() == {}


def test_a_damaged_or_foreign_file_starts_empty(tmp_path, caplog):
    store = LaunchedStore(tmp_path / "launched.json")
    store.path.write_text("{not json")
    assert store.load() == {}
    store.path.write_text(json.dumps({"format": 99, "models": {"m": {}}}))
    assert store.load() == {}
    assert "starting without them" in caplog.text


def test_nowhere_keeps_nothing(tmp_path):
    store = LaunchedStore(None)
    store.save({"m": {}})
    assert store.load() == {}
