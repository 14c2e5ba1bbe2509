"""deqa.data: every reader on the real annotation files (counts and cross-file equalities from the
MANIFEST of the real data) and every kind of bad input on small files written here."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from deqa import data
from deqa.errors import DeqaError
from deqa.levels import CENTERS, LABEL_COLUMNS
from deqa.soft_label import soft_labels


def _by_name(df: pd.DataFrame) -> pd.DataFrame:
    """Index a table by lower-case file name (copies differ in folder prefix and in case)."""
    return df.set_index(df["image"].str.rsplit("/", n=1).str[-1].str.lower())


@pytest.fixture(scope="module")
def koniq(real_iqa):
    return data.read_metadata(real_iqa / "koniq10k" / "koniq10k_distributions_sets.csv")


@pytest.fixture(scope="module")
def kadid(real_iqa):
    return data.read_metadata(real_iqa / "kadid10k" / "meta_info_KADID10kDataset.csv")


# ------------------------------------------------------------------------------- real files

def test_koniq_official_sets_file(koniq):
    assert koniq.attrs["format"] == "koniq" and len(koniq) == 10073
    assert list(koniq.columns[:5]) == list(data.SCHEMA)
    assert koniq["split"].value_counts().to_dict() == {"train": 7058, "test": 2015, "val": 1000}
    assert (koniq["dataset"] == "koniq10k").all()
    # mos: the 1-5 mean rating (1.096..4.310); std: SD on the same scale (0.296..1.098, mean 0.575)
    assert koniq["mos"].min() == pytest.approx(1.096, abs=1e-3)
    assert koniq["mos"].max() == pytest.approx(4.310, abs=1e-3)
    assert koniq["std"].min() == pytest.approx(0.296, abs=1e-3)
    assert koniq["std"].mean() == pytest.approx(0.575, abs=1e-3)
    # the 0-100 MOS column (pyiqa's and Q-Align's "MOS") is kept beside it
    assert koniq["mos_0_100"].min() == pytest.approx(3.912, abs=1e-3)
    assert koniq["mos_0_100"].max() == pytest.approx(88.389, abs=1e-3)
    hist = koniq[list(data.HISTOGRAM)].to_numpy()
    np.testing.assert_allclose(hist.sum(axis=1), 1.0, atol=1e-9)
    counts = hist * koniq["n_ratings"].to_numpy()[:, None]
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)  # fractions of whole counts
    assert koniq["n_ratings"].min() == 93 and koniq["n_ratings"].max() == 157
    assert koniq.attrs["lo"] == 1 and koniq.attrs["hi"] == 5 and not koniq.attrs["lower_is_better"]


def test_koniq_reader_gives_the_mean_rating_and_its_sd(koniq):
    """mos is sum_k k c_k and std the sample std (ddof=1) of the ratings the histogram implies;
    the image DeQA-Score's authors quote has gt_score 3.92660550458716 and std 0.5562."""
    hist = koniq[list(data.HISTOGRAM)].to_numpy()
    n = koniq["n_ratings"].to_numpy()
    mean = (hist * CENTERS).sum(axis=1)
    var = (hist @ CENTERS**2 - mean**2) * n / (n - 1)
    np.testing.assert_allclose(koniq["mos"], mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(koniq["std"], np.sqrt(var), atol=1e-9)
    row = koniq.set_index("image").loc["10009096245.jpg"]
    assert row["mos"] == pytest.approx(3.92660550458716, abs=1e-9)
    assert row["std"] == pytest.approx(0.5562, abs=5e-5)
    assert row["mos_0_100"] == pytest.approx(77.24, abs=5e-3)


def test_koniq_reference_labels_reproduce_the_published_example(koniq):
    """Reference mode with the published method for KonIQ (pdf), rescaled by the min and max of all
    10,073 images, gives the label the authors published for 10009096245.jpg."""
    levels = data.to_levels(koniq, reference=True)  # method="official": pdf for koniq10k
    assert levels.attrs["methods"] == {"koniq10k": "pdf"}
    row = levels.set_index("image").loc["10009096245.jpg"]
    assert row["mu"] == pytest.approx(4.5228216, abs=1e-6)
    assert row["sigma"] == pytest.approx(0.6922768, abs=1e-6)
    np.testing.assert_allclose(row[list(LABEL_COLUMNS)].to_numpy(float),
                               [0, 0, 0.04484, 0.47853, 0.50252], atol=5e-5)


def test_koniq_pyiqa_copy_equals_official(real_iqa, koniq):
    pyiqa = data.read_metadata(real_iqa / "koniq10k" / "meta_info_KonIQ10kDataset.csv")
    assert pyiqa.attrs["format"] == "pyiqa" and len(pyiqa) == 10073
    a, b = koniq.set_index("image"), pyiqa.set_index("image").loc[koniq["image"]]
    for col in ("mos", "std", "mos_0_100", *data.HISTOGRAM, "n_ratings"):
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy(), err_msg=col)
    assert (pyiqa.attrs["lo"], pyiqa.attrs["hi"]) == (1, 5)
    assert (a["split"].to_numpy() == b["split"].to_numpy()).all()  # 0/1/2 decoded as train/val/test


