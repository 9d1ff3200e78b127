"""Benign memorization (Anagnostidis et al. 2023; methods.md section 5): labels, training sets, training,
invariance, the MSE = Inv + Bias identity (appendix B) and Definition 4.1."""
import numpy as np
import pytest
import torch

from memlab.augmentation.augment import Augmentation
from memlab.augmentation.randaugment import RandAugment
from memlab.engine import benign, benign_sets
from memlab.engine.benign import BenignConfig, train_benign
from memlab.engine.benign_sets import fixed_views_set, iid_set, make_labels, noisy_mask, plain_set
from memlab.metrics.benign import knn_noise, layer_invariance, mse_decomposition, normalized_invariance, verdict
from memlab.metrics.probes import knn_loo_accuracy
from memlab.models.benign_net import BenignNet

TINY = dict(model="cnn", model_kw={"channels": [8, 16, 16, 32]}, hidden=64, batch_size=16, eval_every=1)


def _images(n, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# ------------------------------------------------------------------------------------------ labels
@pytest.mark.parametrize("noise", [0.0, 0.1, 0.37, 0.5, 1.0])
def test_label_noise_fraction_is_exact(noise):
    clean = torch.arange(1000) % 10
    lab = make_labels(clean, noise, 10, seed=3)
    m = noisy_mask(1000, noise, seed=3)
    assert int(m.sum()) == round(noise * 1000)
    assert torch.equal(lab[~m], clean[~m])           # the others keep their clean label
    if noise >= 0.37:                                 # randomised labels: uniform, so mostly changed
        changed = (lab[m] != clean[m]).float().mean()
        assert 0.8 < changed < 0.98                   # expected 1 - 1/C = 0.9
        assert set(lab[m].tolist()) == set(range(10))


def test_random_labels_are_seeded_and_per_sample_is_a_permutation():
    clean = torch.zeros(200, dtype=torch.long)
    assert torch.equal(make_labels(clean, 1.0, 7, 1), make_labels(clean, 1.0, 7, 1))
    assert not torch.equal(make_labels(clean, 1.0, 7, 1), make_labels(clean, 1.0, 7, 2))
    per = make_labels(clean, 1.0, 0, 5, per_sample=True)
    assert sorted(per.tolist()) == list(range(200))
    with pytest.raises(ValueError, match="noise"):
        make_labels(clean, 1.5, 10, 0)
    with pytest.raises(ValueError, match="per_sample"):
        make_labels(clean, 0.5, 10, 0, per_sample=True)


def test_fixed_views_labels_preserved_or_not():
    imgs = _images(20)
    img_labels = make_labels(torch.zeros(20, dtype=torch.long), 1.0, 10, 0)
    pres = fixed_views_set(imgs, 4, 10, seed=0, image_labels=img_labels)
    assert len(pres) == 80 and torch.equal(pres.labels, img_labels[pres.src])
    free = fixed_views_set(imgs, 4, 10, seed=0)
    by_image = free.labels.view(4, 20)               # items are (i, k) with k major
    assert (by_image != by_image[0]).any(0).float().mean() > 0.5  # views of an image get their own labels


def test_fixed_views_are_fixed_across_epochs_and_nested_in_B():
    imgs = _images(6)
    aug = Augmentation("simclr")
    s4, s8 = fixed_views_set(imgs, 4, 10, 0), fixed_views_set(imgs, 8, 10, 0)
    items = torch.arange(24)
    a = benign_sets.batch_inputs(s4, items, aug, 0, epoch=0, device="cpu")
    b = benign_sets.batch_inputs(s4, items, aug, 0, epoch=7, device="cpu")
    assert torch.equal(a, b) and torch.equal(a, benign_sets.fit_inputs(s4, items, aug, 0, "cpu"))
    assert torch.equal(a, benign_sets.batch_inputs(s8, items, aug, 0, epoch=3, device="cpu"))  # first 4 views shared
    assert not torch.allclose(a[:6], a[6:12])        # different views of the same images


def test_iid_groups_are_same_class_disjoint_and_drawn_per_epoch():
    labels = torch.arange(200) % 4
    imgs = _images(200)
    anchors = torch.arange(8)
    ts = iid_set(imgs, labels, anchors, 5, torch.zeros(8, dtype=torch.long), 2, seed=0)
    g = ts.groups
    assert torch.equal(g[:, 0], anchors) and (labels[g] == labels[anchors][:, None]).all()
    assert len(set(g.flatten().tolist())) == g.numel()
    aug = Augmentation("none")
    xs = [benign_sets.batch_inputs(ts, torch.arange(8), aug, 0, e, "cpu") for e in range(6)]
    assert any(not torch.equal(xs[0], x) for x in xs[1:])
    assert torch.equal(xs[2], benign_sets.batch_inputs(ts, torch.arange(8), aug, 0, 2, "cpu"))
    with pytest.raises(ValueError, match="not enough"):
        iid_set(imgs, labels, anchors, 60, torch.zeros(8, dtype=torch.long), 2, seed=0)


def test_bad_configuration_is_rejected_before_compute():
    with pytest.raises(ValueError, match="loss"):
        BenignConfig(loss="hinge")
    with pytest.raises(ValueError, match="unknown augmentation"):
        BenignConfig(aug="nope")
    with pytest.raises(ValueError, match="magnitude"):
        BenignConfig(aug="randaugment", aug_kw={"magnitude": 40})
    with pytest.raises(ValueError, match="labels outside"):
        plain_set(_images(4), torch.tensor([0, 1, 2, 9]), 3)


# ------------------------------------------------------------------------------------------ training
def test_labels_are_kept_by_every_augmentation_and_epoch(monkeypatch, cache):
    imgs = _images(32)
    ts = plain_set(imgs, make_labels(torch.zeros(32, dtype=torch.long), 1.0, 10, 0), 10)
    seen = []
    orig_inputs, orig_loss = benign.batch_inputs, benign.loss_fn

    def rec_inputs(ts_, items, aug, seed, epoch, device):
        x = orig_inputs(ts_, items, aug, seed, epoch, device)
        seen.append({"items": items.clone(), "epoch": epoch, "x": x.clone()})
        return x

    def rec_loss(kind, out, targets):
        seen[-1]["targets"] = targets.argmax(1).clone()
        return orig_loss(kind, out, targets)

    monkeypatch.setattr(benign, "batch_inputs", rec_inputs)
    monkeypatch.setattr(benign, "loss_fn", rec_loss)
    train_benign(BenignConfig(**TINY, aug="simclr", max_epochs=3, fit_target=1.0), ts, cache=cache,
                 device="cpu", progress=False)
    assert len(seen) == 6 and {s["epoch"] for s in seen} == {0, 1, 2}
    views = {}
    for s in seen:
        assert torch.equal(s["targets"], ts.labels[s["items"]])
        for i, x in zip(s["items"].tolist(), s["x"]):
            views.setdefault(i, []).append(x)
    assert all(not torch.allclose(v[0], v[1]) for v in views.values() if len(v) > 1)  # fresh augmentation


def test_without_augmentation_a_network_fits_random_labels_on_a_tiny_set(cache):
    imgs = _images(32)
    ts = plain_set(imgs, make_labels(torch.zeros(32, dtype=torch.long), 1.0, 10, 0), 10)
    cfg = BenignConfig(**TINY, aug="none", lr=3e-3, max_epochs=60)
    run = train_benign(cfg, ts, cache=cache, device="cpu", progress=False)
    assert run.stopped == "fitted" and run.fit == 1.0 and run.epochs < 60
    assert run.history[0]["fit"] < 0.5                # not fitted at the start: it was learnt
    again = train_benign(cfg, ts, cache=cache, device="cpu", progress=False)
    assert again.from_cache and again.history == run.history


def test_same_seed_same_numbers_and_resume_equals_uninterrupted(tmp_path):
    from memlab.io.cache import Cache
    imgs = _images(16)
    ts = plain_set(imgs, make_labels(torch.zeros(16, dtype=torch.long), 1.0, 10, 0), 10)
    cfg = BenignConfig(**TINY, aug="crop", mixup=1.0, loss="mse", max_epochs=3)
    a = train_benign(cfg, ts, cache=Cache(tmp_path / "a"), device="cpu", progress=False)

    class Stop(Exception):
        pass

    def boom(epoch):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train_benign(cfg, ts, cache=Cache(tmp_path / "b"), device="cpu", progress=False, epoch_callback=boom)
    b = train_benign(cfg, ts, cache=Cache(tmp_path / "b"), device="cpu", progress=False)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history] and a.fit == b.fit
    for (k, v), w in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(v, w), k


