"""A second ComfyUI process with the pack loaded, sharing the test's state directory (`GROK_IMAGINE_STATE_DIR`
and the fake fal come from the environment). Driven line by line over stdin/stdout, so the test decides when
each step happens:

    python state_process.py batch NAME      "ready"; on "go": a Prompt List of 20 prompts into one Grok node,
                                            then "ran N" or "refused <message>"
    python state_process.py claim ENDPOINT FINGERPRINT
                                            "ready"; on "go": claims the journal's unfinished request of these
                                            inputs, "claimed <id>" or "claimed none"; holds it until "exit"
    python state_process.py hold USD ENDPOINT FINGERPRINT
                                            reserves USD against the daily limit and claims the request, then
                                            "holding <id>", and holds both until killed
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from comfy_like import pack_module, run_node_over_list  # noqa: E402


def say(line: str) -> None:
    print(line, flush=True)


def main(command: str, *args: str) -> None:
    state = Path(os.environ["GROK_IMAGINE_STATE_DIR"])
    journal = pack_module("fal_transport.journal").Journal(state)
    if command == "batch":
        errors = pack_module("fal_transport.errors")
        node = pack_module("nodes.text_to_image").FalGrokImagineImage
        say("ready")
        sys.stdin.readline()
        try:
            results = asyncio.run(run_node_over_list(node, prompt=[f"{args[0]} prompt {i}" for i in range(20)],
                                                     num_images=1, unique_id="5"))
        except errors.SpendLimitError as exc:
            say(f"refused {exc}")
        else:
            say(f"ran {len(results)}")
    elif command == "claim":
        say("ready")
        sys.stdin.readline()
        entry = journal.claim_resumable(args[0], args[1])
        say(f"claimed {entry.request_id if entry else 'none'}")
        sys.stdin.readline()
    elif command == "hold":
        pack_module("fal_transport.ledger").Ledger(state).reserve(float(args[0]))
        entry = journal.claim_resumable(args[1], args[2])
        say(f"holding {entry.request_id if entry else 'none'}")
        sys.stdin.readline()


if __name__ == "__main__":
    main(*sys.argv[1:])
