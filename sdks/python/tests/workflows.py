"""A workflow definition the tests register: a task step, an approval, a task step."""

from __future__ import annotations

from typing import Any


def greeting(name: str) -> dict[str, Any]:
    """A workflow named `name`: drafts a greeting, waits for an operator's approval of step
    `review`, then echoes it."""
    return {
        "name": name,
        "version": 1,
        "description": "Drafts a greeting, asks for approval, sends it.",
        "input_schema": {
            "type": "object",
            "required": ["who"],
            "properties": {"who": {"type": "string"}},
        },
        "steps": [
            {"id": "draft", "task": "system.debug.echo", "params": {"text": "Hello, ${{ input.who }}!"}},
            {
                "id": "review",
                "needs": ["draft"],
                "wait": {"approval": {"role": "operator", "prompt": "Send it?"}},
            },
            {
                "id": "send",
                "needs": ["review"],
                "task": "system.debug.echo",
                "params": {"text": "${{ steps.draft.output.text }}"},
            },
        ],
        "output": {
            "sent": "${{ steps.send.output.text }}",
            "comment": "${{ steps.review.output.comment }}",
        },
    }
