import pickle

import numpy as np
import pytest
import torch

from memlab.augmentation.augment import PRESETS, Augmentation, ViewBank, hash_uniform


def imgs(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_hash_uniform_is_pure_and_uniform():
    a = hash_uniform(3, 7, np.arange(1000), 4)
    b = hash_uniform(3, 7, np.arange(1000), 4)
    assert np.array_equal(a, b)
    assert a.min() >= 0 and a.max() < 1
    assert abs(a.mean() - 0.5) < 0.02 and abs(a.var() - 1 / 12) < 0.01
    assert not np.array_equal(a, hash_uniform(4, 7, np.arange(1000), 4))  # seed matters
    assert not np.array_equal(a, hash_uniform(3, 8, np.arange(1000), 4))  # stream matters
    # a point's draws do not depend on which other points are drawn with it
    assert np.array_equal(hash_uniform(3, 7, np.array([500, 3]), 4), a[[500, 3]])


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_shape_determinism_and_batch_independence(name):
    aug, x = Augmentation(name), imgs()
    idx = np.arange(100, 116)
    v = aug(x, idx, seed=1, stream=5)
    assert v.shape == x.shape and v.dtype == torch.float32 and torch.isfinite(v).all()
    assert torch.equal(v, aug(x, idx, seed=1, stream=5))
    part = aug(x[4:9], idx[4:9], seed=1, stream=5)
    assert torch.allclose(part, v[4:9], atol=1e-5)


def test_none_is_the_normalised_image():
    aug, x = Augmentation("none", mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5)), imgs()
    v = aug(x, np.arange(16), 0, 0)
    assert torch.allclose(v, aug.normalize(x))
    assert torch.allclose(v[:, 0], (x[:, 0].float() / 255 - 0.1) / 0.5)


def test_simclr_views_differ_between_streams_and_seeds():
    aug, x = Augmentation("simclr"), imgs()
    a = aug(x, np.arange(16), 0, 0)
    assert not torch.allclose(a, aug(x, np.arange(16), 0, 1))
    assert not torch.allclose(a, aug(x, np.arange(16), 1, 0))


def test_weak_is_a_shifted_possibly_flipped_copy():
    aug = Augmentation("weak", mean=(0, 0, 0), std=(1, 1, 1))
    x = imgs(8)
    v = aug(x, np.arange(8), 0, 0)
    p = aug.sample(np.arange(8), 0, 0)
    for i in range(8):
        pad = torch.nn.functional.pad(x[i].float() / 255, (4, 4, 4, 4))
        oy, ox = int(p["oy"][i]), int(p["ox"][i])
        ref = pad[:, oy:oy + 32, ox:ox + 32]
        if p["flip"][i]:
            ref = ref.flip(2)
        assert torch.allclose(v[i], ref, atol=1e-6)


def test_full_crop_without_flip_is_identity():
    # a random resized crop that covers the whole image reproduces it (bilinear grid at pixel centres)
    aug = Augmentation("crop", crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False, mean=(0,) * 3,
                       std=(1,) * 3)
    x = imgs(4)
    assert torch.allclose(aug(x, np.arange(4), 0, 0), x.float() / 255, atol=1e-5)


def test_jitter_happens_before_normalisation_and_stays_in_range():
    # colour ops act on [0, 1] pixels: undoing the normalisation gives values inside [0, 1]
    aug = Augmentation("simclr", mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    v = aug(imgs(64), np.arange(64), 0, 0)
    raw = v * aug.std + aug.mean
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_grayscale_probability_and_views_are_grey():
    aug = Augmentation("colordrop", jitter_p=0.0, mean=(0,) * 3, std=(1,) * 3)
    v = aug(imgs(8), np.arange(8), 0, 0)
    assert torch.allclose(v[:, 0], v[:, 1]) and torch.allclose(v[:, 1], v[:, 2])
    p = Augmentation("simclr").sample(np.arange(20000), 0, 0)
    assert abs(p["gray"].float().mean() - 0.2) < 0.02 and abs(p["jit"].float().mean() - 0.8) < 0.02
    assert abs(p["flip"].float().mean() - 0.5) < 0.02


def test_view_bank_same_views_for_every_network_and_epoch():
    bank = ViewBank(Augmentation("simclr"), n_views=6, seed=3)
    x = imgs()
    v2 = bank.view(x, np.arange(16), 2)
    assert torch.equal(v2, ViewBank(Augmentation("simclr"), n_views=10, seed=3).view(x, np.arange(16), 2))
    assert not torch.allclose(v2, bank.view(x, np.arange(16), 3))
    with pytest.raises(IndexError):
        bank.view(x, np.arange(16), 6)


def test_view_bank_memo_is_exact_and_keyed_by_content():
    x, idx = imgs(), np.arange(16)
    plain, memo = ViewBank(Augmentation("simclr"), 4, seed=3, memo_mb=0), ViewBank(Augmentation("simclr"), 4, seed=3)
    first = memo.view(x, idx, 1)
    first.add_(1.0)                       # a caller mutating its copy must not touch the memo
    assert torch.equal(memo.view(x, idx, 1), plain.view(x, idx, 1)) and len(memo._memo) == 1
    other = x.flip(0)                     # same indices, different pixels: augmented afresh, not a stale hit
    assert torch.equal(memo.view(other, idx, 1), plain.view(other, idx, 1)) and len(memo._memo) == 2
    assert torch.equal(memo.view(x[:8], idx[:8], 1), plain.view(x, idx, 1)[:8])   # per-example views
    sent = pickle.loads(pickle.dumps(memo))   # to a worker process: without the memo, same views
    assert not sent._memo and sent._used == 0 and torch.equal(sent.view(x, idx, 1), plain.view(x, idx, 1))
    tiny = ViewBank(Augmentation("simclr"), 4, seed=3, memo_mb=1e-3)   # cap smaller than one batch: no memo
    assert torch.equal(tiny.view(x, idx, 2), plain.view(x, idx, 2)) and not tiny._memo


def test_unknown_preset_and_option_rejected():
    with pytest.raises(ValueError, match="unknown augmentation"):
        Augmentation("simclrr")
    with pytest.raises(ValueError, match="option"):
        Augmentation("simclr", brightness=0.3)
