"""Figures: one function per figure type, one style. Every figure has a title, axis labels, a legend where there is
more than one series, and a caption line naming the profile and dataset; ``save`` writes PNG and PDF.

Notebooks call them all as ``plots.<name>``; they live by paper: ``style`` (settings, colours, ``caption``,
``save``), ``charts`` (figures any notebook uses), ``sslmem`` (SSLMem, notebooks 02-03), ``units`` (UnitMem and
LayerMem, notebooks 04-05) and ``profiles`` (memorization profiles, notebook 01).
"""
from memlab.io.plots.charts import bars, errorbar_panels, grouped_bars, heatmap, lines, roc, scatter, trend, trend_panels
from memlab.io.plots.profiles import (aligned_profiles, augmentation_scatter, embedding_grid, image_grid,
                                      profiles_over_epochs, profiles_vs_binomial)
from memlab.io.plots.sslmem import (alignment_scatter, gallery, subset_distributions, threshold_fraction, toy_line,
                                    toy_plane, training_curves)
from memlab.io.plots.style import PARADIGM_COLORS, SUBSET_COLORS, SUBSET_LABELS, caption, save
from memlab.io.plots.units import per_layer_box, unit_scatter_grid

__all__ = ["PARADIGM_COLORS", "SUBSET_COLORS", "SUBSET_LABELS", "caption", "save",
           "bars", "errorbar_panels", "grouped_bars", "heatmap", "lines", "roc", "scatter", "trend", "trend_panels",
           "aligned_profiles", "augmentation_scatter", "embedding_grid", "image_grid", "profiles_over_epochs",
           "profiles_vs_binomial",
           "alignment_scatter", "gallery", "subset_distributions", "threshold_fraction", "toy_line", "toy_plane",
           "training_curves",
           "per_layer_box", "unit_scatter_grid"]
