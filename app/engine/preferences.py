"""Preference-pair files from a shell (kept at this path so the documented commands work):

    python -m app.engine.preferences arithmetic app/data/arithmetic_pairs.jsonl --n 512   # (re)build the shipped file
    python -m app.engine.preferences check FILE                                           # count + problems

The pair files themselves are app/engine/data/preferences.py."""
from __future__ import annotations

from app.engine.data.preferences import (
    SHIPPED_PAIRS,
    SHIPPED_PAIRS_N,
    row_problem,
    validate_pairs,
    write_arithmetic_pairs,
)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m app.engine.preferences", description="Preference-pair files: build the shipped example, check a file.")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("arithmetic", help="write the arithmetic preference pairs (the shipped example file)")
    a.add_argument("path", nargs="?", default=str(SHIPPED_PAIRS))
    a.add_argument("--n", type=int, default=SHIPPED_PAIRS_N)
    a.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("check", help="count the pairs of a file and list its problems")
    c.add_argument("path")
    args = p.parse_args(argv)
    if args.command == "arithmetic":
        print(f"wrote {write_arithmetic_pairs(args.path, args.n, args.seed)} pairs to {args.path}")
        return 0
    from app.engine.data.sources import DataError, load_source_rows

    try:
        rows = load_source_rows(args.path)
    except DataError as exc:
        print(f"error: {exc}")
        return 1
    problems = validate_pairs(rows)
    usable = sum(1 for row in rows if row_problem(row) is None) if not problems or problems[0].startswith("Row") else 0
    print(f"{len(rows)} rows, {usable} usable pairs")
    for problem in problems:
        print(f"- {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
