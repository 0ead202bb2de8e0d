"""stainfree: label-free single-cell image analysis.

The CellSet (images plus a per-cell table) travels through every stage::

    import stainfree as sf
    cells = sf.import_cells("jurkat-bbbc048", "jurkat.cells", layout="ifc", channels=["Ch3", "Ch6"])
    cells = sf.open_cellset("jurkat.cells").merge_classes({"Interphase": ["G1", "S", "G2"]})
    features = sf.pp.measure_cells(cells)  # AnnData: X the features, obs the cell table
    sf.tl.rank_features(features, "label", group="Interphase", reference="rest")

As in scanpy, ``sf.pp`` (measurements), ``sf.tl`` (clusters, probes, feature ranking) and
``sf.pl`` (figures) group functions by job; their heavy imports happen on first use. The API
reference is built from the docstrings: ``sphinx-build docs/api docs/api/_build``.
"""

__version__ = "0.1.0"

from . import pl, pp, tl  # noqa: E402
from .core.append import append_cells  # noqa: E402
from .core.cellset import CellSet  # noqa: E402
from .core.store import CellSetWriter, concat, open_cellset  # noqa: E402
from .core.virtual import open_cellsets  # noqa: E402
from .io.images import read_image  # noqa: E402
from .io.importers import import_cells  # noqa: E402
from .io.scan import scan_source  # noqa: E402
from .utils import StainfreeError  # noqa: E402

__all__ = [
    "CellSet",
    "CellSetWriter",
    "StainfreeError",
    "append_cells",
    "concat",
    "import_cells",
    "open_cellset",
    "open_cellsets",
    "pl",
    "pp",
    "read_image",
    "scan_source",
    "tl",
    "__version__",
]
