import pytest
import torch

from memlab.models.networks import MODELS, Encoder, build_model

# small configs for speed; (name, kwargs, expected final shape for 32x32 input without batch dim)
SMALL = {
    "resnet9": (dict(width=0.25), (128, 4, 4)),
    "resnet18": (dict(width=0.125), (64, 4, 4)),
    "resnet34": (dict(width=0.125), (64, 4, 4)),
    "resnet50": (dict(width=0.125), (256, 4, 4)),
    "cnn": (dict(channels=(8, 16, 16, 32)), (32, 2, 2)),
    "vgg11": (dict(width=0.125), (64, 1, 1)),
    "vgg16": (dict(width=0.125), (64, 1, 1)),
    "vit_tiny": (dict(depth=2, embed_dim=32, num_heads=2), (65, 32)),
    "wrn50_2": (dict(width=0.0625), (128, 4, 4)),
}


def make(name, seed=0):
    torch.manual_seed(seed)
    m = build_model(name, **SMALL[name][0])
    return m.eval()


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(123)
    return torch.randn(2, 3, 32, 32)


def test_registry_covers_all():
    assert set(SMALL) == set(MODELS)


def test_unknown_model():
    with pytest.raises(ValueError, match="resnet9"):
        build_model("resnet1000")


def test_resnet9_layer_names():
    m = build_model("resnet9", width=0.25)
    assert m.layer_names == ["prep", "layer1", "layer1.res1", "layer1.res2", "layer2",
                             "layer3", "layer3.res1", "layer3.res2"]


