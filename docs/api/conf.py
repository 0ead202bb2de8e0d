"""Sphinx configuration of the API reference (``sphinx-build -W docs/api OUT``; run by the tests)."""

project = "stainfree"
author = "the stainfree developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True  # dataclass fields are documented once, in the Attributes section
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
autodoc_mock_imports: list[str] = []
html_theme = "alabaster"
exclude_patterns = ["_build"]
suppress_warnings = ["duplicate_declaration.py"]
