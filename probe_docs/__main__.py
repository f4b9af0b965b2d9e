"""`make docs` / `python -m probe_docs`: write the generated parts of docs/, or with --check say which are stale."""

from __future__ import annotations

import argparse
import difflib
import sys

from probe_docs.generate import ROOT, stale_pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probe_docs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming each stale page")
    args = parser.parse_args(argv)
    stale = stale_pages(ROOT)
    for page, old, new in stale:
        if args.check:
            diff = difflib.unified_diff(old.splitlines(), new.splitlines(), str(page), "generated", lineterm="", n=1)
            print("\n".join(list(diff)[:40]))
        else:
            page.write_text(new)
            print(f"wrote {page.relative_to(ROOT)}")
    if args.check and stale:
        print(f"stale: {', '.join(str(p.relative_to(ROOT)) for p, _, _ in stale)}; run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
