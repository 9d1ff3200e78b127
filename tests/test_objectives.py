"""Every SSL objective: a few steps on synthetic data lower its loss and the encoder does not collapse;
plus the formula-level properties of each method (SSLMem paper §3 / appendix A.1, methods.md §2)."""
import pytest
import torch
import torch.nn.functional as F

from memlab.data.datasets import load_dataset
from memlab.objectives.losses import build_objective
from memlab.objectives.simclr import nt_xent
from memlab.objectives.vicreg import vicreg_loss
from memlab.engine.train import TrainConfig, build, train

RESNET = dict(model="resnet9", model_kw={"width": 0.125})
VIT = dict(model="vit_tiny", model_kw={"depth": 2, "embed_dim": 48, "num_heads": 3})
CASES = {
    "simclr": (RESNET, {}, "sgd", 0.06),
    "dino": (RESNET, {}, "adamw", 1e-3),
    "vicreg": (RESNET, {}, "sgd", 0.06),
    "simsiam": (RESNET, {}, "sgd", 0.06),
    "mae": (VIT, {}, "adamw", 1e-3),
    "supervised": (RESNET, {}, "sgd", 0.06),
    "aligned": (RESNET, {"base": "simclr", "lam": 0.3}, "sgd", 0.06),
}


@pytest.fixture(scope="module")
def data():
    d = load_dataset("synthetic", "train", n=128, seed=0)
    return d.images, d.labels


def rep_std(encoder, x) -> float:
    """Mean over dimensions of the across-sample std of the L2-normalised representation (0 = collapse)."""
    encoder.eval()
    with torch.no_grad():
        z = F.normalize(encoder.embed((x.float() / 255 - 0.5) / 0.25, rep="pooled"), dim=1)
    return float(z.std(0).mean())


@pytest.mark.parametrize("name", sorted(CASES))
def test_objective_lowers_its_loss_without_collapse(name, data):
    x, y = data
    model, okw, opt, lr = CASES[name]
    cfg = TrainConfig(**model, objective=name, objective_kw=okw, epochs=8, batch_size=32, optimizer=opt, lr=lr,
                      weight_decay=1e-4, warmup_epochs=0.5)
    out = train(cfg, x, y, device="cpu", progress=False)
    losses = [h["loss"] for h in out["history"]]
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < first, losses
    d = out["encoder"].embed(torch.zeros(2, 3, 32, 32)).shape[1]
    floor = 0.1 / d ** 0.5  # a collapsed encoder maps every image to (nearly) one vector: std ~ 0
    assert rep_std(out["encoder"], x) > floor


def test_vicreg_terms_match_the_formula():
    torch.manual_seed(0)
    z1, z2 = torch.randn(64, 8), torch.randn(64, 8)
    inv = ((z1 - z2) ** 2).sum(1).mean() / 8
    def var(z):
        return torch.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean()
    def cov(z):
        c = torch.cov(z.t())
        return (c ** 2).sum() - (c.diagonal() ** 2).sum()
    expect = 25 * inv + 25 * (var(z1) + var(z2)) + (cov(z1) + cov(z2)) / 8
    assert torch.allclose(vicreg_loss(z1, z2), expect, atol=1e-5)
    # identical, decorrelated unit-variance views: no invariance, variance or covariance penalty left
    z = torch.linalg.qr(torch.randn(256, 8))[0] * 256 ** 0.5
    z = z - z.mean(0)
    assert vicreg_loss(z, z, var_w=25, cov_w=0).item() < 0.1


def test_dino_teacher_is_an_ema_of_the_student_and_gets_no_gradient(data):
    x, _ = data
    cfg = TrainConfig(**RESNET, objective="dino", objective_kw={"momentum": 0.9}, optimizer="adamw", lr=1e-3)
    enc, obj = build(cfg)
    assert all(not p.requires_grad for p in obj.teacher.parameters())
    before = [p.detach().clone() for p in obj.teacher.parameters()]
    views = [(x[:16].float() / 255 - 0.5) / 0.25, (x[16:32].float() / 255 - 0.5) / 0.25]
    enc.train(), obj.train()
    opt = torch.optim.SGD([p for p in list(enc.parameters()) + list(obj.parameters()) if p.requires_grad], lr=0.1)
    obj.loss(enc, views, None).backward()
    assert all(p.grad is None for p in obj.teacher.parameters())
    opt.step()
    obj.after_step(enc)
    for b, t, s in zip(before, obj.teacher.parameters(), enc.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * s.detach(), atol=1e-6)
    assert obj.center.abs().sum() > 0  # the centre moved towards the teacher's batch mean


