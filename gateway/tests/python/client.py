"""Drives a gateway with python-socketio's client at its default settings.

Usage: client.py URL [TRANSPORT]. Connects (with TRANSPORT only, when given), joins a room, publishes to it and waits for the event. Prints one
JSON line with what happened and exits 0 on success, 1 otherwise.
"""

import json
import sys
import threading

import socketio


def main() -> int:
    url = sys.argv[1]
    received = threading.Event()
    result = {}
    client = socketio.Client(reconnection=False)

    @client.on("news")
    def on_news(data):
        result["news"] = data
        received.set()

    transports = sys.argv[2:] or None
    client.connect(url, transports=transports, wait_timeout=10)
    result["transport"] = client.transport()
    result["join"] = client.call("join", {"room": "py"}, timeout=5)
    result["publish"] = client.call("publish", {"room": "py", "event": "news", "data": {"from": "python"}}, timeout=5)
    result["received"] = received.wait(timeout=5)
    client.disconnect()

    print(json.dumps(result))
    ok = result["join"] == {"ok": True} and result["publish"] == {"ok": True} and result["received"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
