"""The official Python client (`convex` on PyPI, a wrapper of the Rust crate) against the chat
example: a subscription that sees a later mutation, a one-shot query, and failed calls whose
messages name the function. tests/e2e/convex_clients.rs runs it with the server's URL and
judges the `@@ RESULT {json}` line it prints; anything else it prints goes to stderr.

The client's calls block without a time limit of their own: the test kills this process if
it takes too long.
"""

import json
import sys
import traceback

from convex import ConvexClient

GET_MESSAGES = "chat:get_messages"
SEND_MESSAGE = "chat:send_message"


def say(word, data=None):
    payload = "" if data is None else " " + json.dumps(data)
    sys.stdout.write(f"@@ {word}{payload}\n")
    sys.stdout.flush()


def bodies(messages):
    return [m["body"] for m in messages]


def outcome(call):
    """How a call ended: its value, or its exception's type and message."""
    try:
        return {"ok": True, "value": call()}
    except Exception as e:  # the client raises plain Exception for function errors
        return {"ok": False, "name": type(e).__name__, "message": str(e)}


def main(url):
    client = ConvexClient(url)
    subscription = client.subscribe(GET_MESSAGES, {})
    initial = next(subscription)

    sent = client.mutation(SEND_MESSAGE, {"user": "guido", "body": "from python"})
    # The subscription yields a value per transition the client applies; one of them shows
    # the message (the test's time limit bounds the wait).
    seen = []
    while True:
        seen = next(subscription)
        if "from python" in bodies(seen):
            break

    one_shot = ConvexClient(url).query(GET_MESSAGES, {})
    # Python ints are sent as float64; `user` must be a string.
    bad_arguments = outcome(
        lambda: client.mutation(SEND_MESSAGE, {"user": 42, "body": "wrong type"})
    )
    unknown_query = outcome(lambda: client.query("chat:no_such_query", {}))
    after_failures = outcome(
        lambda: client.mutation(SEND_MESSAGE, {"user": "guido", "body": "after failures"})
    )
    final = client.query(GET_MESSAGES, {})

    say(
        "RESULT",
        {
            "initial": initial,
            "sent": sent,
            "seen": bodies(seen),
            "shapes": [
                {
                    "keys": sorted(m.keys()),
                    "id": type(m["_id"]).__name__,
                    "creationTime": type(m["_creationTime"]).__name__,
                }
                for m in seen
            ],
            "oneShot": bodies(one_shot),
            "badArguments": bad_arguments,
            "unknownQuery": unknown_query,
            "afterFailures": after_failures,
            "final": bodies(final),
        },
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 convex_client.py http://127.0.0.1:PORT")
    try:
        main(sys.argv[1])
    except Exception:
        traceback.print_exc()
        sys.exit(1)
