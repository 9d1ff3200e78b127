import io
import os

import numpy as np
import pytest
import torch

from memlab.data.archives import to_chw3
from memlab.data.datasets import DatasetNotFound, load_dataset


def test_decoded_grey_archive_is_padded_to_3x32x32(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "fashion_mnist.npz", x_train=x, y_train=np.arange(20) % 10, x_test=x[:5],
             y_test=np.arange(5), class_names=np.array([f"c{i}" for i in range(10)]))
    d = load_dataset("fashion_mnist", "train", root=tmp_path)
    assert d.images.shape == (20, 3, 32, 32) and d.images.dtype == torch.uint8
    assert torch.equal(d.images[:, 1, 2:30, 2:30], torch.from_numpy(x)) and d.images[:, :, :2].sum() == 0
    assert d.class_names[3] == "c3" and d.labels.dtype == torch.int64
    assert len(load_dataset("fashion_mnist", "test", root=tmp_path)) == 5


def test_jpeg_archive_layout(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    bufs = []
    for im in imgs:
        b = io.BytesIO()
        Image.fromarray(im).save(b, format="PNG")  # lossless stand-in: the loader decodes any PIL format
        bufs.append(np.frombuffer(b.getvalue(), np.uint8))
    off = np.cumsum([0] + [len(b) for b in bufs])
    np.savez(tmp_path / "cifar10_jpeg.npz", train_jpeg=np.concatenate(bufs), train_offsets=off,
             y_train=np.arange(6, dtype=np.uint8), test_jpeg=np.concatenate(bufs[:2]), test_offsets=off[:3],
             y_test=np.arange(2, dtype=np.uint8), class_names=np.array(list("abcdefghij")))
    d = load_dataset("cifar10", "train", root=tmp_path)
    assert torch.equal(d.images, torch.from_numpy(imgs).permute(0, 3, 1, 2))
    assert d.labels.tolist() == list(range(6))


def test_single_split_archive_has_no_test_split(tmp_path):
    np.savez(tmp_path / "mnist_5k.npz", x=np.zeros((10, 28, 28), np.uint8), y=np.arange(10))
    assert len(load_dataset("mnist", "train", root=tmp_path)) == 10
    with pytest.raises(DatasetNotFound, match="single"):
        load_dataset("mnist", "test", root=tmp_path)


def test_missing_dataset_offline_names_files_and_variable(tmp_path):
    with pytest.raises(DatasetNotFound) as e:
        load_dataset("cifar100", "train", root=tmp_path, download=False)
    msg = str(e.value)
    assert "cifar100.npz" in msg and "MEMLAB_DATA" in msg and str(tmp_path) in msg
    assert "shared" not in msg  # the user's own folders and variables only, not this project's dev layout


def test_unknown_names_rejected():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet21k")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("synthetic", "val")


def test_synthetic_through_registry_is_deterministic_and_split_specific():
    a = load_dataset("synthetic", "train", n=50, seed=3, atypical_frac=0.3)
    b = load_dataset("synthetic", "train", n=50, seed=3, atypical_frac=0.3)
    assert len(a.atypical) >= 2
    t = load_dataset("synthetic", "test", n=50, seed=3)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, t.images)
    assert a.images.shape == (50, 3, 32, 32) and a.num_classes == 10
    sub = a.subset(a.atypical[:2].tolist() + [i for i in range(50) if i not in set(a.atypical.tolist())][:3])
    assert sub.atypical.tolist() == [0, 1] and len(sub.atypical_kind) == 2


def test_to_chw3_resizes_large_images():
    x = np.full((2, 96, 96, 3), 200, np.uint8)
    t = to_chw3(x)
    assert t.shape == (2, 3, 32, 32) and int(t.float().mean().round()) == 200


@pytest.mark.skipif(not os.environ.get("MEMLAB_DATA") or
                    not os.path.isfile(os.path.join(os.environ.get("MEMLAB_DATA", ""), "mnist_5k.npz")),
                    reason="needs MEMLAB_DATA pointing at a folder with mnist_5k.npz")