def test_koniq_liqe_copy_is_the_histogram_mean(real_iqa, koniq):
    liqe = data.read_metadata(real_iqa / "koniq10k" / "koniq10k_all.txt")
    assert liqe.attrs["format"] == "liqe" and len(liqe) == 10073 and liqe["split"].eq("test").all()
    official = _by_name(koniq).loc[_by_name(liqe).index]
    np.testing.assert_allclose(liqe["mos"], official["mos"], atol=1e-6)  # both the 1-5 mean rating
    np.testing.assert_allclose(liqe["std"], official["std"], atol=1e-6)


def test_kadid_pyiqa_std_column_is_the_variance(real_iqa, kadid):
    assert len(kadid) == 10125 and kadid["ref"].nunique() == 81
    assert not kadid.attrs["lower_is_better"] and kadid.attrs["lo"] == 1 and kadid.attrs["hi"] == 5
    assert kadid["mos"].min() == pytest.approx(1.0) and kadid["mos"].max() == pytest.approx(4.93)
    liqe = data.read_metadata(real_iqa / "kadid10k" / "kadid10k_all.txt")
    assert len(liqe) == 10125
    other = _by_name(liqe).loc[_by_name(kadid).index]
    np.testing.assert_array_equal(kadid["mos"].to_numpy(), other["mos"].to_numpy())
    np.testing.assert_allclose(kadid["std"].to_numpy(), other["std"].to_numpy(), atol=1e-5)
    raw = data.read_metadata(real_iqa / "kadid10k" / "meta_info_KADID10kDataset.csv",
                             std_is_variance=False)
    assert raw["std"].max() == pytest.approx(1.593, abs=1e-3)  # the variance, as stored
    np.testing.assert_allclose(np.sqrt(raw["std"]), kadid["std"], atol=0)


def test_live_challenge_pyiqa_and_liqe(real_iqa):
    pyiqa = data.read_metadata(real_iqa / "live_challenge" / "meta_info_LIVEChallengeDataset.csv")
    liqe = data.read_metadata(real_iqa / "live_challenge" / "clive_all.txt")
    assert len(pyiqa) == 1169 and len(liqe) == 1162
    assert pyiqa["dataset"].iloc[0] == liqe["dataset"].iloc[0] == "livec"
    assert {f"t{i}.bmp" for i in range(1, 8)} <= set(pyiqa["image"])
    assert pyiqa["mos"].min() == pytest.approx(3.42, abs=0.01)
    assert pyiqa["std"].min() == pytest.approx(6.76, abs=0.01)
    shared = _by_name(pyiqa).loc[_by_name(liqe).index]
    np.testing.assert_allclose(shared["mos"], liqe["mos"], atol=1e-6)
    np.testing.assert_allclose(shared["std"], liqe["std"], atol=1e-6)


def test_spaq_has_no_std(real_iqa):
    spaq = data.read_metadata(real_iqa / "spaq" / "meta_info_SPAQDataset.csv")
    assert len(spaq) == 11125 and spaq["std"].isna().all()
    assert (spaq["mos"].min(), spaq["mos"].max()) == (2.0, 96.0)
    assert spaq["mos"].mean() == pytest.approx(50.32, abs=0.01)
    extra = data.read_metadata(real_iqa / "spaq" / "meta_info_SPAQDataset.csv", keep_extra=True)
    assert {"Sharpness", "Brightness.1"} <= set(extra.columns)


