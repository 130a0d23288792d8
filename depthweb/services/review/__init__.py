"""Review use cases: import images, pseudo-label them, compute labels from corrections, export.

Each function takes a :class:`ReviewContext` (engine + blob store from settings) and the acting
user; sessions are opened inside, one transaction per unit of work. Importing this package
opens nothing.
"""

from depthweb.services.review.context import ReviewContext, blob_root
from depthweb.services.review.exporter import (
    FILTERS,
    ExportReport,
    export_dataset,
    push_export,
    resolve_out_dir,
)
from depthweb.services.review.importer import ImportReport, ensure_dataset, import_images
from depthweb.services.review.labels import (
    GROUND_TRUTH_MODEL,
    CorrectionResult,
    Label,
    TaskView,
    build_label,
    current_label,
    image_rgb,
    load_task_view,
    preview_correction,
    save_correction,
)
from depthweb.services.review.pseudolabel import PseudoLabelReport, disagreement, pseudo_label

__all__ = [
    "FILTERS",
    "GROUND_TRUTH_MODEL",
    "CorrectionResult",
    "ExportReport",
    "ImportReport",
    "Label",
    "PseudoLabelReport",
    "ReviewContext",
    "TaskView",
    "blob_root",
    "build_label",
    "current_label",
    "disagreement",
    "ensure_dataset",
    "export_dataset",
    "image_rgb",
    "import_images",
    "load_task_view",
    "preview_correction",
    "pseudo_label",
    "push_export",
    "resolve_out_dir",
    "save_correction",
]
