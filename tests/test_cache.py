import os

import pytest
import torch

from memlab.cache import Cache, CorruptEntry, atomic_save


def test_roundtrip_and_key_depends_on_config(cache):
    calls = []
    f = lambda: calls.append(1) or {"x": torch.arange(5)}  # noqa: E731
    a = cache.get_or_compute("res", {"a": 1}, f)
    b = cache.get_or_compute("res", {"a": 1}, f)
    assert torch.equal(a["x"], b["x"]) and len(calls) == 1
    cache.get_or_compute("res", {"a": 2}, f)
    assert len(calls) == 2
    cache.get_or_compute("res", {"a": 1}, f, force=True)
    assert len(calls) == 3


def test_corrupted_entry_is_detected_and_recomputed(cache):
    cache.get_or_compute("res", {"a": 1}, lambda: {"x": torch.ones(3)})
    entry = cache.path("res", {"a": 1})
    data = (entry / "result.pt").read_bytes()
    (entry / "result.pt").write_bytes(data[:-7] + b"garbage")
    with pytest.raises(CorruptEntry):
        cache.verify(entry)
    assert not cache.exists("res", {"a": 1})
    with pytest.warns(UserWarning, match="corrupted"):
        out = cache.get_or_compute("res", {"a": 1}, lambda: {"x": torch.zeros(3)})
    assert torch.equal(out["x"], torch.zeros(3))
    cache.verify(entry)


def test_missing_manifest_counts_as_corrupt(cache):
    cache.save("res", {"a": 1}, {"result.pt": {"x": 1}})
    (cache.path("res", {"a": 1}) / "MANIFEST.json").unlink()
    assert not cache.exists("res", {"a": 1})


def test_failed_compute_leaves_no_entry_and_no_temp(cache):
    def boom():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute("res", {"a": 1}, boom)
    assert not cache.exists("res", {"a": 1})
    assert not any(p.name.startswith(".tmp") for p in (cache.root / "res").glob("*")) if (cache.root / "res").exists() else True


def test_save_is_atomic_rename(cache, monkeypatch):
    # a crash while writing files must not leave a (partial) entry under the final name
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        cache.save("res", {"a": 1}, {"result.pt": {"x": 1}})
    assert not cache.path("res", {"a": 1}).exists()
    assert list((cache.root / "res").iterdir()) == []


def test_atomic_save_replaces_whole_file(tmp_path):
    p = tmp_path / "ck.pt"
    atomic_save({"a": torch.ones(2)}, p)
    atomic_save({"a": torch.zeros(2)}, p)
    assert torch.equal(torch.load(p, weights_only=True)["a"], torch.zeros(2))
    assert [q.name for q in tmp_path.iterdir()] == ["ck.pt"]
