"""LayerMem's sample-size ablation (memlab.experiments.layermem_samples): constructed cases with known values."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from memlab.experiments import layermem_samples as S


def _draws(values: dict, layer: str = "a") -> pd.DataFrame:
    """A draws table: {size: [the draws' mean LayerMem]} for one layer."""
    return pd.DataFrame([{"points": n, "draw": d, "layer index": 1, "layer": layer, "LayerMem": v}
                         for n, vs in values.items() for d, v in enumerate(vs)])


def test_each_batch_is_normalised_over_itself_and_draws_are_disjoint_and_reproducible():
    raw = {"a": torch.linspace(0.0, 1.0, 50), "b": torch.linspace(0.0, 2.0, 50) ** 2}
    t = S.draws_table(raw, ["a", "b"], [10, 25], draws=2, seed=0)
    assert len(t) == 2 * 2 * 2 and set(t.points) == {10, 25}
    assert t.equals(S.draws_table(raw, ["a", "b"], [10, 25], draws=2, seed=0))        # same seed, same bits
    assert not t.equals(S.draws_table(raw, ["a", "b"], [10, 25], draws=2, seed=1))
    # the two batches of 25 split the 50 points: "a" is linear, so the batches' raw means average to 0.5
    perm = np.random.default_rng([0, 25]).permutation(50)
    blocks = [np.sort(perm[:25]), np.sort(perm[25:])]
    assert not set(blocks[0]) & set(blocks[1])
    x = raw["a"][torch.from_numpy(blocks[1])]                  # draw 1 by hand: raw / the batch's own max - min
    assert t[(t.points == 25) & (t.draw == 1) & (t.layer == "a")].LayerMem.item() == pytest.approx(
        float((x / (x.max() - x.min())).mean()), abs=1e-6)
    assert S.all_means(raw, ["a"])["a"] == pytest.approx(0.5)  # all 50: range 1, LayerMem = raw, mean 0.5


def test_summary_band_and_layer_order():
    d = pd.concat([_draws({10: [1.0, 2.0, 3.0]}, "a"), _draws({10: [4.0, 5.0, 6.0]}, "b").assign(**{"layer index": 2})])
    s = S.summary(d, {"a": 0.0, "b": 1.0}).set_index("layer")
    assert s.loc["a", "mean"] == 2.0 and s.loc["a", "sd"] == 1.0
    assert s.loc["a", "ci95"] == pytest.approx(stats.t.ppf(0.975, 2) / np.sqrt(3))      # 2.484
    assert s.loc["a", "kendall tau vs all"] == 1.0          # every draw orders a below b, as all candidates do
    assert S.summary(d, {"a": 1.0, "b": 0.0})["kendall tau vs all"].iloc[0] == -1.0


def test_anova_flags_a_size_effect_and_not_a_flat_one():
    shifted = S.anova(_draws({10: [1.0, 2.0, 3.0], 20: [4.0, 5.0, 6.0]})).iloc[0]
    # between SS 13.5 on 1 df, within SS 4 on 4 df: F = 13.5
    assert shifted.F == pytest.approx(13.5) and shifted.p == pytest.approx(stats.f.sf(13.5, 1, 4))
    flat = S.anova(_draws({10: [1.0, 2.0, 3.0], 20: [3.0, 2.0, 1.0]})).iloc[0]
    assert flat.F == pytest.approx(0.0) and flat.p == pytest.approx(1.0)
    assert np.isnan(S.anova(_draws({10: [1.0, 1.0], 20: [1.0, 1.0]})).p.iloc[0])       # no spread: no test


class _Report:
    def __init__(self):
        self.lines = []

    def claim(self, text, ok, detail):
        self.lines.append((text, ok, detail))


def test_the_claim_passes_only_when_no_layer_differs():
    for values, ok in (({10: [1.0, 2.0, 3.0], 20: [3.0, 2.0, 1.0]}, True),
                       ({10: [1.0, 2.0, 3.0], 20: [40.0, 50.0, 60.0]}, False)):
        d = _draws(values)
        r = _Report()
        S.claim(r, S.summary(d, {"a": 0.0}), S.anova(d), 0.01)
        (text, passed, detail), = r.lines
        assert passed is ok and "10, 20" in text and ("1/1 layers differ" in detail) is not ok


def test_bad_sizes_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="layer_candidates = 50"):
        S.check_sizes([10, 20], 3, 50)                        # 3 disjoint batches of 20 need 60 candidates
    S.check_sizes([10, 16], 3, 50)
    with pytest.raises(ValueError, match="at least 2 distinct"):
        S.check_sizes([10], 3, 50)
    with pytest.raises(ValueError, match="sample_draws"):
        S.check_sizes([10, 20], 1, 50)
