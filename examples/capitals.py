"""An offline eval with the pipeline library: three simulated models answer capital-city
questions; the table shows how often each parsed first time, needed recovery, never
parsed, and was right. No API key, no network: the models are `scripted!` rules files.

    python examples/capitals.py

Swap the MODELS for real identifiers (`gpt-4o-mini`, `claude-3-5-haiku-latest`, ...) to
run the same eval against providers.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tabulate import tabulate

import pytest_rigging as rg
from pytest_rigging.model import Answer

HERE = Path(__file__).parent
CASES = {"France": "paris", "Japan": "tokyo", "Peru": "lima", "Kenya": "nairobi"}
MODELS = sys.argv[1:] or [
    f"scripted!{HERE / 'models' / name}.toml" for name in ("careful", "sloppy", "stubborn")
]


def score(chats: list[rg.Chat]) -> list[rg.Chat]:
    """Mark each parsed chat right or wrong against the expected capital."""
    for chat in chats:
        expected = CASES[next(c for c in CASES if c in chat.messages[-1].content)]
        chat.meta(correct=chat.last.parse(Answer).content.lower() == expected)
    return chats


async def evaluate(model: str) -> list[object]:
    pipeline = (
        rg.get_generator(model)
        .chat(
            {"role": "system", "content": f"Answer in one word between {Answer.xml_tags()} tags."}
        )
        .until_parsed_as(Answer, max_rounds=3)
        .map(score)
    )
    questions = [f"What is the capital of {country}?" for country in CASES]
    chats = await pipeline.run_batch(questions, on_failed="include")
    parsed = [c for c in chats if not c.failed]
    return [
        Path(model.split("!")[-1]).stem if model.startswith("scripted!") else model,
        len(chats),
        sum(c.recovery_rounds == 0 for c in parsed),
        sum(c.recovery_rounds > 0 for c in parsed),
        sum(c.error_kind == "parse" for c in chats),
        sum(c.error_kind == "infrastructure" for c in chats),
        f"{sum(c.metadata['correct'] for c in parsed)}/{len(chats)}",
    ]


async def main() -> None:
    rows = await asyncio.gather(*(evaluate(model) for model in MODELS))
    headers = ["model", "chats", "parsed first try", "recovered", "exhausted", "errors", "correct"]
    print(tabulate(rows, headers=headers))


if __name__ == "__main__":
    asyncio.run(main())
