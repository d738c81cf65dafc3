"""What the user gave, as a :class:`~slamp_deploy.model.graph.SpikingGraph`.

This package owns the first stage of the data flow: loading a model (a factory with optional
weights, a checkpoint, the built-in example or a NIR file, ``loader``), tracing one time step of
it into the neutral graph of named synaptic layers, neurons, reshapes and residual joins
(``graph``), and running that graph over time (``runner``). Everything downstream reads the graph
and never re-inspects the user's ``forward``; nothing here knows about pruning, chips or exports.
"""
