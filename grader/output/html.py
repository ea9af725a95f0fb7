"""The one Jinja2 environment of the HTML pages (grader process): the report of a submission
(report.py) and the class summary (gradebook.py), from templates/, autoescaped, so whatever a
submission printed or raised reaches a page as text, never as markup."""
import functools
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.lru_cache(maxsize=None)
def environment() -> Environment:
    # built once: compiling the templates for every student cost ~0.2 s each in a batch
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                       trim_blocks=True, lstrip_blocks=True)
