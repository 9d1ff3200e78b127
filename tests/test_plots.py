"""Figures (memlab.io.plots): the facade exports every figure, ``save`` writes PNG and PDF, and the profile grids
label their panels as the paper's Fig. 2 and 3 do."""
import inspect

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from memlab.io import plots  # noqa: E402
from memlab.io.plots import charts, profiles, sslmem, style, units  # noqa: E402


def test_every_figure_of_the_submodules_is_a_plots_name():
    defined = {n for m in (charts, profiles, sslmem, style, units) for n, f in vars(m).items()
               if inspect.isfunction(f) and f.__module__ == m.__name__ and not n.startswith("_")}
    assert defined - {"as_numpy"} == {n for n in plots.__all__ if callable(getattr(plots, n))}
    assert plots.roc is charts.roc and plots.save is style.save


def test_save_writes_png_and_pdf(tmp_path):
    fig = plots.bars({"a": 1.0, "b": 2.0}, "title", "value", "caption")
    paths = plots.save(fig, tmp_path / "sub" / "figure")
    plt.close(fig)
    assert [p.name for p in paths] == ["figure.png", "figure.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"


def test_profile_grids_label_the_first_column_and_the_last_row():
    p = np.sort(np.random.default_rng(0).random(20))
    panels = {name: {kind: [(1, p, p ** 2), (5, p, p)] for kind in ("averaged", "fixed")}
              for name in ("simclr", "supervised", "random_labels")}
    fig = plots.profiles_vs_binomial(panels, "title", "caption")
    axes = np.array(fig.axes).reshape(3, 2)
    assert [[a.get_ylabel() for a in row] for row in axes] == [["p_t", ""]] * 3
    assert [a.get_xlabel() != "" for a in axes.ravel()] == [False] * 4 + [True] * 2
    labels = axes[0, 0].get_legend_handles_labels()[1]
    assert labels == [f"t=1, mean {p.mean():.2f}", f"t=5, mean {p.mean():.2f}", "binomial noise"]
    assert axes[1, 1].get_title() == "supervised: fixed" and axes[1, 1].get_ylim() == (-0.02, 1.02)
    plt.close(fig)
    comp = {"averaged": {0.5: {"simclr t=3": p, "supervised t=1": p ** 2}, 0.8: {"simclr t=9": p}}}
    fig = plots.aligned_profiles(comp, "title", "caption")
    a, b = fig.axes[:2]
    assert (a.get_ylabel(), b.get_ylabel(), a.get_xlabel()) == ("p_t", "", "sorted images")
    assert [line.get_color() for line in a.get_lines()] == [style.PARADIGM_COLORS["simclr"],
                                                            style.PARADIGM_COLORS["supervised"]]
    plt.close(fig)
