"""Training objectives, one per paradigm: NT-Xent (SimCLR), DINO, VICReg, SimSiam, MAE, supervised cross-entropy and
the alignment regulariser of the SSLMem paper's Eq. 3; the collectives they need under DDP (``collectives``).
"""
