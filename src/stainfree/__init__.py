"""stainfree: label-free single-cell image analysis.

The CellSet (images plus a per-cell table) travels through every stage::

    import stainfree as sf
    cells = sf.import_cells("jurkat-bbbc048", "jurkat.cells", layout="ifc", channels="Ch3,Ch6")
    cells = sf.open_cellset("jurkat.cells").merge_classes("G1,S,G2=Interphase")
"""

__version__ = "0.1.0"

from .cellset import CellSet, CellSetWriter, concat, open_cellset  # noqa: E402
from .io import import_cells, read_image, scan_source  # noqa: E402
from .utils import StainfreeError  # noqa: E402

__all__ = [
    "CellSet",
    "CellSetWriter",
    "StainfreeError",
    "concat",
    "import_cells",
    "open_cellset",
    "read_image",
    "scan_source",
    "__version__",
]
