"""precision='auto' resolves per device from the hardware's capability; records say what ran."""
from __future__ import annotations

import json

import pytest
import torch

from kdlib import precision as P
from kdlib.train import autocast_context, make_scaler


def _never_probe() -> bool:
    raise AssertionError("the probe must not run when the flags decide")


def test_no_onednn_bf16_means_fp32():
    assert P.choose_cpu_precision(False, frozenset({"avx512_bf16"}), _never_probe) == "fp32"


def test_avx2_flags_mean_fp32():
    assert P.choose_cpu_precision(True, frozenset({"avx2", "fma", "avx512f"}), _never_probe) == "fp32"


def test_avx512_bf16_flag_means_bf16():
    assert P.choose_cpu_precision(True, frozenset({"avx2", "avx512f", "avx512_bf16"}), _never_probe) == "bf16"


def test_amx_flag_means_bf16():
    assert P.choose_cpu_precision(True, frozenset({"amx_bf16"}), _never_probe) == "bf16"


def test_arm_bf16_feature_means_bf16():
    assert P.choose_cpu_precision(True, frozenset({"asimd", "bf16"}), _never_probe) == "bf16"


def test_unreadable_flags_probe_says_faster():
    assert P.choose_cpu_precision(True, None, lambda: True) == "bf16"


def test_unreadable_flags_probe_says_slower():
    assert P.choose_cpu_precision(True, None, lambda: False) == "fp32"


def test_probe_answer_is_cached_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(P, "probe_bf16_faster", lambda: calls.append(1) or True)
    P.cached_probe()
    P.cached_probe()
    assert len(calls) == 1


def test_probe_cache_file_holds_the_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(P, "probe_bf16_faster", lambda: False)
    P.cached_probe()
    assert list(json.loads((tmp_path / "kdlib" / "cpu_precision.json").read_text()).values()) == [
        {"version": P.PROBE_VERSION, "bf16_faster": False}]


@pytest.mark.parametrize("entry", [True, "yes", {"version": 1, "bf16_faster": True}, {"version": 2}])
def test_a_probe_cache_entry_of_another_version_is_measured_again(tmp_path, monkeypatch, entry):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ident = f"{P.cpu_name()}|{P.platform.machine()}|torch {torch.__version__}"
    (tmp_path / "kdlib").mkdir()
    (tmp_path / "kdlib" / "cpu_precision.json").write_text(json.dumps({ident: entry}))
    monkeypatch.setattr(P, "probe_bf16_faster", lambda: False)
    with pytest.warns(UserWarning, match="cpu_precision.json: its entry for .* is not a version-2 probe answer"):
        assert P.cached_probe() is False


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_an_unreadable_probe_cache_file_is_ignored_with_a_warning(tmp_path, monkeypatch, text):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "kdlib").mkdir()
    (tmp_path / "kdlib" / "cpu_precision.json").write_text(text)
    monkeypatch.setattr(P, "probe_bf16_faster", lambda: True)
    with pytest.warns(UserWarning, match=f"ignoring the per-user cache file {tmp_path}/kdlib/cpu_precision.json"):
        assert P.cached_probe() is True


@pytest.fixture
def cpu_says(monkeypatch):
    """Forces what the CPU check answers for precision='auto'."""
    def force(answer: str) -> None:
        monkeypatch.setattr(P, "cpu_auto_precision", lambda: answer)
    return force


@pytest.mark.parametrize("answer", ["bf16", "fp32"])
def test_auto_on_cpu_follows_the_capability(cpu_says, answer):
    cpu_says(answer)
    assert P.resolve_precision("auto", "cpu") == answer


def test_auto_autocasts_bf16_on_a_native_cpu(cpu_says):
    cpu_says("bf16")
    with autocast_context(torch.device("cpu"), "auto"):
        assert torch.is_autocast_enabled("cpu")


def test_auto_does_not_autocast_on_an_emulating_cpu(cpu_says):
    cpu_says("fp32")
    with autocast_context(torch.device("cpu"), "auto"):
        assert not torch.is_autocast_enabled("cpu")


