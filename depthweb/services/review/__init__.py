"""Review use cases: import images, pseudo-label them, compute labels from corrections, export.

Each function takes a :class:`ReviewContext` (engine + blob store from settings) and the acting
user; sessions are opened inside, one transaction per unit of work. Importing this package
opens nothing.
"""

from depthweb.services.review.actions import (
    merge_branches,
    pick_branch,
    reapply_rules,
    save_correction,
    undo_last,
)
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
    LIMITS,
    CorrectionResult,
    Label,
    current_label,
    export_label,
    image_rgb,
)
from depthweb.services.review.pseudolabel import PseudoLabelReport, disagreement, pseudo_label

__all__ = [
    "FILTERS",
    "GROUND_TRUTH_MODEL",
    "LIMITS",
    "CorrectionResult",
    "ExportReport",
    "ImportReport",
    "Label",
    "PseudoLabelReport",
    "ReviewContext",
    "blob_root",
    "current_label",
    "disagreement",
    "ensure_dataset",
    "export_dataset",
    "export_label",
    "image_rgb",
    "import_images",
    "merge_branches",
    "pick_branch",
    "pseudo_label",
    "push_export",
    "reapply_rules",
    "resolve_out_dir",
    "save_correction",
    "undo_last",
]
