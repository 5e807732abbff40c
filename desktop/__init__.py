"""CXR Screener: offline chest X-ray COVID-19 screening (decision support)."""

__version__ = "0.1.0"
