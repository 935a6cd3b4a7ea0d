"""The moodwire command line: one module per command group; main.py holds the group."""
