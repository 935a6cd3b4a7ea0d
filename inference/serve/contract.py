"""The model contract: task names, label sets, tensor names and limits.

Written once here and read by training, export, the local runner, the Triton
client and the tests, so a label index means the same thing everywhere.  One
encoder serves both tasks: a single ONNX graph takes token ids and returns
one probability tensor per task (``OUTPUTS``), so each text costs one
encoder pass.
"""

from __future__ import annotations

from typing import Final

SENTIMENT: Final = "sentiment"
TOPIC: Final = "topic"
TASKS: Final = (SENTIMENT, TOPIC)

LABELS: Final[dict[str, tuple[str, ...]]] = {
    SENTIMENT: ("negative", "neutral", "positive"),
    # The five BBC News topics plus `other` for texts outside them (health,
    # science, travel, a product complaint), so they are not forced into one.
    TOPIC: ("business", "entertainment", "politics", "sport", "tech", "other"),
}

# Max tokens per text (including [CLS]/[SEP]).  Headlines are ~15-30 tokens
# and never reach it; a longer text keeps its first TRUNCATION_HEAD tokens
# and its last MAX_LENGTH - TRUNCATION_HEAD (a review's verdict is often at
# its end, an article's topic at its start).  Padding is per batch, so the
# bound costs nothing for short texts.
MAX_LENGTH: Final = 256
TRUNCATION_HEAD: Final = 128

# Name of the one multi-task model: artefact directory, version prefix.
MODEL_NAME: Final = "moodwire"

# ONNX / Triton tensor names of the multi-task encoder.
INPUT_IDS: Final = "input_ids"
ATTENTION_MASK: Final = "attention_mask"
OUTPUTS: Final[dict[str, str]] = {
    SENTIMENT: "sentiment_probabilities",
    TOPIC: "topic_probabilities",
}


def labels_for(task: str) -> tuple[str, ...]:
    """Label tuple for a task, or a ValueError that names the known tasks."""
    try:
        return LABELS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}") from None
