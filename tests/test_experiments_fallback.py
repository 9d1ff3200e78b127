"""experiments.fallback: a missing dataset raises unless synthetic data may stand in, and then says so."""
import pytest
import torch

from memlab.data.datasets import DatasetNotFound, load_dataset
from memlab.experiments.fallback import load_or_stand_in


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLAB_DATA", str(tmp_path / "empty"))   # no archive, and no download below


def test_a_missing_dataset_raises_naming_the_parameter_that_allows_a_stand_in(no_data):
    with pytest.raises(DatasetNotFound, match="synthetic_fallback"):
        load_or_stand_in("fashion_mnist", synthetic_fallback=False, n=(30, 20), download=False)


def test_the_stand_in_is_the_synthetic_set_of_the_asked_sizes_and_seed(no_data, capsys):
    train, test = load_or_stand_in("fashion_mnist", synthetic_fallback=True, n=(30, 20), seed=3, download=False)
    assert "synthetic data stands in for it" in capsys.readouterr().out
    assert (train.name, len(train), len(test)) == ("synthetic", 30, 20)
    assert torch.equal(train.images, load_dataset("synthetic", "train", n=30, seed=3).images)
    # notebook 03's form: the stand-in has its own sizes and seed
    train2, test2 = load_or_stand_in("fashion_mnist", synthetic_fallback=True, download=False, stand_in_n=(40, 10),
                                     stand_in_seed=9, atypical_frac=0.1)
    assert (len(train2), len(test2)) == (40, 10)
    assert torch.equal(train2.images, load_dataset("synthetic", "train", n=40, seed=9, atypical_frac=0.1).images)


def test_synthetic_asked_for_is_loaded_directly(capsys):
    train, test = load_or_stand_in("synthetic", synthetic_fallback=False, n=(30, 20), seed=4)
    assert capsys.readouterr().out == ""
    assert torch.equal(test.images, load_dataset("synthetic", "test", n=20, seed=4).images)
