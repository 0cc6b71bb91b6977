"""Follows every task event of the tenant, live, and keeps following when the node restarts:
the SDK resumes from the last cursor it delivered, so no event is shown twice or missed.
`--after N` starts after cursor N (print the cursor you stopped at, pass it next time).

    CADRE_TOKEN=<credential> python watch_events.py [--prefix system.debug.] [--after 0]
"""

from __future__ import annotations

import argparse

import cadre_sdk


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--prefix", default="", help="only task types starting with this")
    p.add_argument("--after", type=int, default=0, help="resume after this cursor")
    args = p.parse_args()
    last = args.after
    # retry_budget: how long to keep trying to resume while the node is away.
    with cadre_sdk.Client(retry_budget=300) as client:
        try:
            for event in client.watch(task_type_prefix=args.prefix, after_cursor=args.after):
                last = event.cursor
                what = f"progress {event.progress:.0%} {event.message}" if event.is_progress else event.state.value
                print(f"#{event.cursor} {event.task_type} {event.task_id} attempt {event.attempt}: {what}", flush=True)
        except KeyboardInterrupt:
            pass
    print(f"stopped after cursor {last}; resume with --after {last}")


if __name__ == "__main__":
    main()