def test_csiq_dmos_is_lower_better_and_liqe_is_one_minus_it(real_iqa):
    csiq = data.read_metadata(real_iqa / "csiq" / "meta_info_CSIQDataset.csv")
    assert len(csiq) == 866 and csiq.attrs["lower_is_better"] and csiq["std"].isna().all()
    assert csiq["mos"].mean() == pytest.approx(0.351, abs=1e-3)
    liqe = data.read_metadata(real_iqa / "csiq" / "csiq_all.txt")
    assert len(liqe) == 866 and not liqe.attrs["lower_is_better"]
    other = _by_name(liqe).loc[_by_name(csiq).index]
    np.testing.assert_allclose(1.0 - csiq["mos"].to_numpy(), other["mos"].to_numpy(), atol=5e-4 + 1e-9)
    levels = data.to_levels(csiq)
    best = csiq["mos"].idxmin()
    assert levels["mu"].iloc[best] == pytest.approx(5.0)  # the lowest DMOS is the best image


def test_live_and_live_md_are_dmos(real_iqa):
    live = data.read_metadata(real_iqa / "live_iqa_r2" / "meta_info_LIVEIQADataset.csv")
    live_md = data.read_metadata(real_iqa / "live_md" / "meta_info_LIVEMDDataset.csv")
    assert (len(live), len(live_md)) == (779, 450)
    assert live.attrs["lower_is_better"] and live_md.attrs["lower_is_better"]
    assert live["image"].str.split("/").str[0].value_counts()["jpeg"] == 175


def test_tid2013(real_iqa):
    tid = data.read_metadata(real_iqa / "tid2013" / "meta_info_TID2013Dataset.csv")
    assert len(tid) == 3000 and tid["ref"].nunique() == 25 and not tid.attrs["lower_is_better"]
    assert tid["mos"].min() == pytest.approx(0.242, abs=1e-3)
    assert tid["mos"].max() == pytest.approx(7.214, abs=1e-3)
    assert tid["std"].max() == pytest.approx(0.300, abs=1e-3)
    assert (tid.attrs["lo"], tid.attrs["hi"]) == (0, 9)


def test_qalign_koniq_is_the_official_test_split(real_iqa, koniq):
    q = data.read_metadata(real_iqa / "q_align_splits" / "test_koniq.json")
    assert q.attrs["format"] == "qalign_json" and len(q) == 2010 and q["std"].isna().all()
    official = _by_name(koniq).loc[_by_name(q).index]
    assert official["split"].eq("test").all()
    # Q-Align's KonIQ score is the 0-100 column, read on its nominal 0-100 scale
    np.testing.assert_array_equal(q["mos"].to_numpy(), official["mos_0_100"].to_numpy())
    assert (q.attrs["lo"], q.attrs["hi"]) == (0, 100)
    train = data.read_metadata(real_iqa / "koniq10k" / "koniq10k_distributions_sets.csv", split="train")
    assert len(train) == 7058
    data.check_no_overlap(train, q, by="name")  # Q-Align's test images are not training images
    with pytest.raises(DeqaError, match=r"2010 test image\(s\).*koniq10k/"):
        data.check_no_overlap(koniq, q, by="name")


def test_qalign_kadid_scores_come_from_the_id(real_iqa, kadid):
    q = data.read_metadata(real_iqa / "q_align_splits" / "test_kadid.json")
    assert len(q) == 2000 and q["dataset"].eq("kadid10k").all()
    other = _by_name(kadid).loc[_by_name(q).index]
    np.testing.assert_array_equal(q["mos"].to_numpy(), other["mos"].to_numpy())
    assert sorted(other["ref"].unique()) == [f"I{i}.png" for i in range(66, 82)]


def test_agiqa_csv_and_qalign_string_scores(real_iqa):
    agi = data.read_metadata(real_iqa / "agiqa3k" / "data.csv")
    q = data.read_metadata(real_iqa / "q_align_splits" / "agi.json")
    assert len(agi) == len(q) == 2982 and agi["dataset"].iloc[0] == q["dataset"].iloc[0] == "agiqa3k"
    assert agi["std"].min() == pytest.approx(0.108, abs=1e-3)  # std_quality, not std_align
    np.testing.assert_array_equal(_by_name(q).loc[_by_name(agi).index, "mos"].to_numpy(),
                                  agi["mos"].to_numpy())


