"""The ablation's reading of its table (t-intervals, paired verdicts, the pooled latent-quality row)
and its cache of results and settings."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deqa import ablation
from deqa.errors import DeqaError
from deqa.levels import LABEL_COLUMNS, PROB_COLUMNS


def test_t_interval_matches_the_textbook_formula():
    mean, half, n = ablation.t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    # t(0.975, 4) = 2.7764, sd = sqrt(2.5), n = 5
    assert (mean, n) == (3.0, 5)
    assert half == pytest.approx(2.776445 * np.sqrt(2.5) / np.sqrt(5), rel=1e-5)
    assert ablation.t_interval([1.0, 2.0, 3.0], level=0.9)[1] == pytest.approx(stats.t.ppf(0.95, 2) / np.sqrt(3))
    assert np.isnan(ablation.t_interval([0.5])[1]) and ablation.t_interval([np.nan, 2.0])[2] == 1


def _results(diffs, base=None, metric="srcc"):
    """Two variants on one (arm, test set): b has a large seed-to-seed spread, a = b + diffs."""
    base = np.array([0.90, 0.95, 0.85, 0.93, 0.88])[: len(diffs)] if base is None else np.asarray(base)
    rows = []
    for seed, (b, d) in enumerate(zip(base, diffs)):
        rows.append({"arm": "x", "variant": "soft_kl", "test_set": "t", "seed": seed, metric: b})
        rows.append({"arm": "x", "variant": "soft_kl_fid", "test_set": "t", "seed": seed, metric: b + d})
    return pd.DataFrame(rows)


def test_paired_differences_pair_by_seed_and_call_the_winner():
    # a constant +0.01 gain under a seed-to-seed spread of 0.04: unpaired it would be a tie, paired it is a win
    diffs = [0.010, 0.011, 0.009, 0.010, 0.012]
    out = ablation.paired_differences(_results(diffs), "srcc", "soft_kl_fid", "soft_kl")
    row = out.iloc[0]
    assert row["n_seeds"] == 5 and row["better"] == "soft_kl_fid"
    assert row["diff"] == pytest.approx(0.0104)
    assert row["half"] == pytest.approx(stats.t.ppf(0.975, 4) * np.std(diffs, ddof=1) / np.sqrt(5))
    assert row["low"] > 0
    # lower is better: the same numbers make b the better one
    worse = ablation.paired_differences(_results(diffs), "srcc", "soft_kl_fid", "soft_kl", higher_is_better=False)
    assert worse.iloc[0]["better"] == "soft_kl"
    # differences on both sides of zero: a tie
    tie = ablation.paired_differences(_results([0.01, -0.012, 0.004, -0.003, 0.002]), "srcc", "soft_kl_fid", "soft_kl")
    assert tie.iloc[0]["better"] == "tie" and tie.iloc[0]["low"] < 0 < tie.iloc[0]["high"]
    one = ablation.paired_differences(_results([0.01]), "srcc", "soft_kl_fid", "soft_kl")
    assert one.iloc[0]["better"] == "n/a"
    with pytest.raises(DeqaError, match="onehot_ce"):
        ablation.paired_differences(_results(diffs), "srcc", "onehot_ce", "soft_kl")


def _preds(n=60, seed=0):
    rng = np.random.default_rng(seed)
    quality = rng.uniform(1, 5, n)
    table = pd.DataFrame({"dataset": np.where(np.arange(n) % 2, "synth-a", "synth-b"), "quality": quality,
                          "score": quality + rng.normal(0, 0.3, n), "mu": quality + rng.normal(0, 0.2, n),
                          "sigma": 0.6, "std": 0.7})
    probs = rng.dirichlet(np.ones(5), n)
    for k, (p, q) in enumerate(zip(PROB_COLUMNS, LABEL_COLUMNS)):
        table[p], table[q] = probs[:, k], probs[::-1][:, k]
    return table


def test_evaluate_predictions_adds_the_latent_quality_and_a_pooled_row():
    preds = _preds()
    table = ablation.evaluate_predictions(preds)
    assert list(table["test_set"]) == ["synth-a", "synth-b", ablation.POOLED]
    assert list(table.columns) == ["test_set", "n", *ablation.METRICS]
    part = preds[preds.dataset == "synth-a"]
    assert table.loc[0, "srcc"] == pytest.approx(stats.spearmanr(part["score"], part["mu"])[0])
    assert table.loc[0, "srcc_latent"] == pytest.approx(stats.spearmanr(part["score"], part["quality"])[0])
    pooled = table.iloc[2]
    assert pooled["n"] == 60 and pooled["srcc_latent"] == pytest.approx(stats.spearmanr(preds["score"], preds["quality"])[0])
    assert np.isnan(pooled["srcc"]) and np.isnan(pooled["kl"])  # each set has its own label scale


def test_label_free_yardsticks_use_the_raters_histogram_and_the_human_sigma():
    preds = _preds(n=4)
    hist = np.array([[0.0, 0.1, 0.6, 0.3, 0.0], [0.2, 0.2, 0.2, 0.2, 0.2], [0.0, 0.0, 0.0, 0.5, 0.5],
                     [1.0, 0.0, 0.0, 0.0, 0.0]])
    for k, col in enumerate(("c1", "c2", "c3", "c4", "c5")):
        preds[col] = hist[:, k]
    preds["std"] = [0.5, 0.9, 0.6, 0.2]
    p = preds[list(PROB_COLUMNS)].to_numpy()
    m = (p + hist) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p, kl_h = (np.where(a > 0, a * np.log(a / m), 0.0).sum(axis=1) for a in (p, hist))
    gaps = ablation.label_free_gaps(preds)
    assert gaps["js_ratings"] == pytest.approx(np.mean(0.5 * kl_p + 0.5 * kl_h), rel=1e-9)
    assert gaps["spread_error"] == pytest.approx(np.mean(np.abs(np.array([0.5, 0.9, 0.6, 0.2]) - 0.6)))
    ranked = np.sort(preds["score"].to_numpy())   # 4 scores: the 5th and 95th percentiles interpolate
    assert gaps["score_range"] == pytest.approx((ranked[3] - 0.15 * (ranked[3] - ranked[2]))
                                                - (ranked[0] + 0.15 * (ranked[1] - ranked[0])))
    table = ablation.evaluate_predictions(preds)
    assert table["js_ratings"].notna().all() and table["spread_error"].notna().all()  # the pooled row too
    assert table.iloc[-1]["spread_error"] == pytest.approx(gaps["spread_error"])
    assert np.isnan(ablation.label_free_gaps(preds.drop(columns=["c1"]))["js_ratings"])


def test_design_plan_lays_each_choice_over_the_deqa_objective():
    plan = ablation.design_plan(["synth-koniq", "synth-high"], ["synth-spaq"], seeds=[0, 1])
    assert list(plan) == ["label", "p_hat", "gamma", "kl_vocab", "questions"]
    assert set(ablation.PUBLISHED_VARIANTS) == set(plan)
    for arm, spec in plan.items():
        assert ablation.PUBLISHED_VARIANTS[arm] in spec["variants"] and spec["seeds"] == [0, 1]
    assert ablation.variant_settings(plan["gamma"], "0.5") == {"label": "soft", "use_fidelity": True, "gamma": 0.5}
    assert ablation.variant_settings(plan["label"], "projection")["reference_labels"] is False
    assert ablation.variant_settings({"variants": ["onehot_ce"]}, "onehot_ce") == ablation.VARIANTS["onehot_ce"]
    with pytest.raises(DeqaError, match="unknown variant"):
        ablation.variant_settings({"variants": ["soft"]}, "soft")
    with pytest.raises(DeqaError, match="unknown design choice"):
        ablation.design_plan(["a"], [], choices=["lr"])


def test_runs_that_arms_share_have_one_key(tmp_path):
    """A setting given at its default is the same run; another setting, seed or test set is not."""
    from deqa.soft_label import PUBLISHED_LABEL

    metas = {"a": tmp_path / "a.csv", "b": tmp_path / "b.csv"}
    job = dict(stage1_dir="m", metas=metas, settings=ablation.VARIANTS["soft_kl_fid"], training=("a",), seed=0,
               steps=5, batch_size=2, lr=3e-4)
    key = ablation.run_key(job)
    published = ablation.variant_settings({"variants": ablation.DESIGN_CHOICES["label"]},
                                          "published" if PUBLISHED_LABEL else "projection")
    for arm, variant in ablation.PUBLISHED_VARIANTS.items():
        if arm != "label":
            same = ablation.variant_settings({"variants": ablation.DESIGN_CHOICES[arm]}, variant)
            assert ablation.run_key({**job, "settings": same}) == key, arm
    assert ablation.run_key({**job, "settings": published}) == key
    for other in ({"settings": {**job["settings"], "gamma": 0.5}}, {"seed": 1}, {"metas": {"a": metas["a"]}},
                  {"steps": 6}):
        assert ablation.run_key({**job, **other}) != key


def test_score_curve_averages_the_score_per_quality_bin():
    preds = pd.DataFrame({"quality": [1.0, 1.1, 2.6, 4.9], "score": [1.0, 2.0, 3.0, 5.0]})
    curve = ablation.score_curve(preds)
    assert list(curve["n"]) == [2, 1, 1]
    assert list(curve["score"]) == [1.5, 3.0, 5.0]
    assert list(curve["quality"]) == [1.125, 2.625, 4.875]


def test_summary_table_keeps_the_plans_order_of_variants():
    results = pd.concat([_results([0.01, 0.02])[lambda t: t.variant == "soft_kl"].assign(variant="0.5"),
                         _results([0.01, 0.02])[lambda t: t.variant == "soft_kl"].assign(variant="0.05")])
    table = ablation.summary_table(results, metrics=("srcc",))
    assert list(table.index.get_level_values("variant")) == ["0.5", "0.05"]


def test_summary_table_prints_mean_and_t_interval():
    table = ablation.summary_table(_results([0.01, 0.011, 0.009]), metrics=("srcc",))
    half = stats.t.ppf(0.975, 2) * np.std([0.90, 0.95, 0.85], ddof=1) / np.sqrt(3)
    assert table.loc[("x", "soft label + KL"), ("t", "srcc")] == f"0.900 ± {half:.3f}"
    assert list(table.index.get_level_values("variant")) == ["soft label + KL", "soft + KL + fidelity (DeQA)"]


def test_objective_plan_trains_koniq_alone_and_everything_together():
    plan = ablation.objective_plan(["synth-spaq", "synth-koniq"], variants=("soft_kl",))
    both = ["synth-koniq", "synth-spaq"]
    assert plan == {"single": {"data": ["synth-koniq"], "variants": ["soft_kl"], "test": both},
                    "co-train": {"data": both, "variants": ["soft_kl"], "test": both}}
    with pytest.raises(DeqaError, match="at least two"):
        ablation.objective_plan(["synth-koniq"])


def test_cache_settings_hold_no_absolute_path_and_must_match(tmp_path):
    data = tmp_path / "data" / "synth-a"
    data.mkdir(parents=True)
    (data / "meta.csv").write_text("image,mos\na.png,3\n")
    (data / "params.json").write_text(json.dumps({"seed": 0, "n_scenes": 3}))
    stage1 = tmp_path / "run" / "stage1"
    stage1.mkdir(parents=True)
    (stage1 / "config.json").write_text(json.dumps({"vision_config": {"image_size": 96}}))
    (tmp_path / "run" / "stage1.json").write_text(json.dumps({"steps": 1500}))
    metas = ablation.collect_metas(tmp_path / "data")
    start = ablation.start_fingerprint(stage1)
    settings = ablation.ablation_settings(start, metas, {"a": {"data": ["synth-a"], "variants": ["soft_kl"]}},
                                          (0, 1), 10, 8, 3e-4)
    assert str(tmp_path) not in json.dumps(settings)
    assert settings["start"] == {"stage1_steps": 1500, "image_size": 96}
    assert settings["data"] == {"synth-a": {"seed": 0, "n_scenes": 3}}
    out = tmp_path / "cache"
    out.mkdir()
    pd.DataFrame({"x": [1.5]}).to_csv(out / "results.csv", index=False)
    pd.DataFrame({"y": [2.5]}).to_csv(out / "curves.csv", index=False)
    (out / "settings.json").write_text(json.dumps(settings))
    results, curves = ablation.read_cached(out, settings)
    assert results["x"][0] == 1.5 and curves["y"][0] == 2.5
    assert ablation.read_cached(out, {**settings, "steps": 11}) is None
    assert ablation.read_cached(tmp_path / "nowhere", settings) is None
    with pytest.raises(DeqaError, match="found twice"):
        ablation.collect_metas([tmp_path / "data", tmp_path / "data"])


@pytest.mark.slow
def test_run_ablation_trains_evaluates_and_reuses_its_cache(tiny_model, smoke_data, tmp_path):
    data_dir = Path(smoke_data[0]).parent.parent
    plan = {"co-train": {"data": ["synth-koniq", "synth-spaq"], "variants": ["soft_kl", "soft_kl_fid"], "curves": True}}
    results, curves = ablation.run_ablation(tiny_model, data_dir, tmp_path / "out", seeds=(0, 1), steps=2,
                                            batch_size=2, plan=plan, progress=False)
    assert len(results) == 2 * 2 * 3  # variants x seeds x (two test sets + pooled)
    assert (results["steps"] == 2).all()
    assert set(results["test_set"]) == {"synth-koniq", "synth-spaq", ablation.POOLED}
    assert results[results.test_set != ablation.POOLED]["srcc"].notna().all()
    assert set(curves["variant"]) == {"soft_kl", "soft_kl_fid"} and curves["n"].sum() == 2 * 2 * results["n"].max()
    assert not (tmp_path / "out" / "work").exists()
    stamp = (tmp_path / "out" / "results.csv").stat().st_mtime_ns
    again, _ = ablation.run_ablation(tiny_model, data_dir, tmp_path / "out", seeds=(0, 1), steps=2, batch_size=2,
                                     plan=plan, progress=False)
    assert (tmp_path / "out" / "results.csv").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again, results)
    # with the start model's fingerprint given, the cache is read without the model itself
    start = ablation.start_fingerprint(tiny_model)
    read, _ = ablation.run_ablation(tmp_path / "absent", data_dir, tmp_path / "out", seeds=(0, 1), steps=2,
                                    batch_size=2, plan=plan, progress=False, start=start)
    pd.testing.assert_frame_equal(read, results)
    with pytest.raises(DeqaError, match="made with"):
        ablation.run_ablation(tiny_model, data_dir, tmp_path / "out", seeds=(0,), steps=2, batch_size=2, plan=plan,
                              progress=False, start={**start, "stage1_steps": 5})


def test_embedded_start_is_chapter_04s_recipe():
    from deqa.recipe import EMBEDDED

    assert ablation.embedded_start() == {"stage1_steps": EMBEDDED["stage1_steps"], "image_size": EMBEDDED["image_size"]}
    with pytest.raises(DeqaError, match="no start model"):
        ablation.start_fingerprint("/nonexistent/stage1")


@pytest.mark.slow
def test_two_workers_give_the_numbers_of_one(tiny_model, smoke_data, tmp_path):
    data_dir = Path(smoke_data[0]).parent.parent
    plan = {"one": {"data": ["synth-koniq"], "variants": ["soft_kl_fid"], "seeds": [3], "steps": 1, "test": []},
            "two": {"data": ["synth-koniq", "synth-spaq"], "variants": ["onehot_ce"], "curves": True}}
    kw = dict(seeds=(0,), steps=2, batch_size=2, plan=plan, progress=False, recompute=True)
    one, curves_one = ablation.run_ablation(tiny_model, data_dir, tmp_path / "a", workers=1, **kw)
    two, curves_two = ablation.run_ablation(tiny_model, data_dir, tmp_path / "b", workers=2, **kw)
    assert list(one["arm"]) == ["one", "one", "two", "two", "two"] and set(one.query("arm == 'one'")["seed"]) == {3}
    assert one["js_ratings"].notna().all() and one["spread_error"].notna().all()
    single = ablation.run_ablation(tiny_model, data_dir, tmp_path / "c", **{**kw, "plan": {"one": {**plan["one"], "steps": 2}}})[0]
    assert single.loc[0, "srcc"] != one.loc[0, "srcc"]  # its own steps: 1 step is not 2
    cols = [c for c in one.columns if c != "train_seconds"]
    pd.testing.assert_frame_equal(one[cols], two[cols])
    pd.testing.assert_frame_equal(curves_one, curves_two)
    assert set(curves_one["arm"]) == {"two"}  # only the arm that asks for curves keeps them


@pytest.mark.slow
def test_a_run_two_arms_share_is_trained_once(tiny_model, smoke_data, tmp_path, monkeypatch):
    data_dir = Path(smoke_data[0]).parent.parent
    trained = []
    real = ablation.run_one
    monkeypatch.setattr(ablation, "run_one", lambda **job: trained.append(job["settings"]) or real(**job))
    plan = {"ranges": {"data": ["synth-koniq"], "variants": ["soft_kl_fid"], "curves": True},
            **ablation.design_plan(["synth-koniq"], ["synth-spaq"], choices=["gamma"])}
    results, curves = ablation.run_ablation(tiny_model, data_dir, tmp_path / "out", seeds=(0,), steps=2,
                                            batch_size=2, plan=plan, progress=False)
    assert len(trained) == 3   # ranges/soft_kl_fid is gamma/0.05: trained once, reported twice
    same = results[(results.arm == "ranges") | (results.variant == "0.05")]
    pd.testing.assert_frame_equal(same[same.arm == "ranges"].drop(columns=["arm", "variant"]).reset_index(drop=True),
                                  same[same.arm == "gamma"].drop(columns=["arm", "variant"]).reset_index(drop=True))
    assert list(results.query("arm == 'gamma'")["variant"].unique()) == ["0.005", "0.05", "0.5"]
    assert set(curves["arm"]) == {"ranges"}
    again, _ = ablation.run_ablation(tiny_model, data_dir, tmp_path / "out", seeds=(0,), steps=2, batch_size=2,
                                     plan=plan, progress=False)
    pd.testing.assert_frame_equal(again, results)   # "0.05" read back as a name, not a number


def test_plan_jobs_lists_every_arm_variant_and_seed(tmp_path):
    metas = {n: tmp_path / f"{n}.csv" for n in ("synth-koniq", "synth-high", "synth-spaq")}
    data = ["synth-koniq", "synth-high"]
    plan = {"ranges": {"data": data, "variants": ["soft_kl", "soft_kl_fid"], "test": ["synth-spaq"]},
            **ablation.design_plan(data, ["synth-spaq"], seeds=[0, 1], choices=["gamma", "kl_vocab"])}
    jobs = ablation.plan_jobs("m", metas, plan, seeds=(0, 1, 2), steps=5)
    assert len(jobs) == 2 * 3 + 3 * 2 + 2 * 2
    assert {j["arm"] for j in jobs} == {"ranges", "gamma", "kl_vocab"} and all(j["steps"] == 5 for j in jobs)
    # ranges/soft_kl_fid seeds 0-1 are gamma/0.05 and kl_vocab/full: 16 jobs, 16 - 2 * 2 = 12 runs
    assert len({ablation.run_key(j) for j in jobs}) == 12
