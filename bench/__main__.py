"""`python -m bench [name ...]`: run every bench/*.py module's main(), or only the named ones."""
from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import time
from pathlib import Path


def modules(names: list[str]) -> list[str]:
    found = sorted(p.stem for p in Path(__file__).parent.glob("*.py") if not p.stem.startswith("_"))
    unknown = set(names) - set(found)
    if unknown:
        raise SystemExit(f"no bench module named {', '.join(sorted(unknown))}; have {', '.join(found)}")
    return [name for name in found if not names or name in names]


def main(argv: list[str]) -> None:
    for name in modules(argv):
        print(f"== bench.{name}", flush=True)
        began = time.monotonic()
        entry = importlib.import_module(f"bench.{name}").main
        if inspect.iscoroutinefunction(entry):
            asyncio.run(entry())
        else:
            entry()
        print(f"== bench.{name} took {time.monotonic() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
