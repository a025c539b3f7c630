"""What a py-spy profile (collapsed stacks, ``--format raw``) says, in a few lines.

    .venv/bin/python bench/profile_summary.py PROFILE.txt [...] [--top 12]

For each profile: its samples (with ``--nonblocking`` and without ``--idle``, a sample is a moment
the process was running Python or in a call out of it), the functions where they were taken
(self), and the functions they were under (inclusive), each as a share of the samples.
Functions are named ``name (file)``, their lines merged.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def function(frame: str) -> str:
    return _LINE.sub(")", frame.strip())


def read(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    total, own, under = 0, Counter[str](), Counter[str]()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [function(f) for f in stack.split(";") if f]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))] or frames
        total += n
        own[frames[-1]] += n
        for name in set(frames):
            under[name] += n
    return total, own, under


def summary(path: Path, top: int) -> str:
    total, own, under = read(path)
    if not total:
        return f"{path.name}: no samples"
    lines = [f"{path.name}: {total} samples (500 a second)", "  self:"]
    lines += [f"    {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines.append("  inclusive:")
    lines += [f"    {n / total:6.1%}  {name}" for name, n in under.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    print("\n\n".join(summary(p, args.top) for p in args.profiles))


if __name__ == "__main__":
    main()
