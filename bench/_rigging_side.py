"""rigging 3.3.5's side of the benchmarks, run with bench/.venv-rigging's python.

Uses rigging's public API only, and prints one JSON line for the calling benchmark:
  overhead N REPEATS   run_batch of N chats on an instant generator, plus a floor
  parse SIZE REPEATS   Answer.from_text on tagged_text(SIZE)
  hostile REPEATS      Answer.from_text on hostile_text(REPEATS), which must fail
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import typing as t

from _common import hostile_text, tagged_text, time_async, time_call


def overhead(count: int, repeats: int) -> dict[str, t.Any]:
    import rigging
    from rigging.generator import GeneratedMessage, Generator, register_generator
    from rigging.message import Message

    class Instant(Generator):
        """Replies at once, so only the pipeline's own cost is measured."""

        async def generate_messages(
            self, messages: t.Sequence[t.Sequence[Message]], params: t.Sequence[t.Any]
        ) -> t.Sequence[GeneratedMessage]:
            return [
                GeneratedMessage(
                    message=Message(role="assistant", content=f"reply {i}"), stop_reason="stop"
                )
                for i in range(len(messages))
            ]

    register_generator("instant", Instant)
    generator = rigging.get_generator("instant!bench")
    inputs = [f"question {i}" for i in range(count)]

    async def run_batch() -> None:
        pipeline = generator.chat([{"role": "system", "content": "Be brief."}])
        chats = await pipeline.run_batch(inputs)
        assert len(chats) == count

    async def floor() -> None:
        async def one(i: int) -> Message:
            return Message(role="assistant", content=f"reply {i}")

        await asyncio.gather(*(one(i) for i in range(count)))

    async def main() -> dict[str, t.Any]:
        return {
            "count": count,
            "run_batch_s": await time_async(run_batch, repeats),
            "floor_s": await time_async(floor, repeats),
        }

    return asyncio.run(main())


def parse(size: int, repeats: int) -> dict[str, t.Any]:
    from rigging.model import Answer

    text = tagged_text(size)
    found = len(Answer.from_text(text))
    return {
        "size": size,
        "found": found,
        "seconds": time_call(lambda: Answer.from_text(text), repeats),
    }


def hostile(repeats: int) -> dict[str, t.Any]:
    from rigging.error import MissingModelError
    from rigging.model import Answer

    text = hostile_text(repeats)
    start = time.perf_counter()
    try:
        Answer.from_text(text)
        outcome = "parsed"
    except MissingModelError:
        outcome = "MissingModelError"
    except Exception as error:
        outcome = type(error).__name__
    return {"chars": len(text), "seconds": time.perf_counter() - start, "outcome": outcome}


def main(argv: list[str]) -> None:
    command, *numbers = argv
    values = [int(n) for n in numbers]
    if command == "overhead":
        result = overhead(*values)
    elif command == "parse":
        result = parse(*values)
    elif command == "hostile":
        result = hostile(*values)
    else:
        raise SystemExit(f"unknown command {command!r}")
    import rigging

    result["rigging"] = rigging.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
