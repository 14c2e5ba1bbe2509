"""The DeQA training loop: it learns, resumes to the same weights, stops cleanly on NaN, refuses bad
input with a one-line error, and saves LoRA/full models that ``deqa.mllm.load`` reads back."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from deqa import checkpoints, cli, collate, mllm, train, trainset
from deqa.errors import DeqaError
from deqa.images import load_image
from deqa.losses import LossSettings


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tiny model gains nothing from intra-op threads, and on a busy 2-core machine torch's
    spinning threads slow these tests down many times over."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(tiny_model, smoke_data, out, **kw):
    settings = dict(model=tiny_model, data=smoke_data, out=str(out), steps=8, batch_size=4,
                    lr=1e-3, progress=False, log_every=1, eval_limit=16, device="cpu")
    settings.update(kw)
    return train.TrainConfig(**settings)


def _weights(model_dir):
    files = sorted(model_dir.glob("*.safetensors"))
    assert files, f"no weights in {model_dir}"
    out = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss" in r]



def test_pair_loss_equals_loss_from_full_logits(tiny_model, smoke_data):
    """Keeping only the answer positions' logits changes nothing: same loss as from all (B, T, V)."""
    from deqa import losses

    model, processor = mllm.load(tiny_model)
    ids = collate.level_token_ids(processor.tokenizer)
    data = trainset.load_split(smoke_data, "train")
    stream = trainset.PairStream(data.datasets, seed=0)
    batches = trainset.PairBatchDataset(data, stream, collate.Collator(processor, ids, train=True), 3, 0, 1)
    batch = batches[0]
    with torch.no_grad():
        fast = train.pair_loss(model, batch, ids, LossSettings(), "cpu")
        inputs = collate.model_inputs(batch)
        logits = model(**inputs).logits  # every position
        rows = torch.arange(6)
        level = logits[rows, batch["level_pos"]]
        ce_a = losses.answer_ce(logits[:3], batch["labels"][:3])
        ce_b = losses.answer_ce(logits[3:], batch["labels"][3:])
        slow = losses.deqa_loss(level[:3], level[3:], batch["target"][:3], batch["target"][3:],
                                batch["mu"][:3], batch["sigma"][:3], batch["mu"][3:], batch["sigma"][3:],
                                ids, ce_a, ce_b)
    for key in ("loss", "fid", "kl_a", "kl_b", "ce_a", "ce_b"):
        assert float(fast[key]) == pytest.approx(float(slow[key]), rel=1e-5, abs=1e-6), key
    assert float(fast["ce_a"]) > 0.5  # the untrained model does not know the answer text yet


