"""The first-run notice, the Getting started help and the About dialog (versions, licences, model cards)."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop import __version__
from desktop.core.paths import samples_dir

NOTICE_TEXT = """
<h2>Decision support, not a diagnosis</h2>
<p>CXR Screener looks at a chest X-ray and estimates how likely it shows the pattern of
COVID-19 pneumonia. It was trained on public image collections and <b>makes mistakes</b>:
it can miss COVID-19, and it can flag X-rays that are normal or show another disease.</p>
<ul>
<li>Use it to decide which X-rays to send for a doctor's review first, never to rule
COVID-19 in or out on its own.</li>
<li>A trained clinician must look at the X-ray and the patient before acting on a result.</li>
<li>It is meant for adult frontal (PA/AP) chest X-rays only.</li>
<li>Everything stays on this computer: no image or result is sent anywhere.</li>
</ul>
"""

GETTING_STARTED = """
<h2>Getting started</h2>
<ol>
<li><b>Open an X-ray</b>: <i>File &gt; Open X-ray...</i> (Ctrl+O), or drag PNG, JPEG or DICOM files
onto the window. The result appears on the right within a few seconds.</li>
<li><b>Read the result</b>: the bar shows the estimated probability of COVID-19; the dashed line is
the threshold of the chosen <i>operating point</i>. Above it the screen is positive.</li>
<li><b>Look at the heatmap</b>: warm colours show the regions that drove the score. If they lie outside
the lungs (labels, borders, tubes), distrust the result.</li>
<li><b>Adjust the view</b>: mouse wheel zooms, left-drag moves, right-drag changes contrast and
brightness, double-click fits. <i>View &gt; Reset view</i> (R) goes back.</li>
<li><b>Send a report</b>: <i>File &gt; Export PDF report...</i> (Ctrl+E) opens a form prefilled from the
file; check the details, tick <i>Anonymise</i> if the report leaves the clinic, and save.</li>
<li><b>Scan a folder</b>: <i>File &gt; Scan folder...</i> (Ctrl+Shift+O) checks every X-ray in a folder.
You can cancel at any time and resume later; results can be saved as CSV or PDF.</li>
<li><b>Settings</b> (Ctrl+,): your clinic's name and address and your name, printed on reports.</li>
</ol>
"""

LICENCES = """
<h3>Licences</h3>
<ul>
<li>CXR Screener: Apache-2.0.</li>
<li>Qt for Python (PySide6): LGPL-3.0. NumPy, Pillow, pydicom, matplotlib: BSD/MIT-style.
ONNX Runtime: MIT. ReportLab: BSD.</li>
<li>Report preview: pypdfium2 (Apache-2.0 / BSD-3; PDFium: BSD-3).
Background work: superqt (BSD-3) with qtpy (MIT).</li>
<li>DICOM decoders: python-gdcm (BSD), pylibjpeg, pylibjpeg-openjpeg (OpenJPEG: BSD-2),
pylibjpeg-rle, pyjpegls (CharLS: BSD-3): all MIT/BSD; no GPL code is bundled.</li>
<li>Models: ImageNet-pretrained backbones (Keras applications, Apache-2.0 code; weights
under their own terms), fine-tuned on public chest X-ray collections listed in each model card.</li>
</ul>
"""

DECODER_PACKAGES = (
    "numpy",
    "pillow",
    "pydicom",
    "python-gdcm",
    "pylibjpeg",
    "pylibjpeg-openjpeg",
    "pylibjpeg-rle",
    "pyjpegls",
    "onnxruntime",
    "reportlab",
    "matplotlib",
    "PySide6-Essentials",
    "pypdfium2",
    "superqt",
)


def package_versions(names: Sequence[str] = DECODER_PACKAGES) -> list[tuple[str, str]]:
    out = []
    for name in names:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    return out


def versions_html() -> str:
    import PySide6
    from PySide6.QtCore import qVersion

    rows = [
        ("CXR Screener", __version__),
        ("Python", platform.python_version()),
        ("Qt", qVersion()),
        ("PySide6", PySide6.__version__),
        ("System", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Frozen build", "yes" if getattr(sys, "frozen", False) else "no"),
    ]
    rows += package_versions()
    cells = "".join(f"<tr><td>{k}</td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in rows)
    return f"<h3>Versions</h3><table>{cells}</table>"


def attribution_markdown() -> str:
    path = samples_dir() / "ATTRIBUTION.md"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return "No sample images are bundled."


class QtFirstRunDialog(QDialog):
    """Shown until the user confirms that results are decision support, not a diagnosis."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Before you start: CXR Screener")
        self.setMinimumWidth(560)
        text = QLabel(NOTICE_TEXT + GETTING_STARTED)
        text.setWordWrap(True)
        text.setTextFormat(Qt.TextFormat.RichText)
        self.confirm = QCheckBox("I understand that results are decision support, not a diagnosis")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText("Start")
        ok.setEnabled(False)
        self.ok_button = ok
        self.confirm.toggled.connect(ok.setEnabled)
        buttons.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(self.confirm)
        layout.addWidget(buttons)


class QtHelpDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Getting started")
        self.resize(640, 560)
        browser = QTextBrowser()
        browser.setHtml(GETTING_STARTED + NOTICE_TEXT)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(browser)
        layout.addWidget(buttons)


class QtAboutDialog(QDialog):
    """Versions, licences, bundled data attribution, and the installed models with their cards."""

    def __init__(
        self,
        bundles: Sequence[Any] = (),
        show_card: Callable[[Any], None] | None = None,
        problems: Sequence[BaseException] = (),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("About CXR Screener")
        self.resize(720, 600)
        self._bundles = list(bundles)
        self._show_card = show_card
        tabs = QTabWidget()

        about = QTextBrowser()
        about.setHtml(
            f"<h2>CXR Screener {__version__}</h2>"
            "<p>Offline chest X-ray screening for COVID-19 pneumonia, with heatmaps, folder scans "
            "and PDF reports.</p>" + NOTICE_TEXT + versions_html()
        )
        tabs.addTab(about, "About")

        lic = QTextBrowser()
        lic.setHtml(LICENCES)
        lic.append("")
        tabs.addTab(lic, "Licences")

        data = QTextBrowser()
        data.setMarkdown("# Bundled sample images\n\n" + attribution_markdown())
        tabs.addTab(data, "Sample data")

        models = QWidget()
        ml = QVBoxLayout(models)
        self.model_list = QListWidget()
        for b in self._bundles:
            card = b.card
            item = QListWidgetItem(
                f"{card.name} {card.version} ({card.architecture})"
                + (" - default" if card.default else "")
                + ("" if getattr(b, "verified", True) else " - unverified bundle")
                + f"   [{b.origin}] {b.path}"
            )
            self.model_list.addItem(item)
        for problem in problems:
            item = QListWidgetItem(f"Not usable: {problem}")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.model_list.addItem(item)
        if not self._bundles and not problems:
            self.model_list.addItem("No model installed.")
        row = QHBoxLayout()
        card_button = QPushButton("Show model card...")
        card_button.clicked.connect(self._open_card)
        self.model_list.itemDoubleClicked.connect(lambda _i: self._open_card())
        row.addStretch(1)
        row.addWidget(card_button)
        ml.addWidget(self.model_list)
        ml.addLayout(row)
        tabs.addTab(models, "Models")

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(buttons)
        self.tabs = tabs

    def _open_card(self) -> None:
        row = self.model_list.currentRow()
        if self._show_card is not None and 0 <= row < len(self._bundles):
            self._show_card(self._bundles[row])


__all__ = ["QtAboutDialog", "QtFirstRunDialog", "QtHelpDialog", "package_versions"]
