"""Activation maximisation (Sadrtdinov et al. 2021, appendix C.2)."""
import torch

from memlab.experiments.actmax import maximize_channels, to_display
from memlab.models.networks import build_model


def test_gradient_ascent_raises_the_channel_activation_and_leaves_weights_alone():
    torch.manual_seed(0)
    enc = build_model("cnn", channels=(4, 8, 8, 8)).eval()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    ch = [1, 3]
    x0 = maximize_channels(enc, "block2", ch, steps=1, lr=0.0, seed=0)  # lr 0: the starting noise
    x = maximize_channels(enc, "block2", ch, steps=30, lr=0.05, seed=0)
    with torch.no_grad():
        act = lambda im: enc.forward_features(im, ["block2"])["block2"][torch.arange(2), torch.tensor(ch)].mean((1, 2))  # noqa: E731
        assert (act(x) > act(x0) + 0.1).all()
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    assert all(p.requires_grad for p in enc.parameters())


def test_display_is_standardised_then_logistic():
    x = torch.randn(3, 3, 8, 8) * 5 + 2
    d = to_display(x)
    assert d.min() > 0 and d.max() < 1
    z = torch.logit(d[0])
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-3