def test_to_levels_on_koniq(koniq):
    levels = data.to_levels(koniq, reference=False)   # the projection: every row sums to 1, mean mu
    q = levels[list(LABEL_COLUMNS)].to_numpy()
    assert levels["mu"].min() == pytest.approx(1.0) and levels["mu"].max() == pytest.approx(5.0)
    np.testing.assert_allclose(levels["sigma"], 4 * koniq["std"] / (koniq["mos"].max() - koniq["mos"].min()))
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(q @ CENTERS, levels["mu"], atol=1e-6)
    np.testing.assert_allclose(q, soft_labels(levels["mu"], levels["sigma"], "pdf", reference=False), atol=0)
    nominal = data.to_levels(koniq, nominal=True)
    np.testing.assert_allclose(nominal["mu"], koniq["mos"])  # the mean rating is already on 1-5
    explicit = data.to_levels(koniq, lo=1, hi=5)
    np.testing.assert_allclose(explicit["mu"], nominal["mu"])


def test_official_method_names():
    for name in ("koniq10k", "KonIQ-10k", "koniq", "kadid10k", "KADID-10k", "kadid"):
        assert data.official_method(name) == "pdf", name
    for name in ("spaq", "livec", "koniq10k++", "synth-koniq", "synth-spaq", "toy", "agiqa3k"):
        assert data.official_method(name) == "cdf", name


def test_official_method_is_pdf_or_cdf_per_data_set(real_iqa, koniq, kadid):
    livec = data.read_metadata(real_iqa / "live_challenge" / "meta_info_LIVEChallengeDataset.csv")
    mixed = data.combine([koniq, kadid.assign(split="train"), livec.assign(split="train")])
    for reference in (False, True):
        official = data.to_levels(mixed, reference=reference)
        assert official.attrs["methods"] == {"koniq10k": "pdf", "kadid10k": "pdf", "livec": "cdf"}
        for method in ("pdf", "cdf"):
            fixed = data.to_levels(mixed, method=method, reference=reference)
            rows = (official["dataset"].map(official.attrs["methods"]) == method).to_numpy()
            assert rows.sum() == {"pdf": 10073 + 10125, "cdf": 1169}[method]
            np.testing.assert_array_equal(official.loc[rows, list(LABEL_COLUMNS)].to_numpy(),
                                          fixed.loc[rows, list(LABEL_COLUMNS)].to_numpy())
            assert np.abs(official.loc[~rows, list(LABEL_COLUMNS)].to_numpy()
                          - fixed.loc[~rows, list(LABEL_COLUMNS)].to_numpy()).max() > 0.01
    with pytest.raises(DeqaError, match="unknown method 'gauss'"):
        data.to_levels(mixed, method="gauss")


def test_combine_keeps_each_scale(koniq, kadid):
    both = data.combine([koniq, kadid.assign(split="train")])
    assert len(both) == 10073 + 10125
    assert both.attrs["scales"]["kadid10k"] == {"lo": 1.0, "hi": 5.0, "lower_is_better": False}
    levels = data.to_levels(both, nominal=True)
    kd = levels[levels["dataset"] == "kadid10k"]
    np.testing.assert_allclose(kd["mu"], kd["mos"])  # KADID's nominal scale is already 1..5
    with pytest.raises(DeqaError, match=r"10073 image\(s\) appear twice"):
        data.combine([koniq, koniq])


# ------------------------------------------------------------------------------- bad input

