"""The stages of a run, in order, and the library side of every command.

``run`` loads the model and data, calibrates, prunes (with the chip's caps), recovers, retrains,
checks the fit, measures activity and energy, verifies the exports, and builds the typed
:class:`~slamp_deploy.report.model.RunReport`; ``outputs`` writes the output folder atomically;
``check`` and ``energy`` are the library sides of ``slamp-deploy check`` and ``energy``. Stages
return values; nothing here prints (the CLI renders what these return).
"""
