"""One typed report of a run, rendered several ways.

``model`` holds :class:`~slamp_deploy.report.model.RunReport` and its frozen sections, with
``to_dict()`` (report.json) and ``from_dict()`` (so a saved report.json can be rendered again);
``markdown`` writes report.md and each section's terminal and Markdown text, ``plots`` and
``html`` the self-contained report.html, ``format`` the number formatting they share. The
renderers read attributes; nothing here imports the pipeline.
"""