def test_real_offline_archive():
    d = load_dataset("mnist", "train")
    assert d.images.shape == (5000, 3, 32, 32)
    assert np.all(np.bincount(d.labels.numpy()) == 500)
    sub = load_dataset("mnist", "train", n=100, seed=0)
    assert np.all(np.bincount(sub.labels.numpy()) == 10)


def _fashion(path):
    x = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(20) % 10, x_test=x[:5], y_test=np.arange(5))


@pytest.mark.parametrize("damage", ["truncated", "empty", "not a zip"])
def test_damaged_archive_is_named_and_treated_as_missing(tmp_path, damage):
    path = tmp_path / "fashion_mnist.npz"
    _fashion(path)
    raw = path.read_bytes()
    path.write_bytes({"truncated": raw[: len(raw) // 2], "empty": b"", "not a zip": b"hello" * 100}[damage])
    with pytest.raises(DatasetNotFound) as e:     # the notebooks' fallback catches DatasetNotFound
        load_dataset("fashion_mnist", "train", root=tmp_path, download=False)
    msg = str(e.value)
    assert f"{path} is damaged" in msg and "Replace it with a fresh copy" in msg and "MEMLAB_DATA" in msg


def test_checksums_beside_the_archives_are_verified_once(tmp_path, monkeypatch):
    import hashlib
    import memlab.data.archives as D
    path = tmp_path / "fashion_mnist.npz"
    _fashion(path)
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  fashion_mnist.npz\n")
    with pytest.raises(DatasetNotFound, match=r"fashion_mnist.npz is damaged: its SHA-256 .*SHA256SUMS"):
        load_dataset("fashion_mnist", "train", root=tmp_path, download=False)
    (tmp_path / "SHA256SUMS").write_text(f"{good}  fashion_mnist.npz\n")
    assert len(load_dataset("fashion_mnist", "train", root=tmp_path)) == 20
    assert (tmp_path / ".memlab_verified.json").is_file()
    D._VERIFIED.clear()                                   # a new process: the file remembers the verification
    monkeypatch.setattr(D.hashlib, "sha256", lambda *a: pytest.fail("hashed again"))
    assert len(load_dataset("fashion_mnist", "test", root=tmp_path)) == 5


def test_a_missing_dataset_is_substituted_only_when_the_parameter_allows_it(tmp_path, capsys):
    from memlab.data.datasets import stand_in
    with pytest.raises(DatasetNotFound) as e:
        load_dataset("cifar100", "train", root=tmp_path, download=False)
    with pytest.raises(DatasetNotFound, match="set the parameter synthetic_fallback: true .*'cifar100'"):
        stand_in(e.value, "cifar100", allowed=False)
    stand_in(e.value, "cifar100", allowed=True)
    assert "synthetic data stands in for it" in capsys.readouterr().out


def _fake_stl10(folder, n_train=40, n_test=20, n_unlabeled=60):
    """A small stl10.npz (96 x 96 colour images) with its unlabeled split."""
    g = np.random.default_rng(0)
    np.savez(folder / "stl10.npz", x_train=g.integers(0, 256, (n_train, 96, 96, 3), dtype=np.uint8),
             y_train=np.arange(n_train) % 10, x_test=g.integers(0, 256, (n_test, 96, 96, 3), dtype=np.uint8),
             y_test=np.arange(n_test) % 10, x_unlabeled=g.integers(0, 256, (n_unlabeled, 96, 96, 3), dtype=np.uint8))
    return folder


def test_stl10_unlabeled_split_has_labels_minus_one_and_other_datasets_refuse_it(tmp_path):
    root = _fake_stl10(tmp_path)
    un = load_dataset("stl10", "unlabeled", root=root, download=False)
    assert un.images.shape == (60, 3, 32, 32) and un.images.dtype == torch.uint8
    assert (un.labels == -1).all()
    assert len(load_dataset("stl10", "unlabeled", root=root, download=False, n=20, seed=1)) == 20
    assert load_dataset("stl10", "train", root=root, download=False).labels.max() == 9
    with pytest.raises(ValueError, match="no unlabeled split"):
        load_dataset("cifar10", "unlabeled", root=root, download=False)


def _fake_folder_tree(root, classes=("a", "b", "c"), per_class=4, size=(40, 50)):
    from PIL import Image
    g = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            d = root / "imagenet" / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(g.integers(0, 256, (*size, 3), dtype=np.uint8)).save(d / f"{c}{i}.JPEG")
    return root


def test_folder_dataset_takes_a_deterministic_balanced_subset_resized_and_caches_it(tmp_path):
    root = _fake_folder_tree(tmp_path)
    a = load_dataset("imagenet", "train", root=root, n=6, seed=3, size=16)
    assert a.images.shape == (6, 3, 16, 16) and a.images.dtype == torch.uint8
    assert sorted(a.labels.tolist()) == [0, 0, 1, 1, 2, 2] and a.class_names == ["a", "b", "c"]
    cached = list((root / "imagenet").glob(".memlab-train-16-6-3.npz"))
    assert len(cached) == 1
    b = load_dataset("imagenet", "train", root=root, n=6, seed=3, size=16)   # from the cached subset
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert len(load_dataset("imagenet", "test", root=root, size=8)) == 12
    with pytest.raises(ValueError, match="holds 12"):
        load_dataset("imagenet", "train", root=root, n=13, size=16)
    with pytest.raises(DatasetNotFound, match="tiny-imagenet-200.*cannot download"):
        load_dataset("tiny_imagenet", "train", root=root)


def test_tiny_imagenet_val_is_read_from_its_annotations(tmp_path):
    from PIL import Image
    val = tmp_path / "tiny-imagenet-200" / "val"
    (val / "images").mkdir(parents=True)
    rows = []
    for i, c in enumerate(["n2", "n1", "n2", "n1"]):
        Image.fromarray(np.full((64, 64, 3), 40 * i, dtype=np.uint8)).save(val / "images" / f"val_{i}.JPEG")
        rows.append(f"val_{i}.JPEG\t{c}\t0\t0\t63\t63")
    (val / "val_annotations.txt").write_text("\n".join(rows) + "\n")
    d = load_dataset("tiny_imagenet", "test", root=tmp_path)
    assert d.images.shape == (4, 3, 64, 64) and d.labels.tolist() == [1, 0, 1, 0] and d.class_names == ["n1", "n2"]


@pytest.mark.parametrize("name, tv_name", [("food101", "Food101"), ("flowers102", "Flowers102")])
def test_photo_datasets_are_centre_cropped_to_32_once_and_kept(tmp_path, monkeypatch, name, tv_name):
    """Food-101 and Flowers-102 (Table 14's probes) come from torchvision as photos of any size."""
    import torchvision.datasets as tvd
    from PIL import Image
    opened = []

    class FakePhotos:   # torchvision's interface: (PIL image, label) pairs of any size, and `classes`
        def __init__(self, root, split, download):
            opened.append(split)
            self.split, self.classes = split, ["apple pie", "bibimbap"]

        def __iter__(self):
            for i, (w, h) in enumerate([(64, 40), (40, 90), (512, 512)]):
                img = np.zeros((h, w, 3), np.uint8)
                img[:, w // 2:] = 200                            # right half bright: the centre crop keeps both
                yield Image.fromarray(img), i % 2

    monkeypatch.setattr(tvd, tv_name, FakePhotos)
    d = load_dataset(name, "train", root=tmp_path)
    per_split = 2 if name == "flowers102" else 1                 # Flowers-102's train joins train and val
    assert d.images.shape == (3 * per_split, 3, 32, 32) and d.images.dtype == torch.uint8
    assert d.labels.tolist() == [0, 1, 0] * per_split and d.class_names == ["apple pie", "bibimbap"]
    assert d.images[0, 0, 16, :8].max() == 0 and d.images[0, 0, 16, -8:].min() == 200
    assert opened == (["train", "val"] if name == "flowers102" else ["train"])
    again = load_dataset(name, "train", root=tmp_path)          # decoded once, then read back
    assert torch.equal(again.images, d.images) and len(opened) == per_split
    assert (tmp_path / "torchvision" / f"{name}_train_32.npz").is_file()