def test_resnet_layer_names():
    m = build_model("resnet18", width=0.125)
    assert m.layer_names == ["stem"] + [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    m = build_model("resnet50", width=0.125)
    assert m.layer_names == ["stem"] + [f"layer{i}.{j}" for i, n in zip(range(1, 5), (3, 4, 6, 3)) for j in range(n)]


def test_cnn_vit_layer_names():
    assert build_model("cnn").layer_names == ["block1", "block2", "block3", "block4"]
    m = make("vit_tiny")
    assert m.layer_names == ["patch_embed", "block0.attn", "block0.mlp", "block1.attn", "block1.mlp", "norm"]


@pytest.mark.parametrize("name", list(SMALL))
def test_features_consistency(name, x):
    m = make(name)
    shape = SMALL[name][1]
    with torch.no_grad():
        feats = m.forward_features(x)
        pooled = m.forward_features(x, pool=True)
        out = m(x)
    assert list(feats) == m.layer_names
    assert list(pooled) == m.layer_names
    assert out.shape == (2, *shape)
    assert torch.equal(feats[m.layer_names[-1]], out)
    for n, h in feats.items():
        assert h.shape[0] == 2
        dims = (2, 3) if h.dim() == 4 else (1,)
        torch.testing.assert_close(pooled[n], h.mean(dim=dims))
    # subset request: keys in network order, same values
    sub = m.forward_features(x, layers=[m.layer_names[2], m.layer_names[0]])
    assert list(sub) == [m.layer_names[0], m.layer_names[2]]
    torch.testing.assert_close(sub[m.layer_names[2]], feats[m.layer_names[2]])
    # embeddings
    zp, zf = m.embed(x), m.embed(x, rep="flat")
    assert zp.shape == (2, m.out_dim)
    assert zf.shape == (2, out.numel() // 2)
    torch.testing.assert_close(zf, out.flatten(1))
    with pytest.raises(ValueError):
        m.embed(x, rep="nope")


@pytest.mark.parametrize("name", list(SMALL))
def test_unknown_layer(name, x):
    m = make(name)
    with pytest.raises(ValueError, match=m.layer_names[0]):
        m.forward_features(x, layers=["nope"])


def test_real_layout_shapes():
    # full-width resnet9 and vit_tiny on a single image: cheap enough, checks real dims
    torch.manual_seed(0)
    xi = torch.randn(1, 3, 32, 32)
    m = build_model("resnet9").eval()
    with torch.no_grad():
        f = m.forward_features(xi)
    assert [tuple(v.shape[1:]) for v in f.values()] == [
        (64, 32, 32), (128, 16, 16), (128, 16, 16), (128, 16, 16), (256, 8, 8),
        (512, 4, 4), (512, 4, 4), (512, 4, 4)]
    assert m.out_dim == 512
    v = build_model("vit_tiny").eval()
    assert len(v.layer_names) == 2 + 2 * 12 and v.out_dim == 192
    with torch.no_grad():
        assert v(xi).shape == (1, 65, 192)
    assert build_model("cnn")(torch.randn(2, 3, 32, 32)).shape == (2, 256, 2, 2)


def test_width_rounding():
    m = build_model("resnet9", width=0.25)
    assert [m.prep[0].out_channels, m.layer1.conv[0].out_channels, m.layer2.conv[0].out_channels,
            m.layer3.conv[0].out_channels] == [16, 32, 64, 128]
    assert build_model("resnet9", width=0.001).out_dim == 1
    assert build_model("resnet50", width=0.5).out_dim == 1024


def test_other_input_size():
    m = make("resnet9")
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 128, 8, 8)


def _nparams(m):
    return sum(p.numel() for p in m.parameters())


def test_param_counts():
    n18 = _nparams(build_model("resnet18"))
    assert 11.10e6 < n18 < 11.25e6  # kuangliu ResNet18 = 11.17M incl. 5k fc
    assert 6.5e6 < _nparams(build_model("resnet9")) < 6.6e6
    assert 23.4e6 < _nparams(build_model("resnet50")) < 23.6e6


@pytest.mark.parametrize("name, late", [
    ("resnet9", lambda m: m.layer3.res2),
    ("resnet18", lambda m: m.layer4[1]),
    ("cnn", lambda m: m.blocks[3]),
    ("vit_tiny", lambda m: m.vit.blocks[1].mlp),
])
def test_early_stop(name, late, x):
    m = make(name)
    calls = []
    late(m).register_forward_hook(lambda *a: calls.append(1))
    m.forward_features(x, layers=m.layer_names[0])
    m.forward_features(x, layers=[m.layer_names[1]], pool=True)
    assert calls == []
    m.forward_features(x, layers=[m.layer_names[-1]])
    assert calls == [1]


def test_resnet9_residual(x):
    m = make("resnet9")
    cap = {}
    m.layer1.res2.register_forward_hook(lambda mod, i, o: cap.__setitem__("branch", o.clone()))
    with torch.no_grad():
        f = m.forward_features(x, layers=["layer1", "layer1.res1", "layer1.res2"])
        torch.testing.assert_close(f["layer1.res2"], f["layer1"] + cap["branch"])
        torch.testing.assert_close(cap["branch"], m.layer1.res2(f["layer1.res1"]))
        torch.testing.assert_close(f["layer1.res1"], m.layer1.res1(f["layer1"]))
        f3 = m.forward_features(x, layers=["layer3", "layer3.res2"])
        torch.testing.assert_close(f3["layer3.res2"], f3["layer3"] + m.layer3.res2(m.layer3.res1(f3["layer3"])))


def test_vit_matches_timm(x):
    m = make("vit_tiny")
    with torch.no_grad():
        ours = m(x)
        ref = m.vit.forward_features(x)
        ref_blk = m.vit.blocks[0](m.vit.norm_pre(m.vit.patch_drop(m.vit._pos_embed(m.vit.patch_embed(x)))))
        f = m.forward_features(x, layers=["block0.mlp"])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(f["block0.mlp"], ref_blk, atol=1e-5, rtol=1e-5)


def test_vit_deterministic_and_pooling(x):
    m = make("vit_tiny")
    with torch.no_grad():
        a, b = m(x), m(x)
        assert torch.equal(a, b)
        torch.testing.assert_close(m.embed(x), a[:, 1:].mean(1))
    torch.manual_seed(0)
    mt = build_model("vit_tiny", depth=2, embed_dim=32, num_heads=2, pool="token").eval()
    with torch.no_grad():
        torch.testing.assert_close(mt.embed(x), mt(x)[:, 0])
    # fixed token order: cls first, then patches row-major (no shuffling)
    with torch.no_grad():
        pe = m.forward_features(x, layers="patch_embed")["patch_embed"]
        patches = m.vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
        torch.testing.assert_close(pe[:, 0], (m.vit.cls_token + m.vit.pos_embed[:, :1])[0].expand(2, -1))
        torch.testing.assert_close(pe[:, 1:], patches + m.vit.pos_embed[:, 1:])


def test_gradients_flow(x):
    m = make("resnet9").train()
    z = m.embed(x)
    z.sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    assert isinstance(m, Encoder)


@pytest.mark.parametrize("name", ["resnet9", "resnet18"])
def test_groupnorm_variant_has_no_batch_statistics(name):
    torch.manual_seed(0)
    m = build_model(name, width=0.125, norm="group")
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    assert any(isinstance(x, torch.nn.GroupNorm) for x in m.modules())
    x = torch.randn(3, 3, 32, 32)
    m.train()
    single = m(x[:1])
    assert torch.allclose(m(x)[:1], single, atol=1e-5)  # a sample's output does not depend on the batch
    with pytest.raises(ValueError, match="norm"):
        build_model(name, width=0.125, norm="instance")


def test_vgg_is_torchvisions_configuration_cut_at_its_max_pools():
    from torchvision.models.vgg import cfgs
    from memlab.models.networks import width_kw
    m = build_model("vgg16")
    assert m.layer_names == ["block1", "block2", "block3", "block4", "block5"] and m.out_dim == 512
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [v for v in cfgs["D"] if v != "M"]    # VGG-16's 13 convolutions
    assert sum(isinstance(c, torch.nn.BatchNorm2d) for c in m.modules()) == 13
    half = build_model("vgg11", width=0.5)
    assert [c.out_channels for c in half.modules() if isinstance(c, torch.nn.Conv2d)] == [32, 64, 128, 128, 256, 256,
                                                                                          256, 256]
    assert width_kw("vgg16", 0.5) == {"width": 0.5} and width_kw("vit_tiny", 0.5) == {}
    with pytest.raises(ValueError, match="depth"):
        from memlab.models.vgg import VGG
        VGG(12)


def test_wrn50_2_has_twice_resnet50s_inner_width_and_a_small_image_stem():
    m, r50 = build_model("wrn50_2", width=0.125), build_model("resnet50", width=0.125)
    assert m.layer_names == r50.layer_names and m.out_dim == r50.out_dim == 256
    inner = lambda enc: [b.conv2.out_channels for b in enc.layer1]       # noqa: E731 -- the 3x3 convolutions
    assert inner(m) == [2 * c for c in inner(r50)] == [16, 16, 16]
    full = build_model("wrn50_2")
    assert sum(p.numel() for p in full.parameters()) == pytest.approx(66.8e6, rel=0.01)   # WRN-50-2 without fc
    assert full.stem[0].stride == (1, 1) and full.stem[0].kernel_size == (3, 3)
