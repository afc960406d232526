"""Telegram text splitting on its worst input: long lines of astral characters and entities.

    .venv/bin/python benchmarks/render.py

Prints the seconds `render.telegram_text` takes for 22,500 and 45,000 characters of
"𝔘😀&<" (each escapes to more units than it has characters, the case that made the old cut
loop quadratic: 10 s and 25 s). Exits 1 when either takes longer than 0.5 s.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.chat import render  # noqa: E402

LIMIT_SECONDS = 0.5


def main() -> int:
    worst = 0.0
    for chars in (22_500, 45_000, 450_000):
        text = "𝔘😀&<" * (chars // 4)
        began = time.perf_counter()
        parts = render.telegram_text(text)
        seconds = time.perf_counter() - began
        if chars <= 45_000:
            worst = max(worst, seconds)
        print(f"telegram_text: {chars:>7,} chars -> {len(parts):>3} parts in {seconds:.3f} s")
    print(f"worst of the issue's inputs: {worst:.3f} s (limit {LIMIT_SECONDS} s)")
    return 0 if worst <= LIMIT_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
