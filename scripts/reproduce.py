"""Reproduce a published result and record it: ``python scripts/reproduce.py NAME [--quick]``.

NAME is one of nanda, liu, power, doshi, capacity. ``scripts/reproductions/NAME.py`` does the
training (``run(quick, out_dir) -> dict``); this script writes the dict to
``docs/reproductions/NAME.json`` (``NAME.quick.json`` with ``--quick``), prints its table and
re-renders ``docs/reproductions.md`` from every JSON present.

Example:
    $ python scripts/reproduce.py liu --quick          # reduced scale, minutes on 2 cores
    $ python scripts/reproduce.py nanda                # full scale; rewrites docs/reproductions.md
    $ python scripts/reproduce.py --render-only        # only re-render the page
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproductions.common import REPO, check_result, markdown_table  # noqa: E402

NAMES = ("nanda", "liu", "power", "doshi", "capacity")
HERE = Path(__file__).resolve().parent / "reproductions"


def load(name: str):
    """The module ``scripts/reproductions/NAME.py``."""
    spec = importlib.util.spec_from_file_location(f"reproductions.{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def json_path(docs: Path, name: str, quick: bool) -> Path:
    return docs / "reproductions" / f"{name}{'.quick' if quick else ''}.json"


def render(docs: Path) -> Path:
    """Write ``DOCS/reproductions.md`` from the JSONs in ``DOCS/reproductions/``; return its path."""
    import jinja2

    sections = []
    for name in NAMES:
        result = None
        for quick in (False, True):
            path = json_path(docs, name, quick)
            if path.exists():
                with open(path) as f:
                    result = json.load(f)
                break
        figures = [os.path.relpath(REPO / f, docs) for f in (result or {}).get("figures", [])]
        sections.append({"name": name, "result": result, "figures": figures,
                         "title": (result or {}).get("title", name),
                         "table": markdown_table(result["table"]) if result else ""})
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE)), keep_trailing_newline=True)
    page = docs / "reproductions.md"
    page.write_text(env.get_template("page.md.j2").render(sections=sections))
    return page


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", nargs="?", help=f"one of {', '.join(NAMES)}")
    ap.add_argument("--quick", action="store_true", help="reduced scale (minutes on 2 cores)")
    ap.add_argument("--out", default=None, help="run folder (default runs/reproductions/NAME[-quick])")
    ap.add_argument("--workers", type=int, default=1,
                    help="sweep workers (default 1; 2 only when nothing else trains)")
    ap.add_argument("--docs", default=str(REPO / "docs"), help="docs folder (default: the repo's)")
    ap.add_argument("--render-only", action="store_true", help="only re-render the page")
    args = ap.parse_args(argv)
    docs = Path(args.docs)
    if args.render_only:
        print(f"wrote {render(docs)}")
        return 0
    if args.name not in NAMES:
        what = f"NAME {args.name!r} is not a reproduction" if args.name else "give a NAME"
        print(f"reproduce.py: {what}; choose one of: {', '.join(NAMES)}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"reproduce.py: --workers {args.workers} must be >= 1", file=sys.stderr)
        return 2
    os.environ["PHASEWATCH_REPRO_WORKERS"] = str(args.workers)
    os.environ["PHASEWATCH_REPRO_DOCS"] = str(docs.resolve())
    out = args.out or str(REPO / "runs" / "reproductions" / f"{args.name}{'-quick' if args.quick else ''}")
    t0 = time.time()
    result = load(args.name).run(args.quick, out)
    result.setdefault("wall_s", round(time.time() - t0, 1))
    wrong = check_result(result)
    if wrong:
        print(f"reproduce.py: {args.name}.run() broke the result contract: {'; '.join(wrong)}",
              file=sys.stderr)
        return 1
    path = json_path(docs, args.name, args.quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown_table(result["table"]))
    print(f"\nverdict: {result['verdict']} ({result['why']})\nwrote {path} and {render(docs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
