"""Data pruning: ``METHODS`` registry, scorers (cached per dataset, scorer, proxy recipe, seed) and selectors.

Adding a method is one selector function decorated with ``@register_method(name, keeps=..., scorer=...,
**hyperparameters)`` in a module imported below; a new scorer is decorated with ``@register_scorer(name,
**hyperparameters)``. Hyperparameters (defaults declared there, overridden per run by ``RunConfig.method_params``)
are part of the score and run keys.
"""
from .base import METHODS, KEEPS, ProxyConfig, PruningMethod, ScoreContext, register_method, register_scorer
from .selection import budget, class_budgets, keep_high, keep_low, keep_random
from . import random  # noqa: F401  (registers "random")
from . import scores, geometry, ccs, deepcore  # noqa: F401,E402  (register the score, geometry, CCS, DeepCore methods)

__all__ = ["METHODS", "KEEPS", "ProxyConfig", "PruningMethod", "ScoreContext", "register_method", "register_scorer", "budget",
           "class_budgets", "keep_high", "keep_low", "keep_random"]
