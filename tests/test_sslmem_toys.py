"""Notebook 02's intuition toys (memlab.experiments.sslmem_toys; SSLMem paper, appendix D.3, Figs. 10 and 11)."""
import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402
import torch  # noqa: E402

from memlab.experiments import sslmem_toys as toys  # noqa: E402
from memlab.experiments.common import parameters  # noqa: E402
from memlab.experiments.sslmem import SSLMemParams  # noqa: E402
from memlab.io.params import ParameterError  # noqa: E402
from memlab.io.report import Report  # noqa: E402
from memlab.objectives.alignment import alignment_distance  # noqa: E402
from memlab.streams import SSLMemToySeed  # noqa: E402
from test_experiments_sslmem import values  # noqa: E402

SMOKE = toys.ToyConfig(steps=200, seed=0, encoders=2, view_pairs=16)   # the smoke profile's toy settings


@pytest.fixture(scope="module")
def plane():
    return toys.plane_toy(SMOKE)


@pytest.fixture(scope="module")
def line():
    return toys.line_toy(SMOKE)


def test_fig11_outliers_are_memorised_and_cluster_points_are_not(plane):
    lf, lg = plane.align[0].mean(0), plane.align[1].mean(0)
    assert plane.outlier.sum() == 2 and plane.x.shape == (2 * toys.PLANE_N + 2, 2)
    assert (lf[plane.outlier] < lg[plane.outlier]).all()           # f, trained on them, aligns the outliers better
    m = plane.m
    assert (m[plane.outlier] > 0.1).all()
    assert m[plane.outlier].min() > m[~plane.outlier].mean() + 0.1
    assert m[~plane.outlier].abs().mean() < 0.1                      # shared points: about 0
    t = plane.table()
    assert list(t["points"]) == ["cluster points", "outliers"] and list(t["n"]) == [2 * toys.PLANE_N, 2]
    # the heatmaps: g's alignment loss at the outliers' grid cells is above f's
    for p in plane.x[plane.outlier]:
        j, i = (torch.argmin((plane.grid - c).abs()) for c in p)
        assert plane.maps[1, i, j] > plane.maps[0, i, j]


def test_fig10_an_outlier_scores_higher_than_an_inlier(line):
    t = line.table().set_index("case")
    assert t.loc["outlier", "SSLMem m(x)"] > t.loc["inlier", "SSLMem m(x)"] + 0.1
    assert abs(t.loc["inlier", "SSLMem m(x)"]) < 0.05                # neighbours hold g aligned around an inlier
    assert t.loc["outlier", "L_align(f, x)"] < t.loc["outlier", "L_align(g, x)"]
    assert line.theta.shape == (3, SMOKE.encoders, len(line.inputs))


def test_two_runs_give_identical_bits_and_the_seed_matters():
    cfg = toys.ToyConfig(steps=25, seed=3, encoders=2, view_pairs=4)
    a, b = toys.plane_toy(cfg), toys.plane_toy(cfg)
    assert torch.equal(a.x, b.x) and torch.equal(a.align, b.align) and torch.equal(a.maps, b.maps)
    c, d = toys.line_toy(cfg), toys.line_toy(cfg)
    assert torch.equal(c.theta, d.theta) and torch.equal(c.align, d.align)
    other = toys.plane_toy(toys.ToyConfig(steps=25, seed=4, encoders=2, view_pairs=4))
    assert not torch.equal(a.x, other.x) and not torch.equal(a.align, other.align)


def test_f_and_g_on_the_same_points_are_the_same_encoder():
    """f_i and g_i share initial weights and jitter (common random numbers): with equal training sets m is 0."""
    x = torch.randn(12, 2, generator=torch.Generator().manual_seed(0))
    cfg = toys.ToyConfig(steps=20, encoders=2, view_pairs=4)
    with toys.one_thread():
        enc = toys.train(x, torch.ones(4, 12, dtype=torch.bool), cfg, 0.3)
        al = toys.alignment(enc, x, cfg, 0.3)
    assert torch.equal(al[:2], al[2:]) and not torch.equal(al[0], al[1])   # pairs equal, seeds differ


def test_alignment_is_the_sslmem_distance_of_the_normalised_representation():
    """L_align on the circle equals objectives.alignment_distance of the unit vectors (methods.md section 2)."""
    cfg = toys.ToyConfig(view_pairs=5)
    enc = toys.Encoders(2, 1, 1, torch.Generator().manual_seed(1))
    p = torch.tensor([[0.3, -0.4]])
    off = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(cfg.seed + SSLMemToySeed.VIEWS)) * 0.3
    with torch.no_grad():
        t1, t2 = enc(p + off[0])[0], enc(p + off[1])[0]
    expected = alignment_distance(toys.circle(t1), toys.circle(t2))
    assert torch.allclose(toys.alignment(enc, p, cfg, 0.3)[0, 0], expected, atol=1e-6)
    const = toys.Encoders(2, 1, 1, torch.Generator().manual_seed(1))
    with torch.no_grad():
        for w in const.params[:-1]:
            w.zero_()
    assert toys.alignment(const, torch.randn(7, 2), cfg, 0.3).abs().max() == 0   # a constant encoder: 0


@pytest.mark.parametrize("name,value", [("toy_steps", 0), ("toy_encoders", 0), ("toy_view_pairs", -1),
                                        ("toy_seed", -2), ("toy_steps", 2.5)])
def test_bad_toy_parameters_raise_before_compute(name, value):
    """The notebook builds SSLMemParams (``parameters``) in its first cell, before the toys or anything else run."""
    with pytest.raises(ParameterError, match=name):
        SSLMemParams(**values("smoke", **{name: value}))
    with pytest.raises(ParameterError, match=name):
        parameters(SSLMemParams, values("smoke", **{name: value}))   # the notebook's path: ranges, then the class
    assert SSLMemParams(**values("smoke")).toys == SMOKE


def test_figures_and_claim_lines(tmp_path, capsys):
    report = Report(tmp_path, "02_sslmem", "smoke", "synthetic")
    toys.figure10(SMOKE, report)
    toys.figure11(SMOKE, report)
    out = capsys.readouterr().out
    assert [c["outcome"] for c in report.claims] == ["PASS"] * 3 and out.count("[not evaluated, smoke: PASS]") == 3
    for name in ("toy_fig10_line", "toy_fig11_plane"):
        assert (report.figures / f"{name}.png").stat().st_size > 10_000
    assert (report.tables / "toy_fig10.csv").is_file() and (report.tables / "toy_fig11.csv").is_file()
