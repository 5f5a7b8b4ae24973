"""Run the examples in docs/, README.md and docstrings as tests, so they cannot rot."""

from doctest import ELLIPSIS, NORMALIZE_WHITESPACE

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser
from sybil.parsers.rest import DocTestParser

_FLAGS = ELLIPSIS | NORMALIZE_WHITESPACE

_markdown = Sybil(
    parsers=[PythonCodeBlockParser(doctest_optionflags=_FLAGS), SkipParser()],
    patterns=["*.md"],
    path="docs",
    fixtures=["tmp_path"],
)
_docstrings = Sybil(
    parsers=[DocTestParser(optionflags=_FLAGS)],
    patterns=["*.py"],
    path="src/enspace_profile",
    excludes=["testing/*"],
)

pytest_collect_file = (_markdown + _docstrings).pytest()
