"""Which Commons categories to list when no --category is given: the package's `categories.txt`.

The file ships inside the package (found through importlib.resources), so it is read the same from a
clone, an editable install or `pip install .`.
"""

from __future__ import annotations

from importlib import resources

from unetsr.core.errors import DownloadError

CATEGORIES_FILE = "categories.txt"


def default_categories() -> list[str]:
    """The categories in unetsr/commons/categories.txt, one per line (blank lines and # comments ignored)."""
    source = resources.files("unetsr.commons").joinpath(CATEGORIES_FILE)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DownloadError(f"cannot read the package's {CATEGORIES_FILE} ({exc}); pass --category") from None
    categories = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not categories:
        raise DownloadError(f"the package's {CATEGORIES_FILE} names no category; pass --category")
    return [category_title(name) for name in categories]


def category_title(name: str) -> str:
    """'Valued images' -> 'Category:Valued images'; names that already carry the prefix are kept."""
    name = name.strip()
    return name if name.lower().startswith("category:") else f"Category:{name}"
