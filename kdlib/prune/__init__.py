"""Data pruning: ``METHODS`` registry, scorers (cached per dataset, scorer, proxy recipe, seed) and selectors.

Adding a method is one selector function decorated with ``@register_method(name, keeps=..., scorer=...)`` in a
module imported below.
"""
from .base import METHODS, KEEPS, ProxyConfig, PruningMethod, ScoreContext, register_method
from .selection import budget, class_budgets, keep_high, keep_low, keep_random
from . import random  # noqa: F401  (registers "random")
from . import scores, geometry, ccs, deepcore  # noqa: F401,E402  (register the score, geometry, CCS, DeepCore methods)

__all__ = ["METHODS", "KEEPS", "ProxyConfig", "PruningMethod", "ScoreContext", "register_method", "budget",
           "class_budgets", "keep_high", "keep_low", "keep_random"]
