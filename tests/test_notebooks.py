"""Every notebook runs end to end through papermill with tiny parameters (tests/notebook_params/<name>.yaml)."""

import pytest

from kdlib.notebooks import ROOT, execute, load_params, notebook_parameters

NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
TINY = ROOT / "tests" / "notebook_params"
EXPECTED_FIGURES = {
    "theory_toy": ("risk_vs_alpha", "optimal_alpha", "risk_vs_teacher_fraction", "kd_vs_no_kd", "pruning_label_noise"),
    "pruning_sweep": ("accuracy_vs_fraction",),
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
    bad.write_text("fractoins: [0.1]\n")
    with pytest.raises(ValueError, match="unknown parameter.*fractoins.*allowed"):
        execute("pruning_sweep", "quick", params_file=bad, output=tmp_path / "x.ipynb")
