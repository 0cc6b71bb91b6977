#!/usr/bin/env python3
"""The house rules CI checks on the source tree (docs/ARCHITECTURE.md, "Crate map"):

1. No import circle between the modules of any crate. A module is a file; an edge A -> B is any
   path in A's non-test code that names B (`use crate::b::X`, `super::b::f()`, a child module
   `b::f()`), with re-exports followed to the module that defines the name, so `crate::X`
   re-exported by lib.rs counts as a use of X's own module.
2. Dependencies between our crates point down only: every crate's lib.rs declares its layer
   (`//! Layer: N`, 0 = proto, the binary highest) and a crate may depend (normal and build
   dependencies) only on crates of a strictly lower layer.
3. Every crate's lib.rs opens with a doc comment that says what the crate is for and which of
   our crates it may import (a line starting `//! May import:`).

Exits 1 naming every violation. Standard library only, so CI needs nothing installed.
"""
import collections
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_tests(src):
    """Drop `#[cfg(test)] mod ... { }` blocks, line comments and string contents' paths."""
    out = re.sub(r"//[^\n]*", "", src)
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", out)
        if not m:
            break
        depth, i = 1, m.end()
        while i < len(out) and depth:
            depth += {"{": 1, "}": -1}.get(out[i], 0)
            i += 1
        out = out[: m.start()] + out[i:]
    # `#[cfg(test)] mod tests;` (a file of its own): the file is dropped below
    return out


def crate_modules(src_dir):
    """Module path ('' = crate root) -> file, excluding test-only files."""
    mods = {}
    test_only = set()
    for dp, _, files in os.walk(src_dir):
        for f in files:
            if not f.endswith(".rs"):
                continue
            p = os.path.join(dp, f)
            parts = os.path.relpath(p, src_dir)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib") or (len(parts) == 1 and parts[0] == "main"):
                parts = parts[:-1]
            if parts and parts[0] == "bin":
                continue
            mods["::".join(parts)] = p
    # files declared as `#[cfg(test)] mod x;` are test code
    for m, p in mods.items():
        src = open(p, encoding="utf-8").read()
        for t in re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", src):
            test_only.add(f"{m}::{t}" if m else t)
    for t in list(test_only):
        for m in list(mods):
            if m == t or m.startswith(t + "::"):
                del mods[m]
    return mods