def test_a_few_steps_reduce_the_loss(tiny_model, smoke_data, tmp_path):
    result = train.train(_config(tiny_model, smoke_data, tmp_path / "run", steps=24))
    losses = [r["loss"] for r in _losses(tmp_path / "run")]
    assert len(losses) == 24
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    assert (tmp_path / "run" / "model" / "config.json").is_file()
    assert result.step == 24 and not result.stopped
    config = json.loads((tmp_path / "run" / train.RUN_CONFIG).read_text())
    assert config["resolved"]["mode"] == "full" and config["resolved"]["total_steps"] == 24
    # validation ran at the end, one SRCC per data set
    assert set(result.validation) == {"synth-koniq", "synth-spaq"}


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_model, smoke_data, tmp_path):
    straight = train.train(_config(tiny_model, smoke_data, tmp_path / "straight", steps=8))
    first = train.train(_config(tiny_model, smoke_data, tmp_path / "split", steps=8, stop_at=4))
    assert first.stopped and first.step == 4 and first.model_dir is None
    second = train.train(_config(tiny_model, smoke_data, tmp_path / "split", steps=8, resume=True))
    assert second.step == 8
    a, b = _weights(straight.model_dir), _weights(second.model_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the logs agree too, step by step, and the resumed log has no duplicate rows
    la, lb = _losses(tmp_path / "straight"), _losses(tmp_path / "split")
    assert [r["step"] for r in lb] == list(range(1, 9))
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    # and training did move the weights
    start = _weights(Path(tiny_model))
    moved = [k for k in a if k in start and not torch.equal(a[k], start[k])]
    assert moved


def test_ctrl_c_saves_a_checkpoint_that_resumes_to_the_same_weights(tiny_model, smoke_data, tmp_path):
    def interrupt(step, out):
        if step == 3:
            raise KeyboardInterrupt
        return out

    with pytest.raises(KeyboardInterrupt):
        train.train(_config(tiny_model, smoke_data, tmp_path / "split", steps=6), loss_hook=interrupt)
    assert torch.load(tmp_path / "split" / "checkpoint" / checkpoints.STATE_FILE, weights_only=False)["step"] == 2
    resumed = train.train(_config(tiny_model, smoke_data, tmp_path / "split", steps=6, resume=True))
    straight = train.train(_config(tiny_model, smoke_data, tmp_path / "straight", steps=6))
    a, b = _weights(straight.model_dir), _weights(resumed.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_changed_settings_and_a_run_folder_is_not_overwritten(tiny_model, smoke_data, tmp_path):
    train.train(_config(tiny_model, smoke_data, tmp_path / "run", steps=4, stop_at=2))
    with pytest.raises(DeqaError, match="setting lr differs"):
        train.train(_config(tiny_model, smoke_data, tmp_path / "run", steps=4, lr=5e-4, resume=True))
    with pytest.raises(DeqaError, match="already holds a run"):
        train.train(_config(tiny_model, smoke_data, tmp_path / "run", steps=4))


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tiny_model, smoke_data, tmp_path):
    def inject_nan(step, out):
        if step == 5:
            out = dict(out, loss=out["loss"] * float("nan"))
        return out

    run_dir = tmp_path / "run"
    with pytest.raises(DeqaError, match=r"loss is nan at step 5: training stopped \(the last good checkpoint"):
        train.train(_config(tiny_model, smoke_data, run_dir, save_every=2), loss_hook=inject_nan)
    state = torch.load(run_dir / "checkpoint" / checkpoints.STATE_FILE, weights_only=False)
    assert state["step"] == 4
    assert not (run_dir / "model").exists()
    model, processor = mllm.load(run_dir / "checkpoint" / "model")
    from deqa.infer import score_images

    data = trainset.load_split(smoke_data, "val")
    scores = score_images(model, processor, [load_image(p) for p in data.paths[:4]], progress=False)
    assert np.all(np.isfinite(scores["score"])) and scores["score"].between(1, 5).all()


def _bad_meta(smoke_data, tmp_path, name, edit):
    meta = pd.read_csv(smoke_data[0])
    root = Path(smoke_data[0]).parent
    meta["image"] = [str(root / p) for p in meta["image"]]  # absolute: the bad file lives elsewhere
    meta = edit(meta)
    path = tmp_path / f"{name}.csv"
    meta.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("case, expected", [
    ("missing_model", "does not exist"),
    ("nan_mos", "row 3 (image"),
    ("negative_std", "std is negative"),
    ("missing_image", "row 2 (image"),
    ("missing_columns", "no MOS column"),
])
def test_cli_bad_input_is_one_line_error_exit_2(case, expected, tiny_model, smoke_data, tmp_path, capsys):
    model = tiny_model
    meta = smoke_data[0]
    if case == "missing_model":
        model = str(tmp_path / "no-such-model")
    elif case == "nan_mos":
        meta = _bad_meta(smoke_data, tmp_path, case, lambda m: m.assign(mos=m["mos"].where(m.index != 2)))
    elif case == "negative_std":
        meta = _bad_meta(smoke_data, tmp_path, case, lambda m: m.assign(std=m["std"].where(m.index != 4, -0.5)))
    elif case == "missing_image":
        meta = _bad_meta(smoke_data, tmp_path, case,
                         lambda m: m.assign(image=m["image"].where(m.index != 1, "gone.png"),
                                            split=m["split"].where(m.index != 1, "train")))
    elif case == "missing_columns":
        meta = _bad_meta(smoke_data, tmp_path, case, lambda m: m.drop(columns=["mos"]))
    code = cli.main(["train", "--model", model, "--data", meta, "--out", str(tmp_path / "run"),
                     "--steps", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and expected in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_image_names_file_and_row(smoke_data, tmp_path):
    meta = _bad_meta(smoke_data, tmp_path, "gone", lambda m: m.assign(
        image=m["image"].where(m.index != 6, "nowhere/x.png"), split=m["split"].where(m.index != 6, "train")))
    with pytest.raises(DeqaError, match=r"gone\.csv: row 7 \(image 'nowhere/x\.png'\): image file not found"):
        trainset.load_split([meta], "train")


def test_lora_trains_saves_and_reloads_with_identical_scores(tiny_model, smoke_data, tmp_path):
    from deqa.infer import score_images

    result = train.train(_config(tiny_model, smoke_data, tmp_path / "lora", steps=4, mode="lora"))
    saved = tmp_path / "lora" / "model"
    assert (saved / "adapter_config.json").is_file()
    names = [n for n, p in result.model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in names) and any("multi_modal_projector" in n for n in names)
    assert not any("lora_" in n and "vision_tower" in n for n in names)  # LoRA stays in the language model
    base_config = json.loads((saved / "adapter_config.json").read_text())
    assert base_config["base_model_name_or_path"] == tiny_model

    images = [load_image(p) for p in trainset.load_split(smoke_data, "val").paths[:6]]
    before = score_images(result.model, result.processor, images, progress=False)
    model, processor = mllm.load(saved)
    after = score_images(model, processor, images, progress=False)
    np.testing.assert_allclose(after["score"], before["score"], atol=1e-6)
    np.testing.assert_allclose(after["p_good"], before["p_good"], atol=1e-6)
    base, _ = mllm.load(tiny_model)
    untrained = score_images(base, processor, images, progress=False)
    assert np.abs(untrained["score"].to_numpy() - after["score"].to_numpy()).max() > 1e-4


def test_recipe_official_prints_the_published_settings_without_loading_anything(capsys):
    assert cli.main(["train", "--recipe", "official", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = {"mode": "lora", "lora_r": 128, "lora_alpha": 256, "lora_dropout": 0.05, "lr": 2e-5,
                "warmup_ratio": 0.03, "weight_decay": 0.0, "batch_size": 16, "epochs": 3.0, "steps": None,
                "train_vision": True, "gamma": 0.05, "p_hat": "fixed", "method": "official", "question": "random"}
    assert {k: printed[k] for k in expected} == expected
    assert cli.main(["train", "--recipe", "official", "--lora-r", "64", "--steps", "10", "--gamma", "0.1",
                     "--print-config"]) == 0
    changed = json.loads(capsys.readouterr().out)
    assert (changed["lora_r"], changed["steps"], changed["epochs"], changed["gamma"]) == (64, 10, None, 0.1)
    assert changed["lora_alpha"] == 256  # the rest of the preset stays
    assert cli.main(["train", "--print-config"]) == 0  # no recipe: the defaults, 3 epochs
    plain = json.loads(capsys.readouterr().out)
    assert (plain["lora_r"], plain["epochs"], plain["method"], plain["gamma"]) == (16, 3.0, "official", 0.05)
    assert cli.main(["train", "--data", "x.csv"]) == 2
    assert "--model and --out are required" in capsys.readouterr().err
    config = train.TrainConfig.from_recipe("official", model="m", data=["d"], out="o", steps=5)
    assert config.lora_r == 128 and config.steps == 5 and config.epochs is None


def test_gamma_is_stated_once(monkeypatch):
    """The loss step's gamma is deqa.losses.GAMMA unless a run sets its own."""
    from deqa import losses, runconfig

    assert train.TrainConfig(model="m", data=["d"], out="o", steps=1).loss_settings().gamma == losses.GAMMA
    assert runconfig.resolve_settings({})["gamma"] == losses.GAMMA


def test_portable_log_drops_the_wall_clock(tmp_path):
    from deqa import runlog

    rows = [{"step": 10, "loss": 1.5, "seconds": 3.2}, {"step": 10, "val_srcc": 0.9, "time": 12.0}]
    runlog.write_rows(tmp_path / "metrics.jsonl", rows)
    out = runlog.write_portable(tmp_path, tmp_path / "copy" / "metrics.jsonl")
    assert runlog.read_log(out) == [{"step": 10, "loss": 1.5}, {"step": 10, "val_srcc": 0.9}]
