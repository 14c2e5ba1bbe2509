"""Nothing lost, nothing overwritten: the training run under careless use and interruption.

A user's folder is never written into, one run holds a run folder at a time, every stop signal keeps
the progress, an interruption anywhere resumes to the very weights of an uninterrupted run, and
settings or files that cannot work are refused before anything is written."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from deqa import checkpoints, cli, train
from deqa.errors import DeqaError


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(tiny_model, smoke_data, out, **kw):
    settings = dict(model=tiny_model, data=smoke_data, out=str(out), steps=6, batch_size=4, lr=1e-3,
                    progress=False, log_every=1, eval_limit=16, device="cpu")
    settings.update(kw)
    return train.TrainConfig(**settings)


def _weights(model_dir):
    out = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        out.update(load_file(str(f)))
    assert out, f"no weights in {model_dir}"
    return out


def _same_weights(a, b) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _log(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------- never a user's files

def test_a_folder_deqa_did_not_write_is_refused_and_left_as_it_was(tiny_model, smoke_data, tmp_path, capsys):
    user = tmp_path / "userdir"
    (user / "model").mkdir(parents=True)
    (user / "model" / "README.txt").write_text("my notes")
    (user / "metrics.jsonl").write_text('{"step": 999, "mine": 1}\n')
    before = {p: p.read_bytes() for p in user.rglob("*") if p.is_file()}
    code = cli.main(["train", "--model", tiny_model, "--data", smoke_data[0], "--out", str(user), "--steps", "2",
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "not a deqa run folder" in err, err
    assert {p: p.read_bytes() for p in user.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in user.iterdir()) == ["metrics.jsonl", "model"]


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_out_that_is_or_lies_under_a_file_is_a_one_line_error(where, tiny_model, smoke_data, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    out = tmp_path / "notes.txt" if where == "file" else tmp_path / "notes.txt" / "run"
    code = cli.main(["train", "--model", tiny_model, "--data", smoke_data[0], "--out", str(out), "--steps", "2",
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "notes.txt" in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("setting, value, expected", [
    ("gamma", float("nan"), "finite"), ("gamma", -1.0, "gamma must be at least 0"),
    ("weight_decay", float("nan"), "finite"), ("max_grad_norm", float("nan"), "finite"),
    ("lr", float("inf"), "finite"), ("epochs", float("inf"), "finite"), ("seed", -1, "seed must be in"),
    ("eval_limit", 0, "eval_limit must be at least 1"), ("eval_limit", -1, "eval_limit must be at least 1"),
    ("lora_dropout", 1.0, "lora_dropout must be in"), ("log_every", 0, "log_every must be at least 1"),
])
def test_settings_that_cannot_make_sense_are_refused_before_anything_is_written(setting, value, expected,
                                                                                  tiny_model, smoke_data, tmp_path):
    kw = {setting: value}
    if setting == "epochs":
        kw["steps"] = None
    with pytest.raises(DeqaError, match=expected):
        train.train(_config(tiny_model, smoke_data, tmp_path / "run", **kw))
    assert not (tmp_path / "run").exists()


def test_the_same_metadata_file_twice_is_refused(tiny_model, smoke_data, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(smoke_data[0]).parent)
    with pytest.raises(DeqaError, match="given twice"):
        train.train(_config(tiny_model, [smoke_data[0], "meta.csv"], tmp_path / "run"))


def test_an_unreadable_training_image_is_named_with_its_file_and_row_before_training(tiny_model, smoke_data,
                                                                                       tmp_path):
    meta = pd.read_csv(smoke_data[0])
    root = Path(smoke_data[0]).parent
    meta["image"] = [str(root / p) for p in meta["image"]]
    broken = tmp_path / "broken.png"
    broken.write_bytes((root / meta["image"][0]).read_bytes()[:200])  # a truncated PNG
    row = int(np.flatnonzero(meta["split"] == "train")[3])
    meta.loc[row, "image"] = str(broken)
    meta.to_csv(tmp_path / "meta.csv", index=False)
    with pytest.raises(DeqaError, match=rf"meta\.csv: row {row + 1} \(image .*broken\.png.*cannot read the image"):
        train.train(_config(tiny_model, [str(tmp_path / "meta.csv")], tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_validation_split_too_small_to_correlate_writes_no_nan(tiny_model, smoke_data, tmp_path):
    meta = pd.read_csv(smoke_data[0])
    root = Path(smoke_data[0]).parent
    meta["image"] = [str(root / p) for p in meta["image"]]
    val = np.flatnonzero(meta["split"] == "val")
    meta.loc[val[2:], "split"] = "test"  # two validation images left
    meta.to_csv(tmp_path / "meta.csv", index=False)
    result = train.train(_config(tiny_model, [str(tmp_path / "meta.csv")], tmp_path / "run", steps=2))
    text = (tmp_path / "run" / "metrics.jsonl").read_text() + (tmp_path / "run" / "train_config.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    name = meta["dataset"][0]
    assert result.validation[name]["n"] == 2 and np.isnan(result.validation[name]["srcc"])
    assert _log(tmp_path / "run")[-1][f"val_n/{name}"] == 2


# ------------------------------------------------------------------------- one run per folder

def test_a_second_run_into_a_folder_in_use_is_refused(tiny_model, smoke_data, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = checkpoints.RunLock(run_dir).acquire()  # as a first run in another process holds it
    try:
        with pytest.raises(DeqaError, match="in use by another training run"):
            train.train(_config(tiny_model, smoke_data, run_dir))
    finally:
        holder.release()
    assert sorted(p.name for p in run_dir.iterdir()) == ["train.lock"]


def test_a_stale_lock_file_from_a_killed_run_does_not_block_resume(tiny_model, smoke_data, tmp_path):
    train.train(_config(tiny_model, smoke_data, tmp_path / "run", stop_at=3))
    (tmp_path / "run" / "train.lock").write_text("pid 999999")  # left behind by a killed process
    resumed = train.train(_config(tiny_model, smoke_data, tmp_path / "run", resume=True))
    assert resumed.step == 6 and not resumed.stopped


@pytest.mark.slow
def test_two_concurrent_runs_one_refused(tiny_model, smoke_data, tmp_path):
    out = tmp_path / "conc"
    cmd = [sys.executable, "-m", "deqa", "train", "--model", tiny_model, "--out", str(out), "--steps", "40",
           "--batch-size", "2", "--eval-every", "-1", "--no-progress", "--device", "cpu"]
    for meta in smoke_data:
        cmd += ["--data", meta]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while not (out / "metrics.jsonl").is_file() and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    second = subprocess.run(cmd + ["--seed", "1"], capture_output=True, text=True, env=env, timeout=300)
    first_err = first.communicate(timeout=600)[1]
    assert first.returncode == 0, first_err[-2000:]
    assert second.returncode == 2, second.stderr[-2000:]
    assert "in use by another training run" in second.stderr or "already holds a run" in second.stderr
    assert json.loads((out / "train_config.json").read_text())["seed"] == 0


# ------------------------------------------------------------------------- interruptions

@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_save_a_checkpoint_that_resumes_bit_identically(signame, tiny_model, smoke_data,
                                                                           tmp_path):
    base = [sys.executable, "-m", "deqa", "train", "--model", tiny_model, "--steps", "30", "--batch-size", "2",
            "--eval-every", "-1", "--log-every", "1", "--no-progress", "--device", "cpu", "--lr", "1e-3"]
    for meta in smoke_data:
        base += ["--data", meta]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    straight = subprocess.run(base + ["--out", str(tmp_path / "straight")], capture_output=True, text=True,
                              env=env, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    proc = subprocess.Popen(base + ["--out", str(tmp_path / "cut")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    log = tmp_path / "cut" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(getattr(signal, signame))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + getattr(signal, signame), err[-2000:]
    state = torch.load(tmp_path / "cut" / "checkpoint" / checkpoints.STATE_FILE, weights_only=False)
    assert 5 <= state["step"] < 30
    resumed = subprocess.run(base + ["--out", str(tmp_path / "cut"), "--resume"], capture_output=True, text=True,
                             env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _same_weights(tmp_path / "straight" / "model", tmp_path / "cut" / "model")


@pytest.mark.parametrize("where", ["validate", "save_checkpoint"])
def test_ctrl_c_during_validation_or_a_checkpoint_write_resumes_bit_identically(where, tiny_model, smoke_data,
                                                                                tmp_path, monkeypatch):
    settings = dict(steps=8, eval_every=2, save_every=2)
    straight = train.train(_config(tiny_model, smoke_data, tmp_path / "straight", **settings))
    original = getattr(train, where)
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second validation (step 4) or checkpoint (step 4)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train, where, interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.train(_config(tiny_model, smoke_data, tmp_path / "cut", **settings))
    monkeypatch.setattr(train, where, original)
    state = torch.load(tmp_path / "cut" / "checkpoint" / checkpoints.STATE_FILE, weights_only=False)
    assert state["step"] == 4 and state["pairs_done"] == 4 * 4
    resumed = train.train(_config(tiny_model, smoke_data, tmp_path / "cut", resume=True, **settings))
    assert _same_weights(straight.model_dir, resumed.model_dir)
    a, b = _log(tmp_path / "straight"), _log(tmp_path / "cut")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(a) == drop(b)  # every row, the validation at step 4 once, in the same order


def test_a_partial_last_log_line_does_not_block_resume(tiny_model, smoke_data, tmp_path):
    train.train(_config(tiny_model, smoke_data, tmp_path / "run", stop_at=3))
    with (tmp_path / "run" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "lo')  # a kill while appending
    resumed = train.train(_config(tiny_model, smoke_data, tmp_path / "run", resume=True))
    assert [r["step"] for r in _log(tmp_path / "run") if "loss" in r] == list(range(1, 7))
    assert resumed.step == 6


def test_a_damaged_checkpoint_falls_back_to_the_previous_one_or_is_a_one_line_error(tiny_model, smoke_data,
                                                                                     tmp_path, capsys):
    run_dir = tmp_path / "run"
    train.train(_config(tiny_model, smoke_data, run_dir, stop_at=3))
    state = run_dir / "checkpoint" / checkpoints.STATE_FILE
    state.write_bytes(state.read_bytes()[:100])
    code = cli.main(["train", "--model", tiny_model, *sum((["--data", m] for m in smoke_data), []), "--out",
                     str(run_dir), "--steps", "6", "--batch-size", "4", "--lr", "1e-3", "--log-every", "1",
                     "--eval-limit", "16", "--no-progress", "--device", "cpu", "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: resume: the checkpoint is damaged"), err
    assert len(err.strip().splitlines()) == 1


def test_resume_accepts_the_same_files_by_another_path(tiny_model, smoke_data, tmp_path, monkeypatch):
    train.train(_config(tiny_model, smoke_data, tmp_path / "run", stop_at=3))
    monkeypatch.chdir(Path(smoke_data[0]).parents[1])
    relative = [str(Path(m).relative_to(Path(smoke_data[0]).parents[1])) for m in smoke_data]
    resumed = train.train(_config(tiny_model, relative, tmp_path / "run", resume=True))
    assert resumed.step == 6
    with pytest.raises(DeqaError, match="setting data differs"):
        train.train(_config(tiny_model, relative[:1], tmp_path / "run", resume=True))


def test_checkpoint_swap_survives_a_second_kill(tmp_path, monkeypatch):
    """After a crash between the two renames only checkpoint.old is complete; a kill during the next
    swap must not lose it (F14)."""
    final = tmp_path / "checkpoint"
    old = tmp_path / "checkpoint.old"
    old.mkdir()
    (old / checkpoints.STATE_FILE).write_text("the only complete checkpoint")
    tmp = tmp_path / "checkpoint.tmp"
    tmp.mkdir()
    (tmp / checkpoints.STATE_FILE).write_text("new")
    real_replace = os.replace

    def killed(src, dst):
        if Path(src) == tmp:
            raise KeyboardInterrupt  # the process dies right before the new checkpoint is in place
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoints.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoints._swap_in(tmp, final)
    assert checkpoints.find_checkpoint(tmp_path) == old
    assert (old / checkpoints.STATE_FILE).read_text() == "the only complete checkpoint"
