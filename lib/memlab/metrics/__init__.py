"""The papers' metrics, and nothing else: SSLMem (``sslmem``), LayerMem (``layermem``), UnitMem and ClassMem
(``unitmem``), memorization profiles (``profiles``), benign memorisation (``benign``), rankings, statistics and
linear/kNN probes.
"""
