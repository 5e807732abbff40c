"""The model card dialog: what the model is, how well it did, on what data, its limits, its hashes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QScrollArea,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop.core.bundle import render_model_card_md

log = logging.getLogger(__name__)

#: Plot files a bundle may ship (shown in their own tabs when present): file stem -> tab title.
PLOT_TITLES = {
    "roc": "ROC curve",
    "reliability": "Reliability (calibration)",
    "calibration": "Reliability (calibration)",
    "confusion": "Confusion matrix",
    "pr": "Precision-recall",
}


def bundle_plots(folder: Path) -> list[tuple[str, Path]]:
    """(title, path) for each PNG plot shipped in the bundle folder (or its plots/ subfolder)."""
    found: list[tuple[str, Path]] = []
    for base in (folder, folder / "plots"):
        if not base.is_dir():
            continue
        for png in sorted(base.glob("*.png")):
            tokens = png.stem.lower().split("_")
            key = next((t for t in tokens if t in PLOT_TITLES), None)
            if key is None:
                title = png.stem.replace("_", " ").capitalize()
            else:
                rest = " ".join(t for t in tokens if t not in (key, "bundle", "plot"))
                title = PLOT_TITLES[key] + (f" ({rest})" if rest else "")
            found.append((title, png))
    return found


class QtModelCardDialog(QDialog):
    """Shows one bundle's card (rendered Markdown) and its plots."""

    def __init__(self, bundle: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bundle = bundle
        card = bundle.card
        self.setWindowTitle(f"Model card: {card.name} {card.version}")
        self.resize(860, 720)
        self.tabs = QTabWidget()

        self.text = QTextBrowser()
        self.text.setOpenExternalLinks(False)
        self.text.setSearchPaths([str(bundle.path)])
        markdown = render_model_card_md(card)
        trust = getattr(bundle, "trust", None)
        if trust is not None and not trust.verified:
            markdown = f"**UNVERIFIED BUNDLE**: {trust.detail}. Its card and files are not vouched for.\n\n" + markdown
        integrity = (
            "\n\n## Integrity\n\n"
            + (f"Trust: **{trust.label}** ({trust.detail}).\n\n" if trust is not None else "")
            + "All files listed above were checked against their sha256 when the "
            f"model was loaded from `{bundle.path}` ({bundle.origin}).\n\n"
            f"- model.onnx sha256: `{card.sha256}`\n"
        )
        if getattr(bundle, "warnings", ()):
            integrity += "".join(f"- Note: {w}\n" for w in bundle.warnings)
        self.markdown = markdown + integrity
        self.text.setMarkdown(self.markdown)
        self.tabs.addTab(self.text, "Card")

        self.plots = bundle_plots(Path(bundle.path))
        for title, png in self.plots:
            pix = QPixmap(str(png))
            if pix.isNull():
                log.warning("model card plot %s could not be read", png)
                continue
            label = QLabel()
            label.setPixmap(pix)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            scroll = QScrollArea()
            scroll.setWidget(label)
            scroll.setWidgetResizable(True)
            self.tabs.addTab(scroll, title)
        if not self.plots:
            note = QLabel("This model bundle ships no ROC or reliability plots; the numbers are in the Card tab.")
            note.setWordWrap(True)
            note.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.tabs.addTab(note, "Plots")

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(buttons)


__all__ = ["QtModelCardDialog", "bundle_plots"]
