"""memlab: companion library for four papers on memorization in self-supervised learning.

One folder per concept; imports point down this list only (``tests/test_layout.py`` checks it):

    streams, io.cache, io.params   named random streams; the content-addressed cache; parameter profiles
    data                           datasets, subsets and the SSLMem splits
    augmentation                   augmentations and fixed view banks
    models                         encoders
    objectives                     SSL and supervised losses
    engine                         the training loop, jobs, executors, DDP, DP-SGD
    metrics                        the papers' metrics: SSLMem, LayerMem, UnitMem/ClassMem, profiles, ...
    io                             figures, a notebook's report and claims, the results page
    experiments                    one module per notebook: parameters, plan of jobs, tables and claims
    cli                            ``python -m memlab plan|train``
"""
__version__ = "0.1.0"
