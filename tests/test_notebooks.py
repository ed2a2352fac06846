"""Every notebook runs end to end through papermill with tiny parameters (tests/notebook_params/<name>.yaml)."""

import pytest

from kdlib.notebooks import ROOT, execute, load_params, notebook_parameters

NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
TINY = ROOT / "tests" / "notebook_params"
EXPECTED_FIGURES = {
    "theory_toy": ("risk_vs_alpha", "optimal_alpha", "risk_vs_teacher_fraction", "kd_vs_no_kd", "pruning_label_noise"),
    "pruning_sweep": ("accuracy_vs_fraction", "method_ranking", "kd_gain_heatmap"),
    "claims": ("claim_kd_improves", "claim_half_beats_full", "claim_theory_kd_improves", "frontier"),
}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_with_tiny_parameters(name, tmp_path):
    params_file = TINY / f"{name}.yaml"
    assert params_file.exists(), f"add tiny parameters for notebooks/{name}.ipynb in {params_file}"
    overrides = {"out_dir": str(tmp_path / "out")}
    if "store" in notebook_parameters(ROOT / "notebooks" / f"{name}.ipynb"):
        overrides["store"] = str(tmp_path / "store")
    out = execute(name, "quick", overrides=overrides, output=tmp_path / f"{name}.ipynb", params_file=params_file,
                  cell_timeout=600)  # a stalled kernel fails this test instead of the whole CI run
    assert out.exists()
    figures = list((tmp_path / "out").rglob("*.png"))
    assert figures or name == "browse_results", f"{name} drew no figure"
    for png in figures:
        assert png.with_suffix(".pdf").exists()
    for stem in EXPECTED_FIGURES.get(name, ()):
        assert (tmp_path / "out" / f"{stem}.png").exists(), f"{name} did not draw {stem}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_profiles_only_set_known_parameters(name):
    allowed = set(notebook_parameters(ROOT / "notebooks" / f"{name}.ipynb"))
    for profile in ("quick", "cpu", "paper"):
        path = ROOT / "params" / profile / f"{name}.yaml"
        assert path.exists(), f"missing {path}"
        assert set(load_params(path)) <= allowed, f"{path} sets unknown parameters"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_papermill_sees_every_parameter(name):
    # papermill parses the parameters cell line by line and silently drops a line it cannot read (an "=" in a
    # comment, say): that parameter could then not be set from a parameter file
    import ast

    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)]
    assert notebook_parameters(ROOT / "notebooks" / f"{name}.ipynb") == assigned


def test_notebooks_committed_without_outputs():
    import nbformat

    for name in NOTEBOOKS:
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{name} has outputs"
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), f"{name} lacks a parameters cell"


def test_bad_parameter_file_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_params(bad)
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ValueError, match="cell_timeout must be a positive integer, got 0"):
        execute("pruning_sweep", "quick", output=tmp_path / "x.ipynb", cell_timeout=0)
    bad.write_text("fractoins: [0.1]\n")
    with pytest.raises(ValueError, match="unknown parameter.*fractoins.*allowed"):
        execute("pruning_sweep", "quick", params_file=bad, output=tmp_path / "x.ipynb")


def test_study_skips_notebooks_whose_inputs_are_unchanged(tmp_path, monkeypatch):
    import kdlib.notebooks as nbs

    ran = []

    def fake_execute(name, profile, overrides=None, output=None, params_file=None, log_output=False):
        ran.append(name)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("{}")
        return output

    monkeypatch.setattr(nbs, "execute", fake_execute)
    names = ["theory_toy", "pruning_sweep"]
    assert nbs.run_study("quick", names, outputs=tmp_path) == {n: "ran" for n in names}
    assert nbs.run_study("quick", names, outputs=tmp_path) == {n: "up to date" for n in names}
    assert nbs.run_study("quick", names[:1], force=True, outputs=tmp_path) == {"theory_toy": "ran"}
    (tmp_path / "quick" / "pruning_sweep.ipynb").unlink()  # a missing output is re-made
    assert nbs.run_study("quick", names, outputs=tmp_path) == {"theory_toy": "up to date", "pruning_sweep": "ran"}
    assert sorted(ran) == ["pruning_sweep", "pruning_sweep", "theory_toy", "theory_toy"]


def test_fingerprint_follows_inputs_and_the_browsers_store(tmp_path):
    from kdlib.notebooks import fingerprint

    params = tmp_path / "p.yaml"
    params.write_text("hue: method\n")
    store = tmp_path / "store"
    base = fingerprint("browse_results", params, store)
    assert fingerprint("browse_results", params, store) == base
    params.write_text("hue: alpha\n")
    assert fingerprint("browse_results", params, store) != base
    (store / "runs").mkdir(parents=True)
    before = fingerprint("browse_results", params, store)
    (store / "runs" / "abc.json").write_text("{}")
    assert fingerprint("browse_results", params, store) != before
    assert fingerprint("browse_results", params) == fingerprint("browse_results", params, tmp_path / "none")


def test_beside_notebooks_run_in_a_second_lane(tmp_path, monkeypatch):
    import threading

    import kdlib.notebooks as nbs

    lanes = {}

    def fake_execute(name, profile, overrides=None, output=None, params_file=None, log_output=False):
        lanes[name] = threading.current_thread().name
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("{}")
        return output

    monkeypatch.setattr(nbs, "execute", fake_execute)
    nbs.run_study("quick", ["theory_toy", "pruning_sweep"], outputs=tmp_path)
    assert lanes["theory_toy"] != lanes["pruning_sweep"]


def test_startup_seconds_is_wall_time_outside_the_cells(tmp_path):
    import nbformat

    from kdlib.notebooks import startup_seconds

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1", metadata={"papermill": {"duration": d}}) for d in (1.5, 2.5)]
    path = tmp_path / "out.ipynb"
    nbformat.write(nb, str(path))
    assert startup_seconds(path, 10.0) == 6.0


def test_startup_seconds_is_none_for_an_unexecuted_notebook(tmp_path):
    from kdlib.notebooks import startup_seconds

    path = tmp_path / "out.ipynb"
    path.write_text("{}")
    assert startup_seconds(path, 10.0) is None
