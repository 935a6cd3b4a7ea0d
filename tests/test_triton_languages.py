"""Triton serves one model set per language: the Chinese copies are rendered, named and routed."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from inference.serve.artifacts import ARTIFACTS_DIR, load_artifact, model_name
from inference.serve.triton_client import language_models, load_contract
from inference.serve.triton_server import REPOSITORY_ROOT, render_repository


def two_language_root(tmp_path: Path) -> Path:
    """The committed artefacts, plus a Chinese model: the committed one, or (until one is
    committed) a copy of the English model under the Chinese name with its own version."""
    root = tmp_path / "artifacts"
    en = load_artifact(ARTIFACTS_DIR).directory
    shutil.copytree(en, root / model_name("en"), ignore=shutil.ignore_patterns("*.fp32.onnx"))
    zh_dir = ARTIFACTS_DIR / model_name("zh")
    if (zh_dir / "model.json").is_file():
        shutil.copytree(zh_dir, root / model_name("zh"), ignore=shutil.ignore_patterns("*.fp32.onnx"))
    else:
        shutil.copytree(en, root / model_name("zh"), ignore=shutil.ignore_patterns("*.fp32.onnx"))
        meta_file = root / model_name("zh") / "model.json"
        meta = json.loads(meta_file.read_text())
        meta.update(name=model_name("zh"), version="moodwire-zh-test-copy")
        meta_file.write_text(json.dumps(meta))
    return root


def test_chinese_models_are_rendered_beside_the_english_ones(tmp_path):
    root = two_language_root(tmp_path)
    repo = render_repository(REPOSITORY_ROOT / "cpu", tmp_path / "repo", root)
    contract = load_contract()
    zh_version = load_artifact(root, model_name("zh")).version
    entry, tokenizer, encoder = language_models(contract, "zh")
    assert (entry, tokenizer, encoder) == ("moodwire_zh", "tokenizer_zh", "encoder_zh")
    for name in (entry, tokenizer, encoder):
        config = (repo / name / "config.pbtxt").read_text()
        assert f'name: "{name}"' in config and "@ARTIFACT" not in config
    for name in (tokenizer, encoder):  # the models that read the artefact
        config = (repo / name / "config.pbtxt").read_text()
        assert str(root / model_name("zh")) in config and zh_version in config
    entry_config = (repo / entry / "config.pbtxt").read_text()
    assert '"tokenizer_model" value: { string_value: "tokenizer_zh" }' in entry_config
    assert '"encoder_model" value: { string_value: "encoder_zh" }' in entry_config
    english = (repo / "encoder" / "config.pbtxt").read_text()
    assert str(root / model_name("en")) in english and zh_version not in english
    # no Chinese TensorRT engine: the GPU repository stays English-only
    gpu = render_repository(REPOSITORY_ROOT / "gpu", tmp_path / "gpu", root)
    assert not (gpu / entry).exists()


@pytest.mark.triton
@pytest.mark.skipif(importlib.util.find_spec("pytriton") is None, reason="nvidia-pytriton not installed")
def test_a_router_over_triton_scores_each_language_with_its_model(tmp_path):
    from inference.serve.routing import LanguageRouter
    from inference.serve.runner import LocalRunner
    from inference.serve.triton_client import RetryPolicy, TritonRunner
    from inference.serve.triton_server import TritonServer, free_ports

    root = two_language_root(tmp_path)
    texts = ["Shares plunge after profit warning", "股市大跌，投资者恐慌", "央行宣布降准", "Cup final win"]
    langs = ["en", "zh", "zh-cn", "und"]
    with TritonServer("cpu", root, free_ports()) as server:
        policy = RetryPolicy(timeout_s=20)
        runners = {lang: TritonRunner(server.grpc_url, policy, language=lang) for lang in ("en", "zh")}
        router = LanguageRouter(runners)
        try:
            remote = router.classify(texts, langs)
        finally:
            router.close()
    local = {lang: LocalRunner(root, name=model_name(lang)) for lang in ("en", "zh")}
    for text, lang, got in zip(texts, langs, remote, strict=True):
        key = "zh" if lang.startswith("zh") else "en"
        (want,) = local[key].classify([text])
        assert got.sentiment.model_version == load_artifact(root, model_name(key)).version
        assert got.sentiment.label == want.sentiment.label and got.topic.label == want.topic.label
        for task in ("sentiment", "topic"):
            a, b = getattr(got, task).scores, getattr(want, task).scores
            assert max(abs(a[k] - b[k]) for k in a) <= 2e-6
