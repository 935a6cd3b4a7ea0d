"""Training data: corpora read from pinned packages, our label files (*.tsv) and the annotation tools."""
