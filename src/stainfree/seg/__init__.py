"""Segmentation of fields of view: learnt instance segmentation of unstained cells.

- :mod:`.networks`: segmentation networks by name (a small U-Net by default);
- :mod:`.targets`: the per-pixel maps a network learns from instance labels;
- :mod:`.instances`: network outputs to instance labels (seeded watershed, size filter);
- :mod:`.model`: :class:`~stainfree.seg.model.Segmenter`, a trained network with everything
  needed to reuse it (scale, channels, normalisation, provenance), tiled prediction;
- :mod:`.annotations`: label images, ImageJ ROI sets, COCO JSON and binary masks;
- :mod:`.training`: training and fine-tuning from annotated fields;
- :mod:`.scoring`: instance F1, average precision, splits and merges against a ground truth.

The classical threshold-and-watershed pipeline (for fluorescence) lives in
:mod:`stainfree.fields`.
"""