# ------------------------------------------------------------------------------------------ network and probes
def test_layer_outputs_cover_stem_to_projector_output():
    torch.manual_seed(0)
    net = BenignNet("resnet9", {"width": 0.125}, 32, 7).eval()
    x = torch.randn(3, 3, 32, 32)
    out = net.layer_outputs(x)
    assert list(out) == net.encoder.layer_names + ["embedding", "P", "O"]
    assert torch.allclose(out["O"], net(x), atol=1e-6) and out["P"].shape == (3, 32) and (out["P"] >= 0).all()
    assert out["prep"].shape == (3, 8 * 32 * 32)
    assert list(net.layer_outputs(x, ["O", "layer2"])) == ["layer2", "O"]
    with pytest.raises(ValueError, match="unknown layer"):
        net.layer_outputs(x, ["fc"])


def test_knn_leave_one_out_ignores_the_point_itself():
    x = torch.randn(40, 8)
    assert knn_loo_accuracy(x, torch.arange(40), k=5) == 0.0      # a label of its own: never predicted
    clusters = torch.cat([torch.randn(20, 8) * 0.01 + 3 * torch.eye(8)[0], torch.randn(20, 8) * 0.01 + 3 * torch.eye(8)[1]])
    assert knn_loo_accuracy(clusters, torch.tensor([0] * 20 + [1] * 20), k=5) == 1.0


