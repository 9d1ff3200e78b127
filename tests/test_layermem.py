"""LayerMem / Delta-LayerMem on constructed models (methods.md §3)."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from memlab.metrics import layermem as lmm
from memlab.metrics.sslmem import sslmem_scores
from memlab.augmentation.augment import Augmentation, ViewBank
from memlab.io.cache import Cache
from memlab.models.networks import Encoder, build_model


class ConstLayer(Encoder):
    """conv -> "const" (a learned tensor, independent of the input) -> conv on the first conv's output."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.const = nn.Parameter(torch.randn(1, 4, 8, 8))
        self.c2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.layer_names, self.out_dim = ["conv1", "const", "conv2"], 4

    def _layers(self, x):
        h = torch.relu(self.c1(x))
        h = yield "conv1", h
        c = yield "const", self.const.expand(x.shape[0], -1, -1, -1)
        h = yield "conv2", torch.relu(self.c2(h)) + 0 * c.mean()


def _bank(n_views=4, preset="simclr"):
    return ViewBank(Augmentation(preset, mean=(0.5,) * 3, std=(0.25,) * 3), n_views, seed=3)


def _images(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)


def _pair(factory):
    torch.manual_seed(0)
    f = factory().eval()
    torch.manual_seed(1)
    g = factory().eval()
    return f, g


def test_input_independent_layer_has_zero_layermem_and_others_do_not():
    f, g = _pair(ConstLayer)
    x = _images()
    res = lmm.layer_scores([f], [g], x, np.arange(len(x)), _bank(), layers=f.layer_names, n_pairs=2, rep="flat")
    raw = {l: r["raw"] for l, r in res.items()}
    for mode in lmm.MODES:
        lm = lmm.layermem(raw, mode=mode)
        assert torch.equal(lm["const"], torch.zeros(len(x)))  # exactly zero, no NaN from a zero range
        assert lm["conv1"].abs().max() > 0 and lm["conv2"].abs().max() > 0
        if mode == "layer":  # each layer on its own range: width exactly 1
            for l in ("conv1", "conv2"):
                assert float(lm[l].max() - lm[l].min()) == pytest.approx(1.0)
                assert torch.allclose(lm[l] * float(raw[l].max() - raw[l].min()), raw[l])
        else:
            assert max(float(v.max() - v.min()) for v in lm.values()) == pytest.approx(1.0)


def test_delta_sums_back_to_last_layer():
    g = torch.Generator().manual_seed(0)
    raw = {l: torch.randn(30, generator=g) * s for l, s in zip("abcde", (0.1, 0.5, 0.2, 1.0, 0.7))}
    for mode in lmm.MODES:
        lm = lmm.layermem(raw, mode=mode)
        d = lmm.delta(lm, list("abcde"))
        assert torch.equal(d["a"], lm["a"])
        assert torch.allclose(sum(d.values()), lm["e"], atol=1e-6)
        assert torch.allclose(d["c"], lm["c"] - lm["b"])
    # the table's Delta column sums back to its last LayerMem too, for every group
    lm = lmm.layermem(raw)
    grp = lmm.groups(lm["e"], n_random=10, k=5, seed=0)
    t = lmm.layer_table(lm, list("abcde"), grp)
    for gname in grp:
        assert t[f"Delta {gname}"].sum() == pytest.approx(t[f"LayerMem {gname}"].iloc[-1], abs=1e-6)


def test_layermem_rejects_bad_input():
    with pytest.raises(ValueError, match="mode"):
        lmm.layermem({"a": torch.ones(3)}, mode="per_layer")
    with pytest.raises(ValueError, match="cannot normalise"):
        lmm.layermem({"a": torch.full((4,), 0.3)})
    with pytest.raises(ValueError, match=r"layer\(s\) \['b'\] hold non-finite"):
        lmm.layermem({"a": torch.ones(2), "b": torch.tensor([0.0, float("nan")])})


