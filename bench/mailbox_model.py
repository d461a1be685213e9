"""A `cmd:` model that hands each of kagent's requests to someone outside the process (a person,
or an agent standing in for a capable model) through a folder, and prints their reply.

    kagent optimize TASK --model "cmd:python bench/mailbox_model.py MAILBOX_DIR"

Per request, in MAILBOX_DIR: `<stamp>.request.json` (what kagent sent: {"role", "model",
"messages"}) and `<stamp>.prompt.md` (the same messages as readable text); the answerer writes
`<stamp>.reply.md` (written to `<stamp>.reply.md.tmp` first and renamed, so a half-written reply
is never read). Stamps sort in the order requests were made. The bridge waits as long as kagent
lets it (`--llm-timeout`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    """Read one request on stdin, post it to the mailbox, wait for the reply, print it."""
    if len(sys.argv) != 2:
        sys.exit("usage: mailbox_model.py MAILBOX_DIR")
    box = Path(sys.argv[1])
    box.mkdir(parents=True, exist_ok=True)
    request = json.loads(sys.stdin.read())
    stamp = f"{time.time_ns()}-{os.getpid()}-{request.get('role', 'llm')}"
    readable = "\n\n".join(f"## {m['role']}\n\n{m['content']}" for m in request.get("messages", []))
    (box / f"{stamp}.prompt.md").write_text(readable)
    (box / f"{stamp}.request.json").write_text(json.dumps(request))
    reply = box / f"{stamp}.reply.md"
    while not reply.exists():
        time.sleep(0.5)
    sys.stdout.write(reply.read_text())


if __name__ == "__main__":
    main()
