"""The model contract: task names, label sets, tensor names and limits.

Written once here and read by training, export, the local runner, the Triton
client and the tests, so a label index means the same thing everywhere.
"""

from __future__ import annotations

from typing import Final

SENTIMENT: Final = "sentiment"
TOPIC: Final = "topic"
TASKS: Final = (SENTIMENT, TOPIC)

LABELS: Final[dict[str, tuple[str, ...]]] = {
    SENTIMENT: ("negative", "neutral", "positive"),
    TOPIC: ("business", "entertainment", "politics", "sport", "tech"),
}

# Max tokens per text (including [CLS]/[SEP]); longer texts are truncated.
# Sentiment: p99 of the training tweets is ~60 tokens, reviews run longer, so
# 128 covers a review's opening without paying for its tail.  Topic: a
# headline plus its first paragraphs decides the topic; 128 keeps CPU cost flat.
MAX_LENGTH: Final[dict[str, int]] = {SENTIMENT: 128, TOPIC: 128}

# ONNX / Triton tensor names of each classifier model.
INPUT_IDS: Final = "input_ids"
ATTENTION_MASK: Final = "attention_mask"
PROBABILITIES: Final = "probabilities"


def labels_for(task: str) -> tuple[str, ...]:
    """Label tuple for a task, or a ValueError that names the known tasks."""
    try:
        return LABELS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}") from None
