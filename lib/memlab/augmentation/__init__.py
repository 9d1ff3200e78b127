"""Augmentations on the device, drawn from per-image random streams: the presets of every paradigm (SimCLR view
pairs, supervised crop-and-flip, MAE, ...; ``augment``, on the batched pixel operations of ``pixels``),
RandAugment, and ``ViewBank``, the fixed views of a measurement.
"""
