"""Downloads into the cache from a fake Hugging Face hub and a fake ModelScope on
127.0.0.1, with the real hub clients: what is fetched, resume, one download for two
launches, progress, and errors that name the repo, the file and the hub."""

import json
import os
import threading
import time

import pytest

from tests.fake_hub import FakeHub
from xinference.errors import HubUnreachableError, InvalidRequestError
from xinference.model.hub import cache
from xinference.model.hub.fetch import fetch_weights
from xinference.model.hub.progress import DownloadProgress
from xinference.model.hub.request import HubFiles, WeightsRequest

REPO = "acme/tiny-GGUF"
GGUF = "tiny-q4_k_m.gguf"
SIZE = 3_000_000


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("XINFERENCE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "home"


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


@pytest.fixture
def hub(weights, monkeypatch):
    with FakeHub() as server:
        server.add_repo(REPO, {GGUF: weights, "README.md": b"# tiny\n"})
        folder = {"config.json": b'{"model_type": "llama"}', "tokenizer.json": b"{}",
                  "model.safetensors": weights, "pytorch_model.bin": weights,
                  "onnx/model.onnx": b"x", "original/consolidated.pth": b"x"}
        server.add_repo("acme/tiny-folder", folder)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def gguf_request(version="tiny--1B-ggufv2-q4_k_m", repo=REPO, files=(GGUF,), **kw):
    return WeightsRequest(model_version=version, model_name="tiny", model_type="LLM",
                          model_format="ggufv2", model_size_in_billions="1", quantization="q4_k_m",
                          kind="file", sources={"huggingface": HubFiles(repo_id=repo, files=list(files))},
                          **kw)


def test_a_gguf_is_downloaded_once_verified_and_marked_complete(home, hub, weights):
    progress = DownloadProgress()
    path = fetch_weights(gguf_request(), progress)
    entry = home / "cache" / "tiny--1B-ggufv2-q4_k_m"
    assert path == str(entry / GGUF) and open(path, "rb").read() == weights.read_bytes()
    assert hub.bytes_served(REPO, GGUF) == SIZE
    record = cache.read_complete(entry)
    assert record["files"] == {GGUF: SIZE} and record["hub"] == "huggingface" and len(record["revision"]) == 40
    assert progress.stage == "done" and progress.report()["total_bytes"] == SIZE
    # the next launch takes the cache without asking the hub anything
    before = len(hub.requests)
    assert fetch_weights(gguf_request()) == path
    assert len(hub.requests) == before
    assert [r["model_version"] for r in cache.cached_entries()] == ["tiny--1B-ggufv2-q4_k_m"]


def test_an_interrupted_download_resumes_from_the_bytes_on_disk(home, hub, weights):
    entry = home / "cache" / "tiny--1B-ggufv2-q4_k_m"
    entry.mkdir(parents=True)
    # what a killed process left: the first MB under the partial file's name
    (entry / (GGUF + ".incomplete")).write_bytes(weights.read_bytes()[:1_000_000])
    fetch_weights(gguf_request())
    assert (entry / GGUF).read_bytes() == weights.read_bytes()
    ranges = [r.range for r in hub.requests if r.method == "GET" and GGUF in r.path]
    assert ranges == ["bytes=1000000-"]
    assert hub.bytes_served(REPO, GGUF) == SIZE - 1_000_000


def test_a_dropped_connection_is_resumed_by_the_same_launch(home, hub, weights):
    hub.fail_after(REPO, GGUF, 1_500_000)
    fetch_weights(gguf_request())
    entry = home / "cache" / "tiny--1B-ggufv2-q4_k_m"
    assert (entry / GGUF).read_bytes() == weights.read_bytes()
    ranges = [r.range for r in hub.requests if r.method == "GET" and GGUF in r.path]
    assert ranges[0] is None and ranges[1].startswith("bytes=")
    assert hub.bytes_served(REPO, GGUF) <= SIZE + 1_500_000


def test_a_reset_connection_fails_clearly_and_nothing_is_marked(home, hub):
    hub.fail_after(REPO, GGUF, 1_500_000, reset=True)
    with pytest.raises(HubUnreachableError) as err:
        fetch_weights(gguf_request())
    assert REPO in err.value.message and GGUF in err.value.message and "HF_ENDPOINT" in err.value.message
    assert cache.read_complete(home / "cache" / "tiny--1B-ggufv2-q4_k_m") is None


def test_two_launches_of_one_version_download_once(home, hub):
    hub.throttle(3_000_000)
    progresses = [DownloadProgress(), DownloadProgress()]
    results, errors = [], []

    def launch(p):
        try:
            results.append(fetch_weights(gguf_request(), p))
        except Exception as e:  # collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=launch, args=(p,)) for p in progresses]
    for t in threads:
        t.start()
    # the one that waits shows the other's progress
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(p.stage == "waiting" for p in progresses):
        time.sleep(0.05)
    assert any(p.stage == "waiting" for p in progresses)
    for t in threads:
        t.join(60)
    assert errors == [] and len(set(results)) == 1 and len(results) == 2
    assert hub.bytes_served(REPO, GGUF) == SIZE


def test_progress_reports_bytes_speed_and_eta_while_downloading(home, hub):
    hub.throttle(1_000_000)
    progress = DownloadProgress()
    thread = threading.Thread(target=fetch_weights, args=(gguf_request(), progress))
    thread.start()
    seen = []
    while thread.is_alive():
        seen.append(progress.report())
        time.sleep(0.3)
    thread.join()
    moving = [r for r in seen if r["stage"] == "downloading" and 0 < r["downloaded_bytes"] < SIZE]
    assert moving, seen
    assert all(r["total_bytes"] == SIZE for r in moving)
    assert any(r["speed_bytes_per_s"] > 100_000 and r["eta_s"] for r in moving)


def test_a_model_folder_takes_safetensors_and_configs_only(home, hub, weights):
    req = WeightsRequest(model_version="tiny-folder", model_name="tiny-folder", model_type="embedding",
                         kind="folder", sources={"huggingface": HubFiles(repo_id="acme/tiny-folder")})
    path = fetch_weights(req)
    names = sorted(str(p.relative_to(path)) for p in (home / "cache" / "tiny-folder").rglob("*")
                   if p.is_file() and ".xinference" not in p.parts)
    assert names == ["config.json", "model.safetensors", "tokenizer.json"]
    assert hub.bytes_served("acme/tiny-folder", "pytorch_model.bin") == 0


def test_missing_repo_file_and_gated_repo_are_clear_400s(home, hub, weights):
    started = time.monotonic()
    with pytest.raises(InvalidRequestError) as err:
        fetch_weights(gguf_request(repo="acme/nope"))
    assert err.value.code == "repo_not_found" and "acme/nope" in err.value.message
    with pytest.raises(InvalidRequestError) as err:
        fetch_weights(gguf_request(version="tiny--1B-ggufv2-q8_0", files=["tiny-q8_0.gguf"]))
    assert err.value.code == "file_not_found"
    assert "tiny-q8_0.gguf" in err.value.message and GGUF in err.value.message  # what there is
    assert time.monotonic() - started < 5
    hub.add_repo("acme/gated", {GGUF: weights}, token="hf_secret")
    with pytest.raises(InvalidRequestError) as err:
        fetch_weights(gguf_request(version="gated", repo="acme/gated"))
    assert err.value.code == "gated_repo" and "HF_TOKEN" in err.value.message


def test_a_gated_repo_opens_with_hf_token(home, hub, weights, monkeypatch):
    hub.add_repo("acme/gated", {GGUF: weights}, token="hf_secret")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert open(fetch_weights(gguf_request(version="gated", repo="acme/gated")), "rb").read(4)


def test_an_unreachable_hub_fails_within_seconds(home, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(HubUnreachableError) as err:
        fetch_weights(gguf_request())
    assert time.monotonic() - started < 10
    message = err.value.message
    assert REPO in message and GGUF in message and "127.0.0.1:9" in message and "HF_ENDPOINT" in message


def test_offline_uses_the_cache_only(home, hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InvalidRequestError) as err:
        fetch_weights(gguf_request())
    assert err.value.code == "weights_not_cached" and "HF_HUB_OFFLINE" in err.value.message
    monkeypatch.delenv("HF_HUB_OFFLINE")
    path = fetch_weights(gguf_request())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    served = len(hub.requests)
    assert fetch_weights(gguf_request()) == path and len(hub.requests) == served


def test_a_corrupt_download_is_removed_not_marked(home, hub, weights, monkeypatch):
    from xinference.model.hub import huggingface

    real = huggingface.list_repo

    def lying(*args, **kwargs):  # the hub's hash for the file differs from its bytes
        sha, files = real(*args, **kwargs)
        return sha, {n: f._replace(sha256="0" * 64) if n == GGUF else f for n, f in files.items()}

    monkeypatch.setattr(huggingface, "list_repo", lying)
    with pytest.raises(InvalidRequestError) as err:
        fetch_weights(gguf_request())
    assert err.value.code == "download_corrupt"
    entry = home / "cache" / "tiny--1B-ggufv2-q4_k_m"
    assert not (entry / GGUF).exists() and cache.read_complete(entry) is None


def test_removing_a_cached_version(home, hub):
    fetch_weights(gguf_request())
    version = "tiny--1B-ggufv2-q4_k_m"
    files = cache.entry_files(version)
    assert files[0].endswith(version) and any(f.endswith(GGUF) for f in files)
    with pytest.raises(Exception, match="used by running replica"):
        cache.remove_entry(version, ["m-0"])
    cache.remove_entry(version, [])
    assert not (home / "cache" / version).exists()
    with pytest.raises(InvalidRequestError):
        cache.entry_dir("../etc")


def test_modelscope_downloads_and_resumes(home, weights):
    from tests.fake_modelscope import FakeModelScope

    with FakeModelScope() as ms, ms.environ():
        ms.add_repo("acme/tiny-GGUF", {GGUF: weights})
        entry = home / "cache" / "ms-tiny"
        entry.mkdir(parents=True)
        (entry / (GGUF + ".incomplete")).write_bytes(weights.read_bytes()[:1_000_000])
        req = WeightsRequest(model_version="ms-tiny", model_name="tiny", model_type="LLM", kind="file",
                             sources={"modelscope": HubFiles(repo_id="acme/tiny-GGUF", files=[GGUF])},
                             download_hub="modelscope")
        path = fetch_weights(req)
        assert open(path, "rb").read() == weights.read_bytes()
        assert ms.bytes_served("acme/tiny-GGUF", GGUF) == SIZE - 1_000_000
        assert json.loads((entry / ".xinference" / "complete.json").read_text())["hub"] == "modelscope"
        with pytest.raises(InvalidRequestError) as err:
            fetch_weights(req.model_copy(update={"model_version": "ms-nope", "sources": {
                "modelscope": HubFiles(repo_id="acme/nope", files=[GGUF])}}))
        assert "acme/nope" in err.value.message and "ModelScope" in err.value.message


def test_a_split_gguf_downloads_every_part_and_loads_from_the_first(home, hub, weights):
    parts = ["big-q8_0-00001-of-00002.gguf", "big-q8_0-00002-of-00002.gguf"]
    hub.add_repo("acme/big-GGUF", {parts[0]: weights, parts[1]: b"second part"})
    from xinference.model.llm.family import LLMSpec

    spec = LLMSpec.model_validate({
        "model_format": "ggufv2", "model_size_in_billions": 70, "quantizations": ["q4_k_m", "q8_0"],
        "model_file_name_template": "big-{quantization}.gguf",
        "model_file_name_split_template": "big-{quantization}-{part}.gguf",
        "quantization_parts": {"q8_0": ["00001-of-00002", "00002-of-00002"]},
        "model_src": {"huggingface": {"model_id": "acme/big-GGUF"}}})
    assert spec.source_files("huggingface", "q4_k_m") == ["big-q4_k_m.gguf"]
    assert spec.source_files("huggingface", "q8_0") == parts
    req = gguf_request(version="big--70B-ggufv2-q8_0", repo="acme/big-GGUF",
                       files=spec.source_files("huggingface", "q8_0"))
    path = fetch_weights(req)
    assert path.endswith(parts[0])
    assert open(path.replace(parts[0], parts[1]), "rb").read() == b"second part"


def test_a_sharded_model_takes_only_the_shards_its_index_names(home, hub):
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    hub.add_repo("acme/sharded", {
        "config.json": b"{}", "model.safetensors.index.json": json.dumps(index).encode(),
        "model-00001-of-00002.safetensors": b"1" * 10, "model-00002-of-00002.safetensors": b"2" * 10,
        "consolidated.safetensors": b"3" * 20, "sentence_bert_config.json": b"{}",
        "1_Pooling/config.json": b"{}", "README.md": b"# card", "assets/logo.png": b"png"})
    req = WeightsRequest(model_version="sharded", model_name="sharded", model_type="LLM", kind="folder",
                         sources={"huggingface": HubFiles(repo_id="acme/sharded")})
    root = home / "cache" / "sharded"
    fetch_weights(req)
    got = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".xinference" not in p.parts)
    assert got == ["1_Pooling/config.json", "README.md", "config.json", "model-00001-of-00002.safetensors",
                   "model-00002-of-00002.safetensors", "model.safetensors.index.json",
                   "sentence_bert_config.json"]
    assert hub.bytes_served("acme/sharded", "consolidated.safetensors") == 0


def test_a_download_is_hashed_as_it_is_written(tmp_path):
    """The digest that verifies a download covers a resumed prefix, and starts over when
    the file is cut back (http_get does that when a server ignores its Range)."""
    import hashlib

    from xinference.model.hub.huggingface import _HashingFile

    data = os.urandom(3_000_000)
    path = tmp_path / "f.incomplete"
    path.write_bytes(data[:1_000_000])
    with path.open("r+b") as f:
        f.seek(1_000_000)
        hashed = _HashingFile(f)
        hashed.write(data[1_000_000:2_000_000])
        assert hashed.tell() == 2_000_000
        hashed.seek(1_000_000)  # the server ignored the Range: back to where this call began
        hashed.truncate()
        hashed.write(data[1_000_000:])
    assert path.read_bytes() == data
    assert hashed.sha256.hexdigest() == hashlib.sha256(data).hexdigest()


def test_verification_uses_the_hash_taken_while_downloading(home, hub, weights, monkeypatch):
    calls = []
    real = cache.sha256_of
    monkeypatch.setattr(cache, "sha256_of", lambda p: calls.append(p) or real(p))
    fetch_weights(gguf_request())
    assert calls == []  # the 3 MB file was not read back


def test_a_hub_that_never_answers_fails_within_the_timeout(home, monkeypatch):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections (the kernel does) and never answers
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("XINFERENCE_HUB_TIMEOUT", "1")
        started = time.monotonic()
        with pytest.raises(HubUnreachableError) as err:
            fetch_weights(gguf_request())
        assert time.monotonic() - started < 10
        assert "timed out" in err.value.message and REPO in err.value.message
    finally:
        silent.close()