def test_layermem_is_sslmems_normalisation_per_layer_and_one_range_when_shared():
    from memlab.metrics.sslmem import normalised_sslmem
    raw = {"a": torch.tensor([0.0, 1.0, 2.0]), "b": torch.tensor([0.0, 0.5, -0.25]), "c": torch.zeros(3)}
    per = lmm.layermem(raw)
    assert torch.allclose(per["a"], torch.tensor([0.0, 0.5, 1.0]))            # range 2
    assert torch.allclose(per["b"], torch.tensor([0.0, 2 / 3, -1 / 3]))       # range 0.75
    assert torch.equal(per["c"], torch.zeros(3))                              # input-independent: 0, not 0/0
    for l in ("a", "b"):
        assert torch.equal(per[l], normalised_sslmem(raw[l]))                 # the one SSLMem normaliser
    shared = lmm.layermem(raw, mode="shared")                                 # every layer on a's range, 2
    assert torch.allclose(shared["b"], raw["b"] / 2) and torch.equal(shared["a"], per["a"])
    # a reference subset sets the range; the other points may then leave [-1, 1]
    ref = lmm.layermem({"a": torch.tensor([0.0, 1.0, 4.0])}, reference=torch.tensor([0, 1]))
    assert torch.allclose(ref["a"], torch.tensor([0.0, 1.0, 4.0]))


def _manual_resnet9(enc, x, layer):
    """ResNet-9 truncated by hand, module by module (independent of Encoder._layers)."""
    h = enc.prep(x)
    l1 = enc.layer1.pool(enc.layer1.conv(h))
    out = {"prep": h, "layer1": l1, "layer1.res1": enc.layer1.res1(l1)}
    out["layer1.res2"] = l1 + enc.layer1.res2(out["layer1.res1"])
    out["layer2"] = enc.layer2.pool(enc.layer2.conv(out["layer1.res2"]))
    return out[layer]


class Manual(nn.Module):
    def __init__(self, enc, layer):
        super().__init__()
        self.enc, self.layer, self.layer_names = enc, layer, [layer]

    def forward_features(self, x, layers=None, pool=False):
        return {self.layer: _manual_resnet9(self.enc, x, self.layer)}


def test_one_pass_equals_one_truncated_model_per_layer():
    f, g = _pair(lambda: build_model("resnet9", width=0.125))
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    bank, idx = _bank(2, "crop"), np.arange(6)
    layers = f.layer_names
    one = lmm.layer_scores([f], [g], x, idx, bank, layers=layers, n_pairs=1, rep="flat", batch_size=8)
    assert list(one) == layers
    for l in layers:
        tr = lmm.layer_scores([lmm.Truncated(f, l)], [lmm.Truncated(g, l)], x, idx, bank, layers=[l], n_pairs=1,
                              rep="flat", batch_size=8)[l]
        for k in ("align_f", "align_g", "raw"):
            assert torch.allclose(one[l][k], tr[k], atol=1e-5), (l, k)
    for l in ("prep", "layer1.res1", "layer1.res2", "layer2"):  # a hand-built truncation agrees too
        man = sslmem_scores([Manual(f, l)], [Manual(g, l)], x, idx, bank, layers=[l], n_pairs=1, rep="flat")[l]
        assert torch.allclose(one[l]["raw"], man["raw"], atol=1e-5), l
    # different layers really do score differently (the comparison above is not vacuous)
    assert not torch.allclose(one["prep"]["raw"], one["layer3.res2"]["raw"])


def test_unknown_layer_fails_before_compute():
    f, g = _pair(lambda: build_model("resnet9", width=0.125))
    with pytest.raises(ValueError, match="unknown layer"):
        lmm.layer_scores([f], [g], _images(2), np.arange(2), _bank(), layers=["prep", "layer9"], n_pairs=1, rep="flat")


