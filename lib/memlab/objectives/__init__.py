"""Training objectives, one module per paradigm: NT-Xent (``simclr``), ``dino``, ``vicreg``, ``simsiam``, ``mae``,
``supervised`` cross-entropy and the alignment regulariser of the SSLMem paper's Eq. 3 (``alignment``), on the
``base`` class; the registry by name (``losses``: ``build_objective``); the collectives they need under DDP
(``collectives``).
"""
