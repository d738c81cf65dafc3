"""Everything that knows a chip: profiles loaded from ``hardware_profiles/*.toml`` (numbers, each
with its source and confidence) and one module per chip family (its section, rules and caps)
behind the :class:`~slamp_deploy.chips.family.Family` protocol, and the verdict values their
rules produce (``verdict``: rule results, violations, the :class:`FitReport`). The verdict types
sit here rather than in ``slamp_deploy.fit`` because the family rules build them and the layering
lets ``fit`` import ``chips``, not the reverse.
"""

from slamp_deploy.chips.family import family_of
from slamp_deploy.chips.toml import available_targets, describe_targets, load_profile

__all__ = ["available_targets", "describe_targets", "family_of", "load_profile"]
