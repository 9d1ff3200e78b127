import pytest
import torch

opacus = pytest.importorskip("opacus")

from memlab.data.datasets import load_dataset  # noqa: E402
from memlab.io.cache import Cache  # noqa: E402
from memlab.engine.dp import _Pair, cached_dp_encoder, per_image_gradients, train_dp  # noqa: E402
from memlab.engine.train import TrainConfig, build  # noqa: E402

DATA = load_dataset("synthetic", "train", n=96, seed=0)
MEAN, STD = DATA.stats()
CFG = dict(model="resnet9", model_kw={"width": 0.125, "norm": "group"}, objective="simsiam",
           objective_kw={"norm": "layer"}, batch_size=32, lr=0.05, warmup_epochs=0, mean=MEAN, std=STD)


def test_per_image_gradients_sum_to_the_batch_gradient():
    enc, obj = build(TrainConfig(**CFG))
    pair = _Pair(enc, obj).train()
    g = torch.Generator().manual_seed(0)
    v1, v2 = torch.randn(5, 3, 32, 32, generator=g), torch.randn(5, 3, 32, 32, generator=g)
    params = dict(pair.named_parameters())
    per = per_image_gradients(pair, params, dict(pair.named_buffers()), v1, v2)
    pair.zero_grad()
    pair(v1, v2).sum().backward()
    for k, p in params.items():
        assert per[k].shape == (5, *p.shape)
        assert torch.allclose(per[k].sum(0), p.grad, atol=1e-4, rtol=1e-3), k
    # and image 0's gradient is the gradient of image 0's loss alone
    pair.zero_grad()
    pair(v1[:1], v2[:1]).sum().backward()
    assert torch.allclose(per["encoder.prep.0.weight"][0], params["encoder.prep.0.weight"].grad, atol=1e-5)


def test_dp_training_reaches_target_epsilon_and_is_reproducible():
    cfg = TrainConfig(epochs=2, **CFG)
    a = train_dp(cfg, DATA.images, target_epsilon=8.0, device="cpu", progress=False)
    b = train_dp(cfg, DATA.images, target_epsilon=8.0, device="cpu", progress=False)
    assert a["epsilon"] == pytest.approx(8.0, rel=0.05) and a["delta"] == pytest.approx(1 / 96)
    assert [h["epsilon"] for h in a["history"]] == sorted(h["epsilon"] for h in a["history"])
    sa, sb = a["encoder"].state_dict(), b["encoder"].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    init, _ = build(cfg)
    assert not torch.equal(init.state_dict()["prep.0.weight"], sa["prep.0.weight"])
    strict = train_dp(cfg, DATA.images, target_epsilon=1.0, device="cpu", progress=False)
    assert strict["noise_multiplier"] > a["noise_multiplier"]


def test_dp_rejects_batchnorm_and_contrastive_losses():
    with pytest.raises(ValueError, match="norm"):
        train_dp(TrainConfig(epochs=1, **{**CFG, "model_kw": {"width": 0.125}}), DATA.images, target_epsilon=8,
                 device="cpu", progress=False)
    with pytest.raises(ValueError, match="per-example"):
        train_dp(TrainConfig(epochs=1, **{**CFG, "objective": "simclr"}), DATA.images, target_epsilon=8,
                 device="cpu", progress=False)


def test_cached_dp_encoder_is_served_from_the_cache_with_its_accounting(tmp_path):
    cfg, idx = TrainConfig(epochs=1, **CFG), torch.arange(96)
    kw = dict(epsilon=8.0, data_id="synthetic/train", device="cpu")
    a = cached_dp_encoder(Cache(tmp_path), cfg, DATA.images, idx, **kw)
    b = cached_dp_encoder(Cache(tmp_path), cfg, DATA.images, idx, **kw)
    assert not a.from_cache and b.from_cache and a.key == b.key
    assert b.dp["epsilon"] == pytest.approx(8.0, rel=0.05) and b.dp["delta"] == pytest.approx(1 / 96)
    sa, sb = a.encoder.state_dict(), b.encoder.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and not b.encoder.training
    c = cached_dp_encoder(Cache(tmp_path), cfg, DATA.images, idx, **{**kw, "epsilon": 20.0})
    assert not c.from_cache and c.key != a.key


def test_diverging_dp_training_raises_instead_of_returning_nan_weights():
    cfg = TrainConfig(epochs=3, **{**CFG, "lr": 1e4})
    with pytest.raises(FloatingPointError, match=r"DP-SGD training \(epsilon 8.0\) diverged"):
        train_dp(cfg, DATA.images, target_epsilon=8.0, device="cpu", progress=False)


def test_physical_micro_batches_train_as_the_whole_logical_batch_and_step_once_per_logical_batch(monkeypatch):
    """BatchMemoryManager splits each Poisson batch (about 16 images) into micro-batches of 5: the optimiser
    clips and accumulates them and takes one noisy step per logical batch, so the weights match training on
    whole batches (to float tolerance: only the summation order differs)."""
    from opacus.optimizers import DPOptimizer
    cfg = TrainConfig(epochs=1, **{**CFG, "batch_size": 16})
    images = DATA.images[:48]
    sizes, steps = [], []
    real_step = DPOptimizer.step

    def counting_step(self, *a, **k):
        sizes.append(self.grad_samples[0].shape[0] if self.grad_samples else 0)
        out = real_step(self, *a, **k)
        steps.append(not self._is_last_step_skipped)
        return out

    whole = train_dp(cfg, images, target_epsilon=8.0, device="cpu", progress=False)
    monkeypatch.setattr(DPOptimizer, "step", counting_step)
    micro = train_dp(cfg, images, target_epsilon=8.0, device="cpu", progress=False, physical_batch=5)
    assert max(sizes) <= 5 and sum(sizes) > 20 and len(sizes) > 2 * sum(steps)
    assert sum(steps) == 3                       # 48 images / batch 16: 3 logical steps in the epoch
    assert micro["epsilon"] == pytest.approx(whole["epsilon"])
    a, b = whole["encoder"].state_dict(), micro["encoder"].state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5, rtol=1e-4) for k in a)
