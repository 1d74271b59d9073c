#!/usr/bin/env python3
"""Finds import cycles between sibling modules of every crate in the workspace.

Rust allows modules of one crate to name each other freely, so nothing stops
`daemon` using `io` while `io` uses `daemon`: a knot that makes either hard to
change alone. This lists, per crate, every module's uses of its siblings
(`crate::a::b`, `super::x`, `self::x`, `use crate::{a, b}` groups), ignoring
test-only code (`#[cfg(test)] mod ...` blocks and files), and reports each
strongly connected component of more than one sibling. A child naming its
parent or an ancestor (pipeline::forward -> pipeline) is Rust's normal shape
and is not counted.

Usage: scripts/module-cycles.py [crate_src_dir ...]   (default: every */src)
Exit status 1 when a cycle is found.
"""
import os
import re
import sys

USE_PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+crate::\{([^;]*)\}", re.S)
CFG_TEST_MOD_FILE = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;")
CFG_TEST_BLOCK = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+[a-z_0-9]+\s*\{")


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def strip_test_blocks(text):
    while True:
        m = CFG_TEST_BLOCK.search(text)
        if not m:
            return text
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        text = text[: m.start()] + text[i:]


def module_files(src):
    """(module path tuple, file) for every .rs file; lib.rs/main.rs is ()."""
    out = []
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]):
                parts = []
            out.append((tuple(parts), os.path.join(root, f)))
    return out


def analyse(src):
    files = module_files(src)
    modules = {m for m, _ in files}
    test_only = set()
    texts = {}
    for m, path in files:
        raw = strip_comments(open(path, encoding="utf-8").read())
        for t in CFG_TEST_MOD_FILE.findall(raw):
            test_only.add(m + (t,))
        texts[m] = strip_test_blocks(raw)
    # a module under a test-only module is test-only too
    live = {m for m in modules if not any(m[: i + 1] in test_only for i in range(len(m)))}

    def resolve(base, segs):
        # longest prefix of base+segs that is a known module
        full = base + tuple(segs)
        for n in range(len(full), 0, -1):
            if full[:n] in live:
                return full[:n]
        return None

    edges = set()
    for m in live:
        text = texts[m]
        refs = []
        for kind, tail in USE_PATH.findall(text):
            segs = [s for s in tail.split("::") if s]
            if kind == "crate":
                refs.append(((), segs))
            elif kind == "self":
                refs.append((m, segs))
            else:  # super (possibly super::super)
                base = m[:-1]
                while segs and segs[0] == "super":
                    base, segs = base[:-1], segs[1:]
                refs.append((base, segs))
        for group in USE_GROUP.findall(text):
            for item in re.split(r"[,{}\s]+", group):
                if item and item[0].islower():
                    refs.append(((), item.split("::")))
        for base, segs in refs:
            target = resolve(base, segs)
            if target is None or target == m:
                continue
            # lift both ends to children of their common ancestor
            i = 0
            while i < min(len(m), len(target)) and m[i] == target[i]:
                i += 1
            if i == len(m) or i == len(target):
                continue  # ancestor/descendant: normal
            edges.add((m[: i + 1], target[: i + 1]))
    return live, edges


def sccs(nodes, edges):
    adj = {n: [] for n in nodes}
    for a, b in edges:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, [])
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(adj):
        if v not in index:
            visit(v)
    return out


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    srcs = sys.argv[1:] or sorted(
        os.path.join(here, d, "src")
        for d in [".", *os.listdir(here)]
        if os.path.isfile(os.path.join(here, d, "Cargo.toml")) and os.path.isdir(os.path.join(here, d, "src"))
    )
    found = False
    for src in srcs:
        live, edges = analyse(src)
        cycles = sccs(live, edges)
        name = os.path.relpath(src, here)
        if cycles:
            found = True
            for c in cycles:
                print(f"{name}: cycle: " + " <-> ".join("::".join(m) for m in c))
        else:
            print(f"{name}: {len(live)} modules, {len(edges)} sibling edges, no cycle")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
