"""The appendix-E toy model (methods.md section 5): data, augmentation, projector, and the B trend."""
import pytest
import torch

from memlab.experiments.toy import ToyConfig, augment, centres, projector, run, sample


def test_mixture_statistics_follow_the_covariances():
    cfg = ToyConfig(d=6, d1=2, classes=3, sigma=2.0)
    x, z = sample(cfg, 60000, torch.Generator().manual_seed(0))
    mu = centres(cfg)
    resid = x[:, :2] - mu[z]
    assert resid.mean(0).abs().max() < 0.02
    assert resid.var(0) == pytest.approx(torch.full((2,), 4.0 / 10), rel=0.03)       # S1 = sigma^2 / 10
    assert x[:, 2:].var(0) == pytest.approx(torch.full((4,), 4.0), rel=0.03)        # S2 = sigma^2
    assert x[:, 2:].mean(0).abs().max() < 0.05
    assert torch.bincount(z).min() > 19000                                         # uniform classes


def test_augmentation_touches_only_the_noise_coordinates():
    cfg = ToyConfig(d=5, d1=2, sigma=1.5)
    x, _ = sample(cfg, 2000, torch.Generator().manual_seed(1))
    xa = augment(cfg, x, 7, torch.Generator().manual_seed(2))
    assert xa.shape == (2000, 7, 5)
    assert torch.equal(xa[:, :, :2], x[:, None, :2].expand(-1, 7, -1))
    a = xa[:, :, 2:] - x[:, None, 2:]
    assert a.var() == pytest.approx(1.5 ** 2, rel=0.03)                           # S3 = sigma^2
    assert not torch.allclose(xa[:, 0], xa[:, 1])


def test_soft_nearest_vector_projector():
    g = torch.Generator().manual_seed(0)
    v, z = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    l = torch.eye(4, dtype=torch.float64)[[0, 2, 1, 2]]
    out = projector(z, v, l)
    for i in range(5):
        w = torch.tensor([1 / float((z[i] - v[j]).norm()) for j in range(4)], dtype=torch.float64)
        assert torch.allclose(out[i], (w / w.sum()) @ l)
    assert torch.allclose(out.sum(1), torch.ones(5, dtype=torch.float64))          # a convex combination of one-hots
    near = projector(v[1:2] + 1e-9, v, l)                                           # at v_i, g -> l_i
    assert torch.allclose(near, l[1:2], atol=1e-6)


def test_run_is_deterministic_and_init_is_shared_across_B():
    cfg = ToyConfig(steps=20, n_test=100)
    a, b, c = run(cfg, 30, 2), run(cfg, 30, 2), run(cfg, 30, 5)
    assert a == b and a["knn_init"] == c["knn_init"]
    with pytest.raises(ValueError):
        ToyConfig(d1=20, d=20)
    with pytest.raises(ValueError):
        run(cfg, 0, 1)


def test_accuracy_rises_with_B_at_fixed_n():
    """Appendix E: with n * B beyond what K vectors can fit, fitting the random labels needs invariance to the
    noise coordinates, which helps the K-NN probe; with B = 1 the points are memorised."""
    cfg = ToyConfig(steps=200, n_test=300)
    one, many = run(cfg, 100, 1), run(cfg, 100, 10)
    assert many["knn"] > one["knn"] + 0.1
    assert many["knn"] > many["knn_init"]
