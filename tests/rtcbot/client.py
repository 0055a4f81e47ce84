"""RTCBot's own client against roverd, as a robot builder's Python script would use it.

Usage: client.py URL   (e.g. http://127.0.0.1:8080/connect)

Connects with rtcbot.RTCConnection, with no ICE server at all (its default is a public STUN
server, and no packet may leave the machine), posts the offer with aiohttp as RTCBot's
examples do, passes the answer to setRemoteDescription (RTCSessionDescription(**answer):
any key but sdp and type raises), waits for a video frame and for a pong on RTCBot's default
data channel, and prints one JSON line with what it got.
"""

import asyncio
import json
import sys

import aiohttp
from aiortc import RTCConfiguration
from rtcbot import RTCConnection

PATIENCE = 20


async def main(url):
    conn = RTCConnection(rtcConfiguration=RTCConfiguration(iceServers=[]))
    frames = conn.video.subscribe()
    try:
        offer = await conn.getLocalDescription()
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json=offer) as resp:
                status = resp.status
                answer = await resp.json()
                location = resp.headers.get("Location")
        if status != 200:
            raise SystemExit(f"offer refused: {status} {answer}")
        await conn.setRemoteDescription(answer)
        frame = await asyncio.wait_for(frames.get(), PATIENCE)
        # Messages on the default channel are JSON; roverd greets with hello and state.
        conn.put_nowait({"type": "ping", "t": 42.5})
        got = []
        pong = None
        while pong is None:
            msg = await asyncio.wait_for(conn.get(), PATIENCE)
            got.append(msg.get("type") if isinstance(msg, dict) else repr(msg))
            if isinstance(msg, dict) and msg.get("type") == "pong":
                pong = msg
        print(
            json.dumps(
                {
                    "answer_keys": sorted(answer.keys()),
                    "location": location,
                    "frame_shape": list(frame.shape),
                    "pong": pong,
                    "messages": got,
                }
            ),
            flush=True,
        )
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
