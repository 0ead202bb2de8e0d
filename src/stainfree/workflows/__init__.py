"""Functions that run one stage end to end and write its output (a model file or a run folder).

They read inputs from disk, call the library, and write atomically; the CLI only parses
arguments and prints what they return.
"""
