"""Honest estimates of a classifier: protocols, metrics with intervals, baselines.

- :mod:`.protocols`: splits of cells into training and test sets;
- :mod:`.metrics`: classification metrics and their intervals;
- :mod:`.baselines`: a features random forest and the majority class;
- :mod:`.evaluate`: a classifier evaluated under a protocol.
"""
