"""A process that owns a sandbox, starts one python kernel, says which, and waits to be killed.

`python -m tests.lease_child` with LS_* in its environment, as the server or a launcher
would run. The lease tests SIGKILL it to see that its kernel is reaped, and only then.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from kernels.manager import start_spec
from kernels.plugins import discover
from kernels.sandbox import create_sandbox
from server import config


async def main() -> None:
    settings = config.load(os.environ)
    sandbox = create_sandbox(settings)
    kernel = await sandbox.start(start_spec(settings, next(p for p in discover()
                                                            if p.name == "python")))
    print(json.dumps({"ref": kernel.ref, "lease": sandbox.lease_id,
                      "dir": str(Path(dict(kernel.connection)["ip"]).parent)}), flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
