"""Sphinx configuration of f2git's documentation (MyST Markdown, as JupyterHub's projects)."""
import re
from pathlib import Path

project = "f2git"
author = "the f2git developers"
copyright = "the f2git developers"
# The one place the version is written (pyproject.toml reads it from there too); read, not imported.
_init = (Path(__file__).resolve().parent.parent / "f2git" / "__init__.py").read_text()
release = version = re.search(r'^__version__ = "([^"]+)"', _init, re.M).group(1)

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_heading_anchors = 3  # links to #a-heading inside and across pages
myst_enable_extensions = ["colon_fence", "deflist"]
suppress_warnings = []
nitpicky = True

html_theme = "pydata_sphinx_theme"
html_title = f"f2git {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "secondary_sidebar_items": ["page-toc"],
}
