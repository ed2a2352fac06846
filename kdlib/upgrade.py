"""Upgrades a store written by an older kdlib (store format 1) in place, keeping every record it can prove.

``python -m kdlib.upgrade STORE`` (or ``upgrade_store(store)``). A format-1 record carries its config but not the
identity its key hashes, so a current kdlib moves it aside when it reads it and recomputes the run. This rebuilds
each record's identity from its config with today's normalisation and keeps the record only when that identity
hashes to the record's key and the record's own checksum is valid; every other record is left as it is (it is then
moved aside when read, and recomputed). Teacher checkpoints and score arrays are untouched: their records name
their SHA-256.
"""
from __future__ import annotations

import argparse
from typing import Any, Optional

from .prune import ProxyConfig
from .store import Store, canonical, config_key
from .study import GRID_AXES, RunConfig, TeacherConfig
from .validate import check_number, check_seed

SCORE_FIELDS = {"dataset", "scorer", "proxy", "model", "seed", "label_noise", "noise_seed"}


def legacy_identity(kind: str, key: str, record: dict) -> Optional[Any]:
    """The identity a format-1 record's key should hash, rebuilt from its config with today's normalisation, or
    None when it cannot be rebuilt or does not hash to ``key`` (``Store.upgrade`` checks the hash again)."""
    cfg = record.get("config")
    if not isinstance(cfg, dict):
        return None
    try:
        if kind == "runs" and set(cfg) <= set(GRID_AXES):
            ident: Any = RunConfig.from_dict(cfg).identity()
        elif kind == "teachers":
            ident = TeacherConfig(**cfg).identity()
        elif kind == "scores" and set(cfg) == SCORE_FIELDS:
            ident = canonical({**cfg, "proxy": ProxyConfig.from_dict(cfg["proxy"]), "seed": check_seed(cfg["seed"]),
                               "label_noise": check_number(cfg["label_noise"], "label_noise", low=0, high=1,
                                                           high_open=True),
                               "noise_seed": check_seed(cfg["noise_seed"], "noise_seed")})
        else:  # a record whose config is itself the hashed identity (kdlib.distributed's runs)
            ident = cfg
    except (TypeError, ValueError):
        return None
    return ident if config_key(ident) == key else None


def upgrade_store(store: Store | str) -> dict[str, int]:
    """Upgrades every provable format-1 record of ``store`` in place; returns the counts (``Store.upgrade``)."""
    store = store if isinstance(store, Store) else Store(store)
    return store.upgrade(legacy_identity)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="the store folder (e.g. outputs/cpu/store)")
    args = parser.parse_args(argv)
    counts = upgrade_store(args.store)
    print(f"{args.store}: {counts['upgraded']} record(s) upgraded, {counts['current']} already current, "
          f"{counts['unprovable']} left as they are (moved aside and recomputed when read)")


if __name__ == "__main__":
    main()
