"""MkDocs hooks: the example scenarios that the docs link to are part of the site.

Pages link to ``../examples/...`` so that the Markdown reads right in the repository; in the built
site those files are copied under ``examples/`` and the links point there.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
_LINK = re.compile(r"\]\(((?:\.\./)+)examples/")


def on_files(files: Files, config) -> Files:
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        files.append(File(str(path.relative_to(ROOT)), src_dir=str(ROOT),
                          dest_dir=config["site_dir"], use_directory_urls=False))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    depth = page.file.src_uri.count("/")
    # ../examples/ seen from docs/ (one level more from docs/howto/) is examples/ in the site.
    return _LINK.sub(lambda m: "](" + "../" * (len(m.group(1)) // 3 - 1) + "examples/"
                     if len(m.group(1)) // 3 == depth + 1 else m.group(0), markdown)
