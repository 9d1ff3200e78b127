"""Memorization profiles (Sadrtdinov et al. 2021; methods.md §1): recognition indicators, p_t, binomial MAE,
chi-square test, bitset records."""
import numpy as np
import pytest
import torch
from scipy import stats as sst

from memlab.metrics.profiles import (binomial_mae, chi_square_binomial, closest_epoch, eval_chunks, p_averaged, p_fixed,
                             pack_bits, profile_table, recognized_classification, recognized_in_batch,
                             sorted_profile, unpack_bits)


def test_hand_built_record_gives_known_p():
    # N=2 networks, E=1 epoch, M=2 augmentations, |X|=3 images
    rec = np.zeros((2, 1, 2, 3), dtype=bool)
    rec[0, 0, 0] = [1, 1, 0]
    rec[0, 0, 1] = [1, 0, 0]
    rec[1, 0, 0] = [1, 1, 1]
    rec[1, 0, 1] = [1, 0, 0]
    np.testing.assert_allclose(p_averaged(rec)[0], [1.0, 0.5, 0.25])
    np.testing.assert_allclose(p_fixed(rec, 0)[0], [1.0, 1.0, 0.5])
    np.testing.assert_allclose(p_fixed(rec, 1)[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(sorted_profile(p_averaged(rec))[0], [0.25, 0.5, 1.0])


def test_binomial_mae_small_for_binomial_data_large_for_structured_data():
    rng = np.random.default_rng(1)
    n, size = 30, 1000
    noise = rng.binomial(n, 0.5, size) / n                    # every point equally hard
    easy_hard = np.r_[np.zeros(size // 2), np.ones(size // 2)]  # easy and hard points, same mean 0.5
    mae_noise, mae_struct = binomial_mae(noise, n, seed=3), binomial_mae(easy_hard, n, seed=3)
    assert mae_noise < 0.01
    # half the points at 0, half at 1: the sorted noise sits near 0.5, so the MAE is about 0.5 - E|B/N - 0.5|
    assert 0.40 < mae_struct < 0.47
    # the MAE of pure noise shrinks as N grows (why paradigms are compared at equal N)
    # exactly binomial data is close to the noise at any N, if the noise is drawn with the same N
    small_n = rng.binomial(5, 0.3, size) / 5
    assert binomial_mae(small_n, 5, seed=3) < 0.02
    assert binomial_mae(small_n, 50, seed=3) > 0.05  # noise with another N does not match
    assert binomial_mae(noise, n, n_draws=10, seed=0) == binomial_mae(noise, n, n_draws=10, seed=0)


def test_binomial_mae_rejects_bad_input():
    with pytest.raises(ValueError):
        binomial_mae([], 10)
    with pytest.raises(ValueError):
        binomial_mae([0.2, 1.3], 10)


def test_chi_square_accepts_binomial_rejects_overdispersed_and_matches_scipy():
    rng = np.random.default_rng(0)
    n, size = 20, 1000
    ok = chi_square_binomial(rng.binomial(n, 0.4, size) / n, n)
    assert ok["p_value"] > 0.01 and ok["dof"] == ok["bins"] - 2
    mix = np.r_[rng.binomial(n, 0.1, size // 2), rng.binomial(n, 0.7, size // 2)] / n  # easy and hard pairs
    bad = chi_square_binomial(mix, n)
    assert bad["p_value"] < 1e-10
    # same statistic as scipy's chisquare with ddof=1 when no bin needs pooling
    k = np.r_[np.repeat(np.arange(3), [20, 50, 30])]
    res = chi_square_binomial(k / 2, 2, min_expected=0)
    exp = 100 * sst.binom.pmf(np.arange(3), 2, k.mean() / 2)
    ref = sst.chisquare([20, 50, 30], exp, ddof=1)
    assert res["chi2"] == pytest.approx(ref.statistic) and res["p_value"] == pytest.approx(ref.pvalue)
    with pytest.raises(ValueError, match="integer"):
        chi_square_binomial([0.33, 0.5], 2)


def test_recognized_classification():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5]])
    assert recognized_classification(logits, torch.tensor([0, 1, 1])).tolist() == [True, True, False]


def test_recognized_in_batch_follows_the_definition():
    # B = 4 images. Image 0 and 2: own second view is the nearest -> recognised. Image 1: its first view is
    # nearer to image 2's FIRST view than to its own second view -> not recognised (all 2B - 1 other views
    # compete, not only second views). Image 3: image 1's second view beats its own -> not recognised.
    z1 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.95, 0.05], [0.0, 0.0, 1.0]])
    z2 = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.5, 0.5], [0.0, 0.95, 0.06], [1.0, -1.0, 0.0]])
    hit = recognized_in_batch(z1, z2)
    assert hit.tolist() == [True, False, True, False]
    # brute force over the 2B views with cosine similarity, anchor = first view
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    for i in range(4):
        s = z[i] @ z.t()
        s[i] = -2
        assert bool(hit[i]) == (int(s.argmax()) == i + 4)
    # a shared scale does not matter (cosine), and every image is found when views coincide
    z = torch.randn(16, 8)
    assert recognized_in_batch(z, 3 * z).all()


def test_eval_chunks_are_fixed_equal_and_cover_x():
    ch = eval_chunks(500, 256)
    assert [len(c) for c in ch] == [250, 250]
    assert np.array_equal(np.concatenate(ch), np.arange(500))
    assert all(len(c) <= 256 for c in eval_chunks(1000, 256))
    with pytest.raises(ValueError):
        eval_chunks(10, 1)


def test_bitset_roundtrip_and_size():
    rng = np.random.default_rng(0)
    rec = rng.random((3, 5, 13)) < 0.5
    packed = pack_bits(rec)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 5, 2)
    assert np.array_equal(unpack_bits(packed, 13), rec)


def test_closest_epoch_and_table():
    assert closest_epoch([0.1, 0.3, 0.55, 0.8], [1, 2, 4, 8], 0.5) == 4
    rng = np.random.default_rng(0)
    rec = rng.random((10, 2, 3, 200)) < np.array([0.3, 0.6])[None, :, None, None]
    rows = profile_table(rec, [1, 2])
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["mean_p"] == pytest.approx(rec[:, 0].mean())
    assert all(r["mae_fixed"] < 0.05 and r["chi2_p_fixed"] > 1e-4 for r in rows)  # exactly binomial here
