"""A served artefact back in PyTorch (inference.train.from_artifact): the Chinese model trains on from it."""

from __future__ import annotations

import numpy as np
import pytest

from inference.serve.artifacts import ARTIFACTS_DIR, model_name
from inference.serve.contract import LABELS, SENTIMENT, TOPIC
from inference.serve.runner import LocalRunner

TEXTS = [
    "某银行因违规放贷被监管部门罚款三千万元",
    "公司一季度净利润同比增长45%，股价涨停",
    "公司将于5月20日召开年度股东大会",
    "房间很小，隔音太差，不会再来了",
    "服务热情，早餐丰富，下次还住",
    "虽然营收增长，但净利润大幅下滑",
    "恒指收市升300點，科技股造好",
    "国足客场两球战胜对手，晋级下一轮",
    "新款手机发布，搭载自研芯片",
    "央行宣布降准0.5个百分点",
    "云帆科技被曝泄露上千万用户数据",
    "这本书写得太好了，强烈推荐",
]


@pytest.mark.slow
def test_the_recovered_chinese_model_reads_as_the_served_one(tmp_path):
    from inference.train import multitask
    from inference.train.from_artifact import materialize
    from inference.train.training import torch_predictor

    saved = materialize(ARTIFACTS_DIR / model_name("zh"), tmp_path / "zh")
    model = multitask.load(saved)  # label sets checked against the contract
    assert model.encoder.config.vocab_size < 250_002  # the served, trimmed vocabulary
    probs = torch_predictor(saved)(TEXTS)
    served = LocalRunner(name=model_name("zh")).classify(TEXTS)
    for task in (SENTIMENT, TOPIC):
        ours = [LABELS[task][i] for i in probs[task].argmax(1)]
        theirs = [getattr(c, task).label for c in served]
        assert np.mean([a == b for a, b in zip(ours, theirs, strict=True)]) >= 0.9, (task, ours, theirs)
        gap = np.abs(probs[task] - [[getattr(c, task).scores[x] for x in LABELS[task]] for c in served])
        assert gap.mean() < 0.05
