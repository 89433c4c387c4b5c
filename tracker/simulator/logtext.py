"""Generated log text for the ``unicode`` and ``biglogs`` scenarios (no I/O)."""

from __future__ import annotations

import random

#: ``biglogs`` predictions end with at least this much log text
BIG_LOG_BYTES = 1_250_000

_UNICODE_TEMPLATES = (
    "🚀 Démarrage du modèle… graine : {seed}",
    "步骤 {k}/{n} — 正在生成图像 ✨",
    "ステップ {k}/{n}: 画像を処理しています 🖼️",
    "Überprüfung {k}: naïve café, señor, Ærøskøbing ✓",
    "Ελληνικά {k}: καλημέρα κόσμε 🌍",
    "진행률 {pct}% 👩\u200d💻 Ünïcödé",
    "𝄞 𓂀 {k}: ½ ⅔ ∑ ∞ → ≠ 🎉",
    "Прогресс {pct}%: всё идёт по плану 🐍",
)


def unicode_log_lines(rng: random.Random, count: int) -> list[str]:
    """``count`` log lines full of emoji, CJK, accents, astral and joined characters."""
    seed = rng.randrange(1, 65536)
    return [
        _UNICODE_TEMPLATES[k % len(_UNICODE_TEMPLATES)].format(
            seed=seed, k=k, n=count, pct=100 * k // max(1, count - 1)
        )
        for k in range(count)
    ]


def big_log_lines(rng: random.Random) -> list[str]:
    """Lines of 2-4 KB each, more than :data:`BIG_LOG_BYTES` in total."""
    lines: list[str] = []
    total = 0
    while total < BIG_LOG_BYTES:
        line = f"[chunk {len(lines):04d}] " + rng.randbytes(rng.randint(1024, 2048)).hex()
        lines.append(line)
        total += len(line) + 1
    return lines
