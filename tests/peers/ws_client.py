"""WebSocket client (the `websockets` library) for the upgrade tests:
connects to ws://127.0.0.1:PORT/PATH, sends a text, a 256 KiB binary and
20 small messages, checks each echo, closes, and prints one summary line."""
import asyncio
import os
import sys

import websockets


async def main(port, path):
    url = f"ws://127.0.0.1:{port}{path}"
    big = os.urandom(256 * 1024)
    async with websockets.connect(url, max_size=None, open_timeout=5) as ws:
        await ws.send("hello")
        text = await asyncio.wait_for(ws.recv(), 5)
        await ws.send(big)
        binary = await asyncio.wait_for(ws.recv(), 5)
        small = 0
        for i in range(20):
            await ws.send(f"m{i}")
            small += (await asyncio.wait_for(ws.recv(), 5)) == f"m{i}"
    print(f"text={text} binary_ok={binary == big} small_ok={small} close={ws.close_code}")


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
    except Exception as e:  # the test compares this line too
        print(f"error={type(e).__name__}")
