#!/usr/bin/env python3
"""Module dependencies inside src/s3 (ADR 0008): prints each room's sibling imports and exits 1
on a cycle. Counts `use super::x::..`, `use super::{x::..}`, `use super::x;` and inline
`super::x::` / `crate::s3::x::` paths outside `#[cfg(test)]`. mod.rs is the hub (BaleS3,
limits, helpers) and is not a room."""
import os
import re
import sys

D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "s3")
mods = sorted(f[:-3] for f in os.listdir(D) if f.endswith(".rs") and f != "mod.rs")
g = {}
for m in mods:
    s = open(os.path.join(D, m + ".rs")).read().split("#[cfg(test)]")[0]
    deps = set(re.findall(r"(?:super|crate::s3)::(\w+)::", s))
    deps |= set(re.findall(r"use super::(\w+);", s))
    for group in re.findall(r"use super::\{([^}]*)\}", s):
        deps |= set(re.findall(r"\b(\w+)(?:::|\s*[,}]|$)", group))
    g[m] = sorted(x for x in deps if x in mods and x != m)
for m in mods:
    print(f"{m:10} -> {', '.join(g[m])}")
state = {}
cycle = []


def visit(n, path):
    state[n] = 1
    for x in g[n]:
        if state.get(x) == 1:
            cycle.append(path[path.index(x):] + [x])
        elif x not in state:
            visit(x, path + [x])
    state[n] = 2


for m in mods:
    if m not in state:
        visit(m, [m])
for c in cycle:
    print("CYCLE:", " -> ".join(c))
sys.exit(1 if cycle else 0)
