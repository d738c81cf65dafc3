"""Pruning: the methods and their registry, the allocation into a pruning plan, the masks.

``methods`` (one registered class per method), ``allocate`` (global top-k and the chip-capped
greedy, both returning a ``plan.PruningPlan``), ``temporal`` (SLAMP's lambda), ``calibrate``
(the statistics lambda is made of), ``masks`` (the mask lifecycle), ``recover`` (current
matching) and ``retrain``. Nothing here knows a chip, an exporter or a report.
"""
