"""Input and output: the content-addressed cache (``cache``), parameter profiles and their validation (``params``),
figures (``plots``, one module per paper), a notebook's report of figures, tables and claims (``report``), the results page
(``results``) and ``run_all.sh``'s helpers (``runner``, ``progress``).
"""