def test_dino_multicrop_uses_small_local_views(data):
    x, _ = data
    cfg = TrainConfig(**RESNET, objective="dino", objective_kw={"n_local": 2, "local_size": 16}, epochs=1,
                      batch_size=32, optimizer="adamw", lr=1e-3)
    seen = []
    enc, _ = build(cfg)
    out = train(cfg, x, None, device="cpu", progress=False,
                epoch_callback=lambda e: seen.append(e))
    assert seen == [1] and torch.isfinite(torch.tensor(out["history"][0]["loss"]))
    obj = build_objective("dino", 32, n_local=2, local_size=16)
    assert obj.n_local == 2 and obj.local_size == 16


def test_mae_keeps_token_order_and_scores_masked_patches_only():
    cfg = TrainConfig(**VIT, objective="mae", objective_kw={"mask_ratio": 0.75}, optimizer="adamw", lr=1e-3)
    enc, obj = build(cfg)
    keep = obj.masks(4, "cpu")
    assert keep.shape == (4, 16) and torch.equal(keep, keep.sort(1).values)  # 64 patches, 25% visible, sorted
    assert torch.equal(keep, obj.masks(4, "cpu"))  # a function of (seed, step)
    obj.after_step(enc)
    assert not torch.equal(keep, obj.masks(4, "cpu"))
    # the loss only sees masked patches: changing visible pixels' *targets* alone is impossible, so check
    # that a decoder predicting the target exactly on masked patches gives zero loss whatever it does elsewhere
    img = torch.randn(4, 3, 32, 32)
    target = obj.patchify(img)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    keep = obj.masks(4, "cpu")
    fake = target.clone()
    fake.scatter_(1, keep[..., None].expand(-1, -1, fake.shape[-1]), 1e3)  # garbage on visible patches
    obj.dec_pred.forward = lambda h: torch.cat([torch.zeros(4, 1, fake.shape[-1]), fake], 1)
    assert obj.loss(enc, [img], None).item() < 1e-8


def test_alignment_regulariser_interpolates_between_base_and_alignment(data):
    x, _ = data
    views = [(x[:16].float() / 255 - 0.5) / 0.25, (x[:16].flip(3).float() / 255 - 0.5) / 0.25]
    losses = {}
    for lam in (0.0, 0.5):   # lam = 1 (the push-apart term alone) is refused as an inverted objective
        cfg = TrainConfig(**RESNET, objective="aligned", objective_kw={"base": "simclr", "lam": lam})
        enc, obj = build(cfg)
        enc.eval(), obj.eval()
        losses[lam] = obj.loss(enc, views, None)
    enc, base = build(TrainConfig(**RESNET, objective="simclr"))
    enc.eval(), base.eval()
    assert torch.allclose(losses[0.0], base.loss(enc, views, None), atol=1e-6)
    h = [F.normalize(enc(v).flatten(1), dim=1) for v in views]
    align = (h[0] - h[1]).norm(dim=1).mean()
    assert torch.allclose(losses[0.5], 0.5 * base.loss(enc, views, None) - 0.5 * align, atol=1e-5)
    with pytest.raises(ValueError, match="lam"):
        build_objective("aligned", 32, lam=1.5)
    with pytest.raises(ValueError, match="unknown objective"):
        build_objective("byol", 32)


def test_supervised_encoder_excludes_the_classification_layer():
    enc, obj = build(TrainConfig(**RESNET, objective="supervised"), num_classes=10)
    assert not any(isinstance(m, torch.nn.Linear) for m in enc.modules())
    assert obj.classifier.out_features == 10
    assert nt_xent(torch.eye(4), torch.eye(4), 0.5).item() < nt_xent(torch.eye(4), torch.eye(4).flip(0), 0.5).item()


