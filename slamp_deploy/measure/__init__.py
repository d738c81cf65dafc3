"""Numbers only: what the network does on real data and what that costs on a chip.

``activity`` counts connectivity, spikes and synaptic operations on the evaluation data
(NeuroBench 2.3 definitions), dense and pruned; ``energy`` turns those counts into energy per
inference with a hardware profile's per-event figures, each term carrying the figure's source and
confidence. Nothing here renders or prints: the report package shows these values.
"""
