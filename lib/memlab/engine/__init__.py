"""The one training loop (``loop.fit``) and everything that runs trainings: ``train`` (configs, encoder jobs, cache
keys), ``jobs`` (the plan of jobs, its costs), ``executors`` (inline, local process pool, SLURM), ``ddp``,
``dp`` (DP-SGD with opacus), ``memory`` (peak-memory estimates) and ``dryrun``.
"""
