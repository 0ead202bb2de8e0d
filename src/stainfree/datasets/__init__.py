"""Built-in data: synthetic cells and fields with known answers (:mod:`.synthetic`)."""
