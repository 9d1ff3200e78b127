"""The one training loop (``loop.fit``; its checkpoints and snapshots in ``checkpoints``) and everything that runs
trainings: ``config`` (the training config and the cache keys it gives), ``train`` (building, training and the
encoder job), ``jobs`` (the plan of jobs), ``costs`` (their estimated costs), ``executors`` (inline, local process
pool; SLURM in ``slurm``), ``ddp``, ``dp`` (DP-SGD with opacus), ``memory`` (peak-memory estimates) and ``dryrun``.
"""
