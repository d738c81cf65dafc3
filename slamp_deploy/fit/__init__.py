"""Will it fit? The chip-neutral orchestration of a fit check (``check``), its verdict values
(``verdict``), the geometry read from a traced graph (``from_graph``), the capped allocation
(``capped``) and the search for the largest keep count that fits (``search``); what each chip
allows lives in ``slamp_deploy.chips``."""
