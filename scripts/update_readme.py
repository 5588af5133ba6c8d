"""Rewrite the README's method table from the registry (tests/test_contracts.py checks it is current)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from xai_core.methods.catalogue import markdown_table  # noqa: E402

BEGIN = "<!-- methods:begin (generated: python scripts/update_readme.py) -->"
END = "<!-- methods:end -->"


def main() -> None:
    path = Path(__file__).resolve().parent.parent / "README.md"
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    path.write_text(f"{head}{BEGIN}\n{markdown_table()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