def _csv(tmp_path, text, name="meta.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "image,mos,std,dataset,split\na.jpg,3.1,0.5,toy,train\nb.jpg,2.0,0.4,toy,test\nc.jpg,4.5,,toy,val\n"


def test_own_schema_csv_reads(tmp_path):
    df = data.read_metadata(_csv(tmp_path, GOOD))
    assert df.attrs["format"] == "csv" and list(df["split"]) == ["train", "test", "val"]
    assert np.isnan(df["std"].iloc[2]) and df["mos"].tolist() == [3.1, 2.0, 4.5]
    assert len(data.read_metadata(_csv(tmp_path, GOOD), split="val")) == 1
    assert df.attrs["lower_is_better"] is False and df.attrs["lo"] is None


def test_synthetic_scale_comes_from_params_json(tmp_path):
    (tmp_path / "params.json").write_text(json.dumps({"spec": {"scale": "dmos-0-100"}}))
    df = data.read_metadata(_csv(tmp_path, GOOD.replace("3.1", "30").replace("4.5", "45")))
    assert df.attrs["lower_is_better"] and (df.attrs["lo"], df.attrs["hi"]) == (0, 100)
    levels = data.to_levels(df, nominal=True)
    np.testing.assert_allclose(levels["mu"], 6 - (4 * df["mos"] / 100 + 1))  # flipped DMOS


@pytest.mark.parametrize("bad_row, expected", [
    ("b.jpg,,0.4,toy,test", r"row 2 \(image 'b.jpg'\): MOS is missing"),
    ("b.jpg,abc,0.4,toy,test", r"row 2 \(image 'b.jpg'\): MOS is not a number \('abc'\)"),
    ("b.jpg,2.0,-0.4,toy,test", r"row 2 \(image 'b.jpg'\): std is negative"),
    ("b.jpg,2.0,0.4,toy,holdout", r"row 2 \(image 'b.jpg'\): unknown split 'holdout'"),
    ("a.jpg,2.0,0.4,toy,test", r"row 2 \(image 'a.jpg'\): duplicated image name, already at row 1"),
    ("B/A.JPG,2.0,0.4,toy,test", None),
])
def test_bad_rows_name_file_and_row(tmp_path, bad_row, expected):
    path = _csv(tmp_path, f"image,mos,std,dataset,split\na.jpg,3.1,0.5,toy,train\n{bad_row}\n")
    if expected is None:  # a different folder is a different image
        assert len(data.read_metadata(path)) == 2
        return
    with pytest.raises(DeqaError, match=expected) as info:
        data.read_metadata(path)
    assert "meta.csv" in str(info.value) and "\n" not in str(info.value)


def test_duplicates_are_case_insensitive(tmp_path):
    path = _csv(tmp_path, "image,mos\nImg/A.jpg,3\nimg\\a.JPG,4\n")
    with pytest.raises(DeqaError, match=r"meta.csv: row 2 .*duplicated"):
        data.read_metadata(path)


def test_file_level_errors(tmp_path):
    with pytest.raises(DeqaError, match=r"empty\.csv: the file is empty"):
        data.read_metadata(_csv(tmp_path, "", "empty.csv"))
    with pytest.raises(DeqaError, match=r"header\.csv: no data rows"):
        data.read_metadata(_csv(tmp_path, "image,mos,std\n", "header.csv"))
    with pytest.raises(DeqaError, match=r"nomos\.csv: missing required column\(s\) \['mos'\]"):
        data.read_metadata(_csv(tmp_path, "image,score2\na.jpg,1\n", "nomos.csv"), format="csv")
    with pytest.raises(DeqaError, match=r"odd\.csv: no image column .* or no MOS column"):
        data.read_metadata(_csv(tmp_path, "foo,bar\n1,2\n", "odd.csv"))
    with pytest.raises(DeqaError, match=r"unknown metadata format 'xlsx'"):
        data.read_metadata(_csv(tmp_path, GOOD), format="xlsx")
    with pytest.raises(DeqaError, match=r"cannot tell the metadata format"):
        data.read_metadata(_csv(tmp_path, GOOD, "meta.dat"))
    with pytest.raises(DeqaError, match=r"missing\.csv: metadata file not found"):
        data.read_metadata(tmp_path / "missing.csv")
    with pytest.raises(DeqaError, match=r"split must be one of"):
        data.read_metadata(_csv(tmp_path, GOOD), split="dev")
    with pytest.raises(DeqaError, match=r"unknown option"):
        data.read_metadata(_csv(tmp_path, GOOD), std_sacle=2)


def test_pyiqa_bad_values(tmp_path):
    kadid_like = "ref_name,dist_name,dmos,std\nI01.png,I01_01_01.png,4.5,0.49\nI01.png,I01_01_02.png,4.3,-0.1\n"
    with pytest.raises(DeqaError, match=r"kadid\.csv: row 2 \(image 'I01_01_02.png'\): the variance"):
        data.read_metadata(_csv(tmp_path, kadid_like, "kadid.csv"))
    koniq_like = ("img_name,mos,std,split,c1,c2,c3,c4,c5,c_total\n"
                  "a.jpg,50,0.5,0,0,0,1,0,0,100\nb.jpg,50,0.5,7,0,0,1,0,0,100\n")
    with pytest.raises(DeqaError, match=r"k\.csv: row 2 \(image 'b.jpg'\): unknown split '7' \(use one of train, val, test\)"):
        data.read_metadata(_csv(tmp_path, koniq_like, "k.csv"))
    ok = data.read_metadata(_csv(tmp_path, koniq_like.replace(",7,", ",2,"), "k.csv"))
    assert ok["split"].tolist() == ["train", "test"] and ok["std"].tolist() == [0.5, 0.5]
    assert ok["mos"].tolist() == [3.0, 3.0] and ok["mos_0_100"].tolist() == [50.0, 50.0]
    bad_hist = koniq_like.replace(",7,0,0,1,0,0,", ",1,0,0,0.5,0,0,")
    with pytest.raises(DeqaError, match=r"row 2 \(image 'b.jpg'\): c1..c5 must sum to 1"):
        data.read_metadata(_csv(tmp_path, bad_hist, "k.csv"))


def test_liqe_and_json_errors(tmp_path):
    txt = tmp_path / "toy_all.txt"
    txt.write_text("x/a.png\t3.0\t0.5\nx/b.png\tnan?\t0.5\n")
    with pytest.raises(DeqaError, match=r"toy_all\.txt: row 2 \(image 'x/b.png'\): MOS is not a number"):
        data.read_metadata(txt)
    deqa_json = tmp_path / "train_toy.json"
    deqa_json.write_text(json.dumps([{"image": "a.jpg", "gt_score": 3.0, "std": 0.4},
                                     {"image": "b.jpg", "gt_score": 2.5, "std": -1}]))
    with pytest.raises(DeqaError, match=r"train_toy\.json: row 2 \(image 'b.jpg'\): std is negative"):
        data.read_metadata(deqa_json)
    qalign = tmp_path / "q.json"
    qalign.write_text(json.dumps([{"id": "a.jpg->3.5", "image": "t/a.jpg"}, {"id": "b.jpg", "image": "t/b.jpg"}]))
    with pytest.raises(DeqaError, match=r"q\.json: row 2 \(image 't/b.jpg'\): MOS is missing"):
        data.read_metadata(qalign)
    (tmp_path / "d.json").write_text('{"image": "a.jpg"}')
    with pytest.raises(DeqaError, match=r"d\.json: expected a JSON list"):
        data.read_metadata(tmp_path / "d.json")
    (tmp_path / "e.json").write_text("[]")
    with pytest.raises(DeqaError, match=r"e\.json: the file is empty"):
        data.read_metadata(tmp_path / "e.json")


def test_deqa_json_reads(tmp_path):
    path = tmp_path / "test_toy.json"
    path.write_text(json.dumps([{"id": "1", "image": "a.jpg", "gt_score": 3.0, "std": 0.4,
                                 "gt_score_norm": 2.5, "level_probs": [0, 0.2, 0.6, 0.2, 0]},
                                {"image": "b.jpg", "gt_score": 1.5, "std": 0.2}]))
    df = data.read_metadata(path)
    assert df.attrs["format"] == "deqa_json" and df["dataset"].iloc[0] == "toy"
    assert df["mos"].tolist() == [3.0, 1.5] and df["std"].tolist() == [0.4, 0.2]


def test_overlap_checks(tmp_path):
    table = data.read_metadata(_csv(tmp_path, GOOD))
    train, test = table[table["split"] == "train"], table[table["split"] != "train"]
    data.check_no_overlap(train, test)
    with pytest.raises(DeqaError, match=r"train/test overlap: 1 test image\(s\).*toy/a.jpg"):
        data.check_no_overlap(train, table)
    leaked = data.combine([table, train.assign(split="test")], check_overlap=False)
    assert data.split_overlap(leaked)["image"].tolist() == ["a.jpg", "a.jpg"]
    with pytest.raises(DeqaError, match=r"split overlap: 1 image\(s\).*toy/a.jpg in test and train"):
        data.check_split_overlap(leaked)
    with pytest.raises(DeqaError, match="split overlap"):
        data.combine([table, train.assign(split="test")])
    other = train.assign(dataset="other")  # the same file name in another data set is another image
    assert len(data.combine([table, other.assign(split="test")])) == 4


def test_to_levels_refuses_scores_outside_the_scale(tmp_path):
    table = data.read_metadata(_csv(tmp_path, GOOD))
    with pytest.raises(DeqaError, match=r"row 3 \(image 'c.jpg'\) has MOS 4.5 outside the scale"):
        data.to_levels(table, lo=1, hi=4)
    levels = data.to_levels(table, lo=1, hi=5, reference=True)
    assert levels["q_excellent"].iloc[2] == pytest.approx(0.5)  # no std: the two-level label


# --------------------------------------------------------------------- DeQA-Score's own meta JSONs

def _deqa_entry(name, gt, std, mu, sigma, probs=None):
    """One entry as the published label builder writes it (level_probs ordered excellent..bad)."""
    entry = {"id": f"{name}->{gt}", "image": f"koniq/{name}", "gt_score": gt, "gt_score_norm": mu,
             "std": std, "std_norm": sigma}
    if probs is not None:  # train entries only
        entry.update(level_probs_org=[0.1] * 5, level_probs=probs, conversations=[
            {"from": "human", "value": "How would you rate the quality of this image?\n<|image|>"},
            {"from": "gpt", "value": "The quality of the image is good."}])
    return entry


# mu / sigma as published: rescaled with the min and max of all 10,073 KonIQ images (1.0962 .. 4.3100),
# not with this file's. The second label sums to 1.07, as clipped published labels can.
TRAIN = [_deqa_entry("10009096245.jpg", 3.92660550458716, 0.5562, 4.5228216, 0.6922768,
                     [0.50252, 0.47853, 0.04484, 0.0, 0.0]),
         _deqa_entry("a.jpg", 2.9, 0.6, 3.2449, 0.7467, [0.02, 0.30, 0.55, 0.20, 0.0]),
         _deqa_entry("b.jpg", 2.1, 0.5, 2.2492, 0.6223, [0.0, 0.03, 0.25, 0.55, 0.17])]
TEST = [_deqa_entry("c.jpg", 3.3, 0.45, 3.7428, 0.5601), _deqa_entry("d.jpg", 1.8, 0.7, 1.8758, 0.8712)]


@pytest.fixture
def deqa_jsons(tmp_path):
    (tmp_path / "train_koniq_7k.json").write_text(json.dumps(TRAIN, indent=4))
    (tmp_path / "test_koniq_2k.json").write_text(json.dumps(TEST, indent=4))
    return tmp_path / "train_koniq_7k.json", tmp_path / "test_koniq_2k.json"


def test_deqa_json_named_train_is_the_train_split(deqa_jsons):
    train_path, test_path = deqa_jsons
    train, test = data.read_metadata(train_path), data.read_metadata(test_path)
    assert train.attrs["format"] == test.attrs["format"] == "deqa_json"
    assert train["split"].eq("train").all() and test["split"].eq("test").all()
    assert train["dataset"].eq("koniq10k").all() and (train.attrs["lo"], train.attrs["hi"]) == (1, 5)
    assert len(data.read_metadata(train_path, split="train")) == 3
    with pytest.raises(DeqaError, match=r"train_koniq_7k\.json: no rows in split 'test'"):
        data.read_metadata(train_path, split="test")


def test_deqa_json_keeps_its_own_mu_sigma_and_labels(deqa_jsons):
    train = data.read_metadata(deqa_jsons[0])
    mu, sigma = np.array([e["gt_score_norm"] for e in TRAIN]), np.array([e["std_norm"] for e in TRAIN])
    published = np.array([e["level_probs"][::-1] for e in TRAIN])  # bad..excellent
    # this file's own min and max would give other values: 5.0 for the first image, not 4.52
    assert data.to_levels(train.drop(columns=["gt_score_norm"]))["mu"].iloc[0] == pytest.approx(5.0)
    ref = data.to_levels(train, reference=True)
    np.testing.assert_array_equal(ref["mu"], mu)
    np.testing.assert_array_equal(ref["sigma"], sigma)
    np.testing.assert_array_equal(ref[list(LABEL_COLUMNS)].to_numpy(), published)
    assert ref[list(LABEL_COLUMNS)].sum(axis=1).iloc[1] == pytest.approx(1.07)
    # the projection builds its own label from the published mu and sigma (pdf for KonIQ)
    projection = data.to_levels(train, reference=False)
    np.testing.assert_array_equal(projection[list(LABEL_COLUMNS)].to_numpy(),
                                  soft_labels(mu, sigma, "pdf", mode="projection"))
    # the first image: the published label is what the reference builder gives for its mu, sigma
    np.testing.assert_allclose(soft_labels(mu[:1], sigma[:1], "pdf", reference=True)[0], published[0],
                               atol=5e-5)


def test_deqa_json_test_file_without_labels(deqa_jsons):
    both = data.combine([data.read_metadata(p) for p in deqa_jsons])
    ref = data.to_levels(both, reference=True)
    test = ref[ref["split"] == "test"]
    mu, sigma = [e["gt_score_norm"] for e in TEST], [e["std_norm"] for e in TEST]
    np.testing.assert_array_equal(test["mu"], mu)
    np.testing.assert_array_equal(test[list(LABEL_COLUMNS)].to_numpy(),
                                  soft_labels(mu, sigma, "pdf", reference=True))


def test_deqa_json_bad_level_probs(tmp_path):
    bad = [dict(TRAIN[0]), dict(TRAIN[1], level_probs=[0.5, 0.5, 0.0, 0.0])]
    (tmp_path / "train_toy.json").write_text(json.dumps(bad))
    with pytest.raises(DeqaError, match=r"train_toy\.json: row 2 \(image 'koniq/a.jpg'\): level_probs"):
        data.read_metadata(tmp_path / "train_toy.json")


# ------------------------------------------------------------------ distortions from file names
@pytest.mark.parametrize("folder, file, families, levels, refs", [
    ("kadid10k", "meta_info_KADID10kDataset.csv", 25, (1, 2, 3, 4, 5), 81),
    ("tid2013", "meta_info_TID2013Dataset.csv", 24, (1, 2, 3, 4, 5), 25),
    ("tid2008", "meta_info_TID2008Dataset.csv", 17, (1, 2, 3, 4), 25),
    ("csiq", "meta_info_CSIQDataset.csv", 6, (1, 2, 3, 4, 5), 30),
])
def test_every_published_file_name_gives_its_family_level_and_reference(real_iqa, folder, file, families,
                                                                        levels, refs):
    from deqa import formats

    table = data.read_metadata(real_iqa / folder / file)
    found = formats.distortions(table)
    assert found["family"].notna().all()  # every name of the real file parses
    assert found["family"].nunique() == families and found["ref"].str.upper().nunique() == refs
    assert tuple(sorted(found["level"].astype(int).unique())) == levels
    if folder != "csiq":  # a full factorial design: every reference has every family at every level
        assert len(table) == families * len(levels) * refs
    else:  # CSIQ: 150 images of each type, 116 contrast ones (MANIFEST)
        counts = found["family"].value_counts()
        assert counts["contrast decrement"] == 116 and (counts.drop("contrast decrement") == 150).all()


def test_distortion_names_and_the_synthetic_columns():
    from deqa import formats

    assert formats.parse_distortion("KADID10K/images/I01_03_02.png") == ("motion blur", 2, "I01")
    assert formats.parse_distortion("i25_17_4.bmp") == ("contrast change", 4, "I25")  # TID, lower case
    assert formats.parse_distortion("dst_imgs/awgn/shroom.AWGN.1.png") == ("white noise", 1, "shroom")
    assert formats.parse_distortion("child_swimming.jpeg2000.3.png") == ("jpeg2000", 3, "child_swimming")
    assert formats.parse_distortion("I01_30_02.png") is None  # no KADID type 30
    assert formats.parse_distortion("koniq/10004473376.jpg") is None
    table = pd.DataFrame({"image": ["s/a_blur2.png", "s/a_pristine0.png", "I02_10_05.png", "x.jpg"],
                          "distortion": ["blur", "pristine", None, None], "level": [2, 0, None, None],
                          "scene": ["a", "a", None, None]})
    found = formats.distortions(table)
    assert found["family"].tolist() == ["blur", "pristine", "jpeg", None]
    assert found["level"].tolist()[:3] == [2, 0, 5] and np.isnan(found["level"].iloc[3])
    assert found["ref"].tolist() == ["a", "a", "I02", None]