# ------------------------------------------------------------------------------------------ invariance
def test_normalized_invariance_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g, dtype=torch.float64)
    pairs = [(torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64))
             for _ in range(3)]
    got = normalized_invariance(base, pairs)
    for i in range(6):
        num = np.mean([float(((a[i] - b[i]) ** 2).sum()) for a, b in pairs])
        den = np.mean([float(((base[i] - base[j]) ** 2).sum()) for j in range(6) if j != i])
        assert got[i].item() == pytest.approx(num / den, rel=1e-9)
    assert torch.allclose(normalized_invariance(3 * base, [(3 * a, 3 * b) for a, b in pairs]), got)  # scale-free
    assert torch.equal(normalized_invariance(base, [(base, base)]), torch.zeros(6, dtype=torch.float64))
    assert torch.isnan(normalized_invariance(torch.ones(4, 3), [(torch.zeros(4, 3), torch.ones(4, 3))])).all()


def test_layer_invariance_is_zero_without_augmentation_and_positive_with():
    torch.manual_seed(0)
    net = BenignNet("resnet9", {"width": 0.125}, 16, 5).eval()
    imgs = _images(8)
    none = layer_invariance(net, imgs, Augmentation("none"), 2)
    assert set(none) == set(net.layer_names) and all(v == 0 for v in none.values())
    sim = layer_invariance(net, imgs, Augmentation("simclr"), 2)
    assert all(v > 0 for v in sim.values())


# ------------------------------------------------------------------------------------------ appendix B
def test_mse_equals_inv_plus_bias_on_random_and_on_network_outputs():
    g = torch.Generator().manual_seed(1)
    out, y = torch.randn(7, 5, 4, generator=g), torch.randn(7, 4, generator=g)
    d = mse_decomposition(out, y)
    assert d["mse"] == pytest.approx(d["inv"] + d["bias"], rel=1e-12)
    inv = sum(float(((out[i, a] - out[i, b]) ** 2).sum()) for i in range(7) for a in range(5) for b in range(5))
    assert d["inv"] == pytest.approx(inv / (2 * 7 * 25), rel=1e-9)
    same = mse_decomposition(out[:, :1].repeat(1, 5, 1), y)
    assert same["inv"] == 0 and same["mse"] == pytest.approx(same["bias"])
    # a real batch: B augmentations of n images through f, one-hot random labels; Lsuper = the MSE training loss
    torch.manual_seed(0)
    net = BenignNet("resnet9", {"width": 0.125}, 16, 10).eval()
    aug, imgs = Augmentation("simclr"), _images(6)
    with torch.no_grad():
        o = torch.stack([net(aug(imgs, np.arange(6), 0, s)) for s in range(4)], 1)
    t = torch.nn.functional.one_hot(make_labels(torch.zeros(6, dtype=torch.long), 1.0, 10, 0), 10).float()
    d = mse_decomposition(o, t)
    assert d["mse"] == pytest.approx(d["inv"] + d["bias"], rel=1e-10) and d["inv"] > 0
    assert d["mse"] == pytest.approx(float(benign.loss_fn("mse", o.reshape(24, 10), t.repeat_interleave(4, 0))),
                                     rel=1e-5)
    with pytest.raises(ValueError, match="outputs must be"):
        mse_decomposition(o[0], t)