@pytest.mark.parametrize("objective, kw, message", [
    ("simclr", {"temperature": -0.5}, "simclr temperature = -0.5: .*inverts the loss"),
    ("simclr", {"temperature": 0}, "simclr temperature = 0: .*divides by zero"),
    ("simclr", {"temprature": 0.5}, r"no parameter\(s\) \['temprature'\]"),
    ("supervised", {"num_classes": 1}, "at least 2 classes"),
    ("dino", {"teacher_temp": 0.2}, "teacher must be sharper"),
    ("dino", {"momentum": 1.5}, "EMA momentum is in"),
    ("vicreg", {"sim_w": 0.0}, "vicreg sim_w = 0.0"),
    ("vicreg", {"var_w": -1.0}, "vicreg var_w = -1.0"),
    ("mae", {"mask_ratio": 1.0}, "mae mask_ratio = 1.0"),
    ("mae", {"decoder_dim": 100, "decoder_heads": 16}, "divisible by decoder_heads"),
    ("aligned", {"lam": 1.0}, "inverted objective"),
    ("aligned", {"base_kw": {"temperature": -1}}, "simclr temperature = -1"),
])
def test_meaningless_objective_settings_are_refused_before_compute(objective, kw, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(objective=objective, objective_kw=kw)   # a config: nothing is built or trained


def test_losses_refuse_a_batch_of_one_naming_the_batch_size():
    with pytest.raises(ValueError, match="VICReg needs a batch of >= 2 images.*got 1; raise batch_size"):
        vicreg_loss(torch.randn(1, 8), torch.randn(1, 8))
    with pytest.raises(ValueError, match="NT-Xent needs a batch of >= 2 images"):
        nt_xent(torch.randn(1, 8), torch.randn(1, 8), 0.5)
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        TrainConfig(batch_size=1)


def test_the_registry_maps_each_name_to_its_class_and_register_adds_a_method():
    from memlab.objectives.base import Objective
    from memlab.objectives.losses import OBJECTIVES, check_objective, register
    for name, cls in OBJECTIVES.items():
        assert type(build_objective(name, 8)) is cls
    assert set(OBJECTIVES) == {"simclr", "supervised", "simsiam", "dino", "vicreg", "mae", "aligned"}

    @register("toy")
    class Toy(Objective):
        def __init__(self, encoder_dim: int, scale: float = 1.0):
            super().__init__()
            self.scale = scale
    try:
        assert build_objective("toy", 8, scale=2.0).scale == 2.0
        with pytest.raises(ValueError, match="has no parameter.*'temperature'.*'scale'"):
            check_objective("toy", {"temperature": 0.5})
        assert type(build_objective("aligned", 8, base="toy").base) is Toy  # the regulariser wraps a new method
    finally:
        OBJECTIVES.pop("toy")


def test_the_pure_losses_on_constructed_cases():
    import math

    from memlab.objectives.alignment import alignment_distance
    from memlab.objectives.dino import dino_loss
    from memlab.objectives.mae import masked_mse
    from memlab.objectives.simsiam import simsiam_loss
    # DINO: two global teacher views (one-hot on classes 0 and 1), three student views; a view is never its own
    # target, so the pairs are (0,1), (0,2), (1,0), (1,2)
    t = [F.one_hot(torch.tensor([0]), 3).float(), F.one_hot(torch.tensor([1]), 3).float()]
    p = [torch.tensor([[0.5, 0.25, 0.25]]), torch.tensor([[0.1, 0.6, 0.3]]), torch.tensor([[0.2, 0.4, 0.4]])]
    want = -(math.log(0.1) + math.log(0.2) + math.log(0.25) + math.log(0.4)) / 4
    assert float(dino_loss(t, [q.log() for q in p])) == pytest.approx(want)
    # MAE: the error of the visible patches (a huge one here) does not count
    pred, target = torch.zeros(2, 4, 3), torch.ones(2, 4, 3)
    keep = torch.tensor([[0], [3]])
    target[0, 0], target[1, 3] = 100.0, 100.0
    assert float(masked_mse(pred, target, keep)) == pytest.approx(1.0)
    # SimSiam: -1 when predictions point along the targets, +1 when opposite
    z = torch.randn(5, 8)
    assert torch.allclose(simsiam_loss(2 * z, 3 * z, z, z), -torch.ones(5))
    assert torch.allclose(simsiam_loss(-z, -z, z, z), torch.ones(5))
    # alignment: scale-free, 0 for aligned views and 2 for opposite ones
    h = torch.randn(4, 2, 3, 3)
    assert float(alignment_distance(h, 5 * h)) == pytest.approx(0.0, abs=1e-6)
    assert float(alignment_distance(h, -h)) == pytest.approx(2.0)
