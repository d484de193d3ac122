#!/usr/bin/env python3
"""Fail when a Rust function outside test code is longer than the limit.

Usage: scripts/fn_lengths.py [--max N] DIR...   (default: --max 120, src crates)

Counts the lines from a function's `fn` line to its closing brace at the same
indentation, skipping `#[cfg(test)]` modules and `tests.rs` files. Prints
every function over the limit (lines, place, name) and exits 1 if there is
one; prints the five longest otherwise. `.ci/run` runs it. A directory with a
PATCHED.md is a patched copy of someone else's crate and is not counted.
"""
import os
import re
import sys

FN = re.compile(r"^(\s*)(pub(\([a-z]+\))? )?(async )?(const )?(unsafe )?fn (\w+)")


def functions(root):
    for dirpath, dirs, files in os.walk(root):
        if "PATCHED.md" in files:
            dirs.clear()
            continue
        if "/target" in dirpath or dirpath.endswith("tests") or "/tests/" in dirpath + "/":
            continue
        for name in sorted(files):
            if not name.endswith(".rs") or name == "tests.rs":
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().split("\n")
            in_test = False
            for i, line in enumerate(lines):
                if re.match(r"\s*#\[cfg\(test\)\]", line):
                    in_test = True
                m = FN.match(line)
                if not m or in_test or line.rstrip().endswith(";"):
                    continue
                indent = len(m.group(1))
                j = i + 1
                while j < len(lines):
                    lj = lines[j]
                    if lj.strip() == "}" and len(lj) - len(lj.lstrip()) == indent:
                        break
                    j += 1
                yield j - i + 1, f"{path}:{i + 1}", m.group(7)


def main(argv):
    limit = 120
    if len(argv) >= 2 and argv[0] == "--max":
        limit = int(argv[1])
        argv = argv[2:]
    roots = argv or ["src", "crates"]
    found = sorted((f for r in roots for f in functions(r)), reverse=True)
    long = [f for f in found if f[0] > limit]
    for n, place, name in long:
        print(f"{n} {place} {name}: longer than {limit} lines")
    if long:
        return 1
    print(f"no function over {limit} lines; the longest:")
    for n, place, name in found[:5]:
        print(f"  {n} {place} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
