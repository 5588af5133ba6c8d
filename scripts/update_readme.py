"""Rewrite the README's generated tables from the registries (tests/test_contracts.py checks them)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from xai_core.methods import catalogue as methods  # noqa: E402
from xai_core.metrics import catalogue as metrics  # noqa: E402

README = Path(__file__).resolve().parent.parent / "README.md"
TABLES = {"methods": methods.markdown_table, "metrics": metrics.markdown_table}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin (generated: python scripts/update_readme.py) -->", f"<!-- {name}:end -->"


def main() -> None:
    text = README.read_text(encoding="utf-8")
    for name, table in TABLES.items():
        begin, end = markers(name)
        head, rest = text.split(begin)
        _, tail = rest.split(end)
        text = f"{head}{begin}\n{table()}\n{end}{tail}"
    README.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
