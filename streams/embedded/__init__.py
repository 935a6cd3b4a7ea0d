"""The embedded stack's processes: the tansu broker and the child-process helpers."""
