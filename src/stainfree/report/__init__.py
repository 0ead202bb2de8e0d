"""The self-contained report.html of a run folder.

- :mod:`.html`: building blocks (escaping, images, tables) and the run it describes;
- :mod:`.sections`: each section, drawn from what the run folder holds, and the report.
"""
