"""Will it fit? The chip-neutral orchestration of a fit check: ``check`` (validate the layers,
merge joined populations, let the chip's family run its rules, build the verdict), ``from_graph``
(the per-layer geometry of a traced graph, residual wiring included) and ``search`` (the fit
section of a run and the bisection for the largest keep count that fits). What each chip allows,
and the verdict values its rules produce (``slamp_deploy.chips.verdict``), live in
``slamp_deploy.chips``.
"""