def test_vit_layers_are_the_sublayers_and_table_pairs_them():
    enc = build_model("vit_tiny", depth=3, embed_dim=24, num_heads=2)
    layers = lmm.layermem_layers(enc)
    assert layers == [f"block{i}.{s}" for i in range(3) for s in ("attn", "mlp")]
    assert lmm.layermem_layers(build_model("resnet9", width=0.125)) == build_model("resnet9", width=0.125).layer_names
    lm = {l: torch.arange(6.0) + i for i, l in enumerate(layers)}
    t = lmm.vit_sublayers(lmm.layer_table(lm, layers, {"random": torch.arange(6)}))
    assert list(t.block) == [0, 1, 2]
    assert np.allclose(t["LayerMem random (mlp)"] - t["LayerMem random (attn)"], 1.0)
    assert np.allclose(t["Delta random (mlp)"], 1.0)


def test_groups_rank_by_final_layer_and_are_seeded():
    s = torch.tensor([0.3, -0.2, 0.9, 0.1, 0.5, -0.7, 0.0, 0.2])
    g = lmm.groups(s, n_random=5, k=2, seed=0)
    assert sorted(g["top"].tolist()) == [2, 4] and sorted(g["least"].tolist()) == [1, 5]
    assert torch.equal(g["random"], lmm.groups(s, n_random=5, k=2, seed=0)["random"])
    assert not torch.equal(g["random"], lmm.groups(s, n_random=5, k=2, seed=1)["random"])
    with pytest.raises(ValueError, match="k=5"):
        lmm.groups(s, n_random=5, k=5, seed=0)


def test_consistency_tau_overlap_and_gaps():
    a = torch.arange(50.0)
    lm = {"l1": a, "l2": a + 0.5, "l3": -a, "l4": a.flip(0)}
    c = lmm.consistency(lm, ["l1", "l2", "l3", "l4"], k=10).set_index(["a", "b"])
    assert c.loc[("l1", "l2"), "kendall_tau"] == pytest.approx(1) and c.loc[("l1", "l2"), "top10"] == 1
    assert c.loc[("l1", "l3"), "kendall_tau"] == pytest.approx(-1) and c.loc[("l1", "l3"), "top10"] == 0
    assert c.loc[("l1", "l4"), "gap"] == 3 and c.loc[("l2", "l3"), "gap"] == 1
    ad = lmm.adjacent_vs_distant(c.reset_index(), 10, 2).set_index("pairs")
    assert ad.loc["adjacent (gap 1)", "n pairs"] == 3 and ad.loc["distant (gap >= 2)", "n pairs"] == 3


def test_cached_layer_scores_reuse_and_determinism(tmp_path, monkeypatch):
    from types import SimpleNamespace
    f, g = _pair(lambda: build_model("resnet9", width=0.125))
    data = SimpleNamespace(name="toy", images=torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8,
                                                            generator=torch.Generator().manual_seed(5)))
    tf, tg = SimpleNamespace(encoder=f, key="f"), SimpleNamespace(encoder=g, key="g")
    cache = Cache(tmp_path)
    kw = dict(layers=["prep", "layer2"], n_pairs=1, rep="flat", progress=False)
    r1 = lmm.cached_layer_scores(cache, [tf], [tg], data, [0, 2, 4], _bank(), **kw)
    r2 = lmm.cached_layer_scores(Cache(tmp_path / "other"), [tf], [tg], data, [0, 2, 4], _bank(), **kw)
    assert all(torch.equal(r1[l]["raw"], r2[l]["raw"]) for l in r1)  # same inputs, same numbers
    monkeypatch.setattr(lmm, "layer_scores", lambda *a, **k: pytest.fail("recomputed a cached entry"))
    r3 = lmm.cached_layer_scores(cache, [tf], [tg], data, [0, 2, 4], _bank(), **kw)
    assert all(torch.equal(r1[l]["raw"], r3[l]["raw"]) for l in r1)
