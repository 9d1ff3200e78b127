"""The experiments behind the notebooks: the named encoder recipes (``recipes``), the grids and trainings each
notebook plans, and the computations that turn cached results into tables and claim values.
"""
