"""Sends a file of JSON event lines to an agent with evd_client and prints what
became of each line as JSON: {"acked": [line index, ...], "refused": [[index, code],
...], "reconnects": N, "retries": N}. An example of the client, and what CI runs against a real
agent (tests/tests/python_client.rs).

    python3 clients/python/send_file.py /run/evd/agent.sock events.jsonl
"""

import json
import sys

from evd_client import Client, Refused


def main():
    socket_path, path = sys.argv[1:3]
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    acked, refused = [], []
    with Client(socket_path, give_up_after_s=300) as client:
        for start in range(0, len(lines), 10_000):
            results = client.send_many(lines[start:start + 10_000])
            for n, result in enumerate(results, start):
                if isinstance(result, Refused):
                    refused.append([n, result.code])
                else:
                    acked.append(n)
        reconnects, retries = client.reconnects, client.retries
    json.dump({"acked": acked, "refused": refused, "reconnects": reconnects,
               "retries": retries}, sys.stdout)


if __name__ == "__main__":
    main()
