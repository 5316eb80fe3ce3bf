"""`python -m bench [name ...]`: run every bench/*.py module's main(), or only the named ones."""
from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import time
import traceback
from pathlib import Path


def modules(names: list[str]) -> list[str]:
    found = sorted(p.stem for p in Path(__file__).parent.glob("*.py") if not p.stem.startswith("_"))
    unknown = set(names) - set(found)
    if unknown:
        raise SystemExit(f"no bench module named {', '.join(sorted(unknown))}; have {', '.join(found)}")
    return [name for name in found if not names or name in names]


def main(argv: list[str]) -> int:
    failed = []
    for name in modules(argv):
        print(f"== bench.{name}", flush=True)
        began = time.monotonic()
        try:  # one broken bench must not hide the figures of the others
            entry = importlib.import_module(f"bench.{name}").main
            if inspect.iscoroutinefunction(entry):
                asyncio.run(entry())
            else:
                entry()
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"== bench.{name} took {time.monotonic() - began:.0f} s", flush=True)
    if failed:
        print(f"== failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