def use_paths(src):
    """Every `use` path, with groups expanded: [(path, alias_or_last, is_pub)]."""
    out = []
    for m in re.finditer(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", src):
        is_pub = bool(m.group(1)) and "(" not in (m.group(1) or "")
        for path in expand(m.group(2).replace("\n", " ")):
            path = path.strip()
            alias = None
            am = re.match(rf"(.*)\s+as\s+({IDENT})$", path)
            if am:
                path, alias = am.group(1).strip(), am.group(2)
            if not path:
                continue
            out.append((path, alias or path.split("::")[-1], is_pub))
    return out


def expand(tree):
    tree = tree.strip()
    i = tree.find("{")
    if i < 0:
        return [tree]
    prefix, body = tree[:i], tree[i + 1 : tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    res = []
    for p in parts:
        p = p.strip()
        if not p:
            continue
        for e in expand(p):
            res.append(prefix + e if e != "self" else prefix.rstrip(":"))
    return res


class Crate:
    def __init__(self, src_dir):
        self.mods = crate_modules(src_dir)
        self.src = {m: strip_comments_and_tests(open(p, encoding="utf-8").read()) for m, p in self.mods.items()}
        # name -> module that defines it, for names a module re-exports with `pub use`
        self.reexports = collections.defaultdict(dict)
        for m, s in self.src.items():
            for path, name, is_pub in use_paths(s):
                if is_pub and not path.endswith("*"):
                    self.reexports[m][name] = path

    def absolute(self, cur, path):
        """A path as segments from the crate root, or None for another crate's path."""
        segs = path.split("::")
        base = cur.split("::") if cur else []
        if segs[0] == "crate":
            return segs[1:]
        if segs[0] in ("super", "self"):
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    base = base[:-1]
                segs = segs[1:]
            return base + segs
        child = "::".join(base + [segs[0]])
        if child in self.mods:
            return base + segs
        return None

    def resolve(self, cur, path, seen=None):
        """The module a path names (the deepest module on it, re-exports followed)."""
        segs = self.absolute(cur, path)
        if segs is None:
            return None
        best, rest = None, []
        for i in range(len(segs) + 1):
            m = "::".join(segs[:i])
            if m in self.mods:
                best, rest = m, segs[i:]
        if best is None:
            return None
        seen = seen or set()
        if rest and rest[0] in self.reexports.get(best, {}) and (best, rest[0]) not in seen:
            seen.add((best, rest[0]))
            target = self.reexports[best][rest[0]]
            via = self.resolve(best, target, seen)
            if via is not None:
                return via
        return best

    def edges(self):
        edges = collections.defaultdict(set)
        for m, s in self.src.items():
            refs = set()
            for path, _, is_pub in use_paths(s):
                # a `pub use` only re-exports: users are sent on to the source (resolve)
                if not is_pub:
                    refs.add(path)
            body = re.sub(r"\b(pub(?:\([^)]*\))?\s+)?use\s+[^;]+;", "", s)
            refs.update(re.findall(rf"\b((?:crate|super|self)(?:::{IDENT})+)", body))
            for first in re.findall(rf"(?<![:\w])({IDENT})::", body):
                if first not in ("crate", "super", "self", "Self"):
                    refs.add(first + "::x")
            for r in refs:
                t = self.resolve(m, r)
                if t is not None and t != m:
                    edges[m].add(t)
        return edges


def cycles(edges, nodes):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(100000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def workspace_crates():
    """name -> (dir, [our crates it depends on, normal and build deps only])."""
    crates = {}
    for dp, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in ("target", ".git", "node_modules", "fuzz", "clients")]
        if "Cargo.toml" in files and dp != ROOT:
            text = open(os.path.join(dp, "Cargo.toml"), encoding="utf-8").read()
            nm = re.search(r'^name\s*=\s*"([^"]+)"', text, re.M)
            if not nm:
                continue
            deps = []
            section = None
            for line in text.splitlines():
                sm = re.match(r"^\[(.+)\]", line)
                if sm:
                    section = sm.group(1)
                    continue
                if section in ("dependencies", "build-dependencies"):
                    dm = re.match(r"^(cadre-[\w-]+)", line)
                    if dm:
                        deps.append(dm.group(1))
            crates[nm.group(1)] = (dp, deps)
    return crates


def main():
    problems = []
    crates = workspace_crates()
    layers = {}
    for name, (d, _) in crates.items():
        lib = os.path.join(d, "src", "lib.rs")
        if not os.path.exists(lib):
            continue
        head = open(lib, encoding="utf-8").read()
        m = re.search(r"^//! Layer: (\d+)", head, re.M)
        if not head.startswith("//!"):
            problems.append(f"{os.path.relpath(lib, ROOT)}: does not open with a crate doc comment")
        if not re.search(r"^//! May import:", head, re.M):
            problems.append(f"{os.path.relpath(lib, ROOT)}: no `//! May import:` line")
        if m:
            layers[name] = int(m.group(1))
        else:
            problems.append(f"{os.path.relpath(lib, ROOT)}: no `//! Layer: N` line")
    for name, (d, deps) in sorted(crates.items()):
        for dep in deps:
            if name in layers and dep in layers and layers[dep] >= layers[name]:
                problems.append(
                    f"{name} (layer {layers[name]}) depends on {dep} (layer {layers[dep]}): crates may import only lower layers"
                )
        if not os.path.isdir(os.path.join(d, "src")):
            continue
        crate = Crate(os.path.join(d, "src"))
        for comp in cycles(crate.edges(), crate.mods):
            names = ", ".join(c or "(lib.rs)" for c in comp)
            problems.append(f"{name}: modules import each other in a circle: {names}")
    if "-v" in sys.argv:
        for name, (d, _) in sorted(crates.items()):
            if os.path.isdir(os.path.join(d, "src")):
                e = Crate(os.path.join(d, "src")).edges()
                for m in sorted(e):
                    print(f"{name}: {m or '(lib)'} -> {', '.join(sorted(x or '(lib)' for x in e[m]))}")
    for p in problems:
        print(p)
    if problems:
        print(f"check-layers: {len(problems)} problem(s)")
        return 1
    print(f"check-layers: {len(layers)} crates, layers point down, no module circles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