def test_explicit_bf16_autocasts_whatever_the_cpu(cpu_says):
    cpu_says("fp32")
    with autocast_context(torch.device("cpu"), "bf16"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")


def test_explicit_fp32_never_autocasts(cpu_says):
    cpu_says("bf16")
    with autocast_context(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")


def test_fp16_on_cpu_is_an_error_naming_the_parameter():
    with pytest.raises(ValueError, match="precision 'fp16' needs a CUDA device"):
        P.resolve_precision("fp16", "cpu")


def test_unknown_precision_names_the_allowed_values():
    with pytest.raises(ValueError, match="allowed values for 'precision': auto, bf16, fp16, fp32"):
        P.resolve_precision("fp8", "cpu")


@pytest.fixture
def gpus(monkeypatch):
    """Forces the CUDA answers: ``gpus({"cuda:0": (7, 0), ...})`` gives each device its compute capability
    (``cuda`` alone: device 0); ``is_bf16_supported`` says yes with emulation, as torch does on a V100 or T4."""
    def force(capabilities: dict) -> None:
        def capability(device=None):
            device = torch.device(device if device is not None else "cuda")
            return capabilities[f"cuda:{device.index or 0}"]

        monkeypatch.setattr(torch.version, "hip", None)
        monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    return force


@pytest.mark.parametrize("gpu, capability", [("V100", (7, 0)), ("T4", (7, 5)), ("P100", (6, 0))])
def test_auto_on_a_gpu_that_emulates_bf16_is_fp16(gpus, gpu, capability):
    gpus({"cuda:0": capability})
    assert P.resolve_precision("auto", "cuda") == "fp16"


@pytest.mark.parametrize("gpu, capability", [("A100", (8, 0)), ("A10", (8, 6)), ("H100", (9, 0))])
def test_auto_on_a_gpu_with_native_bf16_is_bf16(gpus, gpu, capability):
    gpus({"cuda:0": capability})
    assert P.resolve_precision("auto", "cuda") == "bf16"


def test_auto_asks_the_runs_own_gpu(gpus):
    gpus({"cuda:0": (7, 0), "cuda:1": (8, 0)})
    assert [P.resolve_precision("auto", d) for d in ("cuda:0", "cuda:1")] == ["fp16", "bf16"]


def test_scaler_needed_for_auto_on_a_gpu_without_bf16(gpus):
    gpus({"cuda:0": (7, 5)})
    assert P.needs_loss_scaler("auto", "cuda")


def test_no_scaler_for_auto_on_a_gpu_with_bf16(gpus):
    gpus({"cuda:0": (8, 0)})
    assert not P.needs_loss_scaler("auto", "cuda")


def test_auto_on_rocm_asks_without_emulation(monkeypatch):
    monkeypatch.setattr(torch.version, "hip", "6.0")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation)
    assert P.resolve_precision("auto", "cuda") == "bf16"


def test_scaler_off_on_cpu():
    assert not make_scaler(torch.device("cpu"), "auto").is_enabled()


def test_runtime_info_names_what_ran(cpu_says):
    cpu_says("fp32")
    info = P.runtime_info("cpu", "auto")
    assert (info["precision"], info["cpu_capability"], info["threads"]) == (
        "fp32", torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())


def test_this_machines_answer_matches_its_flags():
    """On the machine at hand: native bf16 flags <=> auto is bf16 (AVX2-only CPUs get fp32)."""
    flags = P.cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags on this machine")
    native = bool(flags & P.NATIVE_BF16_FLAGS) and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert P.cpu_auto_precision() == ("bf16" if native else "fp32")


def test_runtime_info_names_the_commit():
    from kdlib.provenance import _git, code_info

    code_info.cache_clear()  # a commit made while the suite runs must not make this stale
    head = _git("rev-parse", "HEAD")
    if head is None:
        pytest.skip("not a git checkout")
    assert P.runtime_info("cpu", "fp32")["commit"] == head


def test_source_hash_changes_with_the_source(tmp_path):
    from kdlib.provenance import source_hash

    (tmp_path / "a.py").write_text("x = 1\n")
    before = source_hash(tmp_path)
    (tmp_path / "a.py").write_text("x = 2\n")
    assert source_hash(tmp_path) != before


@pytest.fixture
def cuda_flags():
    """Restores the process's CUDA math flags after a test sets them."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def test_fp32_on_cuda_turns_tf32_off_for_matmuls_and_convolutions(cuda_flags):
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default
    P.set_math_mode("cuda", "fp32")
    assert P.math_mode("cuda") == {"tf32_matmul": False, "tf32_cudnn": False, "cudnn_benchmark": True}


def test_bf16_on_cuda_keeps_tf32_for_its_fp32_parts(cuda_flags):
    P.set_math_mode("cuda", "bf16")
    assert P.math_mode("cuda")["tf32_cudnn"] is True


def test_the_cpu_has_no_math_mode_to_record(cuda_flags):
    assert P.math_mode("cpu") == {}
