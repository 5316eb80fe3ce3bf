"""Talk to a sandboxed kernel as any Jupyter client would (jupyter_client, no session layer)."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient

from kernels.sandbox import SandboxKernel


@contextlib.asynccontextmanager
async def connect(kernel: SandboxKernel) -> AsyncIterator[AsyncKernelClient]:
    context = zmq.asyncio.Context()   # ours to destroy: a collected one can hang its thread
    client = AsyncKernelClient(context=context)
    client.load_connection_info(dict(kernel.connection))
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=10)
        yield client
    finally:
        client.stop_channels()
        context.destroy(linger=0)


async def run(client: AsyncKernelClient, code: str, timeout: float = 10) -> tuple[str, dict]:
    """(stdout, execute_reply content) of one cell."""
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = await client.execute_interactive(code, output_hook=hook, timeout=timeout)
    return "".join(out), reply["content"]
