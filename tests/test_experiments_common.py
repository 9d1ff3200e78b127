"""experiments.common: parameters from a notebook's globals, checked before any compute."""
from dataclasses import dataclass

import pytest

from memlab.experiments.common import check_keys, parameters
from memlab.io.params import ParameterError


@dataclass(frozen=True)
class P:
    alpha: float
    n_train: int


def test_parameters_reads_the_fields_by_name():
    assert parameters(P, {"alpha": 0.01, "n_train": 500, "other": 1}) == P(0.01, 500)


def test_parameters_refuse_a_missing_name_and_a_value_out_of_range():
    with pytest.raises(ParameterError, match="n_train"):
        parameters(P, {"alpha": 0.01})
    with pytest.raises(ParameterError, match="alpha"):
        parameters(P, {"alpha": 1.5, "n_train": 500})   # a significance level lies in (0, 1)


def test_check_keys_names_the_closest_key():
    check_keys("epochs", {"simclr": 5}, ["simclr", "supervised"])
    with pytest.raises(ParameterError, match="did you mean 'supervised'"):
        check_keys("epochs", {"supervisd": 5}, ["simclr", "supervised"])
