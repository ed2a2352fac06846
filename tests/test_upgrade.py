"""Upgrading a store written by an older kdlib (store format 1): provable records are kept, the rest recomputed."""
from kdlib.alpha_rule import RULES_KIND
from kdlib.prune import ProxyConfig
from kdlib.store import canonical, config_key
from kdlib.study import RunConfig, TeacherConfig
from kdlib.train import TrainConfig
from kdlib.upgrade import main, upgrade_store

TINY = TrainConfig(epochs=1, batch_size=32, lr=0.05, schedule="cosine", precision="fp32")
RUN = RunConfig(dataset="digits", model="convnet_small", teacher="convnet_small", method="el2n", fraction=0.2,
                alpha=0.5, train=TINY, alpha_rule="fitted")
TEACHER = TeacherConfig.of(RUN)
SCORES = {"dataset": "digits", "scorer": "el2n_scores", "proxy": ProxyConfig(), "model": "convnet_small", "seed": 0,
          "label_noise": 0.0, "noise_seed": 0}
DIST = {"dataset": "imagenet", "data_id": "abc", "model": "resnet18"}  # kdlib.distributed: the config is the identity


def old_store(store, as_format_1) -> dict:
    """A store of format-1 records of every kind; returns name -> (kind, key)."""
    r = RUN.resolved()
    made = {
        "run": ("runs", r.key(), {"config": r, "result": {"final_acc": 50.0}}),
        "teacher": ("teachers", config_key(TEACHER), {"config": TEACHER, "sha256": "0" * 64}),
        "scores": ("scores", config_key(SCORES), {"config": SCORES, "sha256": "0" * 64}),
        "distributed": ("runs", config_key(DIST), {"config": DIST}),
        "rules": (RULES_KIND, "digits", {"dataset": "digits", "rules": {}}),
        "no checksum": ("runs", RunConfig(seed=1).key(), {"config": RunConfig(seed=1).resolved()}),
    }
    # a run hashed with label_noise=0 (an int) by the old code: today's key of that config is another one
    ints = canonical(RunConfig(seed=2).resolved())
    ints["label_noise"] = 0
    ints.pop("alpha_rule")
    made["int key"] = ("runs", config_key(ints), {"config": {**ints, "alpha_rule": None}})
    for name, (kind, key, rec) in made.items():
        store.put(kind, key, {"status": "done", **rec}, ident=ints if name == "int key" else None)
        as_format_1(store.path(kind, key), checksum=name != "no checksum")
    return {name: (kind, key) for name, (kind, key, _) in made.items()}


def test_upgrade_keeps_every_provable_record(store, as_format_1):
    made = old_store(store, as_format_1)
    assert upgrade_store(store) == {"upgraded": 5, "unprovable": 2, "current": 0}
    readable = {name for name, (kind, key) in made.items() if store.get(kind, key) is not None}
    assert readable == {"run", "teacher", "scores", "distributed", "rules"}


def test_upgraded_run_record_is_the_original(store, as_format_1):
    made = old_store(store, as_format_1)
    upgrade_store(store)
    rec = store.get(*made["run"])
    assert (rec["result"], rec["config"]["alpha_rule"], rec["format"]) == ({"final_acc": 50.0}, "fitted", 2)


def test_upgrade_twice_changes_nothing(store, as_format_1):
    old_store(store, as_format_1)
    upgrade_store(store)
    assert upgrade_store(store) == {"upgraded": 0, "unprovable": 2, "current": 5}


def test_command_line_reports_the_counts(store, as_format_1, capsys):
    old_store(store, as_format_1)
    main([str(store.root)])
    assert capsys.readouterr().out.strip().endswith(
        ": 5 record(s) upgraded, 0 already current, 2 left as they are (moved aside and recomputed when read)")
