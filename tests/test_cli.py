"""The command line: one-line errors (never a traceback for bad input), one-line warnings, devices
checked before any work, and build-tiny that writes over nothing it was not told to."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from deqa import cli, setup, synth, tiny
from deqa.errors import DeqaError


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name", ["bogus", "", "cuda:x"])
def test_resolve_device_refuses_unknown_names(name):
    with pytest.raises(DeqaError, match="not a device name"):
        setup.resolve_device(name)


def test_resolve_device_checks_cuda_is_there():
    assert setup.resolve_device("cpu") == "cpu"
    assert setup.resolve_device("auto") in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:7"):
            with pytest.raises(DeqaError, match="CUDA is not available"):
                setup.resolve_device(name)
    else:
        assert setup.resolve_device("cuda") == "cuda"
        with pytest.raises(DeqaError, match="there is no GPU 99"):
            setup.resolve_device("cuda:99")


@pytest.mark.parametrize("device", ["bogus", "cuda:99"])
def test_cli_score_bad_device_is_one_line_before_anything_else(device, tmp_path, capsys):
    rc = cli.main(["score", "--model", str(tmp_path / "no-model"), "--device", device, str(tmp_path / "none.png")])
    assert rc == 2
    assert f"--device {device}" in _error_line(capsys)


def test_cli_turns_os_and_value_errors_into_one_line_but_keeps_other_tracebacks(monkeypatch, tmp_path, capsys):
    def raises(exc):
        def run(args):
            raise exc
        return run

    monkeypatch.setattr(synth, "run", raises(IsADirectoryError(21, "Is a directory", "somewhere")))
    assert cli.main(["synth", str(tmp_path)]) == 2
    assert _error_line(capsys) == "error: [Errno 21] Is a directory: 'somewhere'"
    monkeypatch.setattr(synth, "run", raises(ValueError("bad value\nsecond line")))
    assert cli.main(["synth", str(tmp_path)]) == 2
    assert _error_line(capsys) == "error: bad value"
    monkeypatch.setattr(synth, "run", raises(KeyError("a bug")))
    with pytest.raises(KeyError):  # a programming error keeps its traceback
        cli.main(["synth", str(tmp_path)])


def test_cli_warnings_are_one_line(monkeypatch, tmp_path, capsys):
    def run(args):
        warnings.warn("first\n  second", UserWarning)
        return 0

    monkeypatch.setattr(synth, "run", run)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli.main(["synth", str(tmp_path)]) == 0
    assert capsys.readouterr().err == "warning: first second\n"


def test_build_tiny_refuses_a_non_empty_folder(tmp_path, capsys):
    out = tmp_path / "trained"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"trained weights")
    assert cli.main(["build-tiny", str(out)]) == 2
    assert "--overwrite" in _error_line(capsys)
    assert (out / "model.safetensors").read_bytes() == b"trained weights"
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    with pytest.raises(DeqaError, match="training run"):
        tiny.prepare_out_dir(run, overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DeqaError, match="not a folder"):
        tiny.prepare_out_dir(tmp_path / "file", overwrite=True)


def test_prepare_out_dir_with_overwrite_removes_model_files_only(tmp_path):
    out = tmp_path / "adapter"
    out.mkdir()
    stale = ["adapter_config.json", "adapter_model.safetensors", "config.json", "vocab.json", "merges.txt",
             "model-00001-of-00002.safetensors", "model.safetensors.index.json", "preprocessor_config.json"]
    kept = ["NOTES.md", "README.md", "my_weights.safetensors", "scores.csv"]
    for name in stale + kept:
        (out / name).write_text("x")
    (out / "photos").mkdir()
    assert tiny.prepare_out_dir(out, overwrite=True) == out.resolve()
    assert sorted(p.name for p in out.iterdir()) == sorted(kept + ["photos"])


@pytest.mark.slow
def test_build_tiny_overwrite_over_a_lora_adapter_loads_as_the_new_model(tmp_path, capsys):
    from peft import LoraConfig, get_peft_model

    from deqa import mllm

    base = tiny.build_tiny(tmp_path / "base", seed=0)
    model, _ = mllm.load(base)
    get_peft_model(model, LoraConfig(r=2, target_modules=r".*language_model.*\.q_proj")).save_pretrained(
        tmp_path / "folder")
    (tmp_path / "folder" / "NOTES.md").write_text("mine")
    assert json.loads((tmp_path / "folder" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert cli.main(["build-tiny", str(tmp_path / "folder"), "--seed", "1", "--overwrite"]) == 0
    assert not (tmp_path / "folder" / "adapter_config.json").exists()
    assert (tmp_path / "folder" / "NOTES.md").read_text() == "mine"
    loaded, _ = mllm.load(tmp_path / "folder")
    assert type(loaded).__name__ == "LlavaForConditionalGeneration"
    fresh = tiny.build_tiny(tmp_path / "fresh", seed=1)
    expected = mllm.load(fresh)[0].state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