# ------------------------------------------------------------------------------------------ Definition 4.1
def test_verdict_follows_definition_4_1():
    assert verdict(1.0, 0.40, 0.28) == "benign"
    assert verdict(1.0, 0.26, 0.28) == "malign"
    assert verdict(1.0, 0.29, 0.28, tol=knn_noise(0.28, 1000)) == "malign"   # within noise: no improvement
    assert verdict(0.95, 0.40, 0.28).startswith("not a memorisation")
    assert knn_noise(0.3, 1000) == pytest.approx(2 * (2 * 0.3 * 0.7 / 1000) ** 0.5)


# ------------------------------------------------------------------------------------------ RandAugment
def test_randaugment_is_reproducible_and_stronger_with_magnitude():
    imgs = _images(64)
    idx = np.arange(64)
    ra = RandAugment(2, 15)
    assert torch.equal(ra(imgs, idx, 0, 3), ra(imgs, idx, 0, 3))
    assert not torch.equal(ra(imgs, idx, 0, 3), ra(imgs, idx, 0, 4))
    dev = lambda m: float((RandAugment(2, m)(imgs, idx, 0, 1) - ra.normalize(imgs)).abs().mean())  # noqa: E731
    assert dev(2) < dev(15) < dev(30)
    with pytest.raises(ValueError, match="magnitude"):
        RandAugment(2, 31)


def test_streamed_layer_invariance_equals_the_whole_batch_definition():
    """Chunks of 3 images give the per-layer mean of normalized_invariance over all 8 at once (Eq. 2)."""
    import numpy as np

    from memlab.streams import BENIGN_INVARIANCE
    torch.manual_seed(0)
    net = BenignNet("resnet9", {"width": 0.125}, 16, 5).eval()
    imgs, aug = _images(8), Augmentation("simclr")
    idx = np.arange(8)
    with torch.no_grad():
        base = net.layer_outputs(aug.normalize(imgs), net.layer_names)
        views = [(net.layer_outputs(aug(imgs, idx, 0, BENIGN_INVARIANCE + 2 * p), net.layer_names),
                  net.layer_outputs(aug(imgs, idx, 0, BENIGN_INVARIANCE + 2 * p + 1), net.layer_names))
                 for p in range(2)]
    whole = {l: float(torch.nanmean(normalized_invariance(base[l], [(a[l], b[l]) for a, b in views])))
             for l in net.layer_names}
    for chunk in (3, 8, 100):
        got = layer_invariance(net, imgs, aug, 2, chunk=chunk)
        assert got.keys() == whole.keys()
        # float32 convolutions of a chunk and of the whole batch agree to about 1e-7, not bit for bit
        assert all(abs(got[l] - whole[l]) <= 1e-5 * abs(whole[l]) for l in whole), (chunk, got, whole)


def test_micro_batches_accumulate_the_whole_batch_step_and_keep_old_keys(tmp_path):
    """Random labels with mixup and MSE, batch 16 in parts of 4 (and of 5: unequal parts) against the whole batch:
    same weights to float tolerance (a model without BatchNorm, which normalises per part); micro_batch 0 keeps
    the cache key of before the field existed."""
    from memlab.io.cache import Cache
    imgs = _images(32)
    ts = plain_set(imgs, make_labels(torch.zeros(32, dtype=torch.long), 1.0, 10, 0), 10)
    kw = {**TINY, "model": "resnet9", "model_kw": {"width": 0.125, "norm": "group"}, "aug": "crop", "mixup": 1.0, "loss": "mse",
          "max_epochs": 2, "optimizer": "sgd", "lr": 0.05}
    runs = [train_benign(BenignConfig(**kw, micro_batch=m), ts, cache=Cache(tmp_path / str(m)), device="cpu",
                         progress=False) for m in (0, 4, 5)]
    for other in runs[1:]:
        assert other.history[-1]["loss"] == pytest.approx(runs[0].history[-1]["loss"], rel=1e-5)
        for (k, v), w in zip(runs[0].net.state_dict().items(), other.net.state_dict().values()):
            assert torch.allclose(v, w, rtol=1e-4, atol=1e-6), k
    assert "micro_batch" not in benign._key(BenignConfig(**kw), ts, None)["benign"]
    assert benign._key(BenignConfig(**kw, micro_batch=4), ts, None)["benign"]["micro_batch"] == 4
    with pytest.raises(ValueError, match="micro_batch"):
        BenignConfig(**kw, micro_batch=-1)
