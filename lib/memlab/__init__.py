"""memlab: companion library for four papers on memorization in self-supervised learning.

Modules (one concept each): data, synthetic, splits, augment, models, objectives, train, cache,
sslmem, stats, probes, plots, params, report.
"""
__version__ = "0.1.0"
