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
   our crates it may import (`//! May import: cadre-a, cadre-b.`, continued on the next `//! `
   lines; or "none of our crates", or "every crate ... below it"), and its Cargo.toml depends on
   no other crate of ours.

4. Sizes: no source file over 1,000 lines before its tests (the lines before the first
   `#[cfg(test)]`), no function over 100 lines, outside test code (files under a `tests/`
   folder, modules declared `#[cfg(test)]`, everything after a file's first `#[cfg(test)]`).

Exits 1 naming every violation; `-v` also prints every module edge. Standard library only,
so CI needs nothing installed.
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


MAX_FILE_LINES = 1000
MAX_FN_LINES = 100
FN_START = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")


def code_of(line):
    """A line without its string and char literals and its comment, for counting braces."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return re.sub(r"//.*", "", line)


def long_functions(lines):
    """(name, first line, length) of every function longer than MAX_FN_LINES."""
    out, i = [], 0
    while i < len(lines):
        m = FN_START.match(lines[i])
        if not m:
            i += 1
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            code = code_of(lines[j])
            for ch in code:
                if ch == "{":
                    depth, started = depth + 1, True
                elif ch == "}":
                    depth -= 1
            if started and depth == 0:
                break
            if not started and code.rstrip().endswith(";"):
                break
            j += 1
        if j - i + 1 > MAX_FN_LINES:
            out.append((m.group(1), i + 1, j - i + 1))
        i = j + 1 if started else i + 1
    return out


def size_problems(crates):
    """Files over MAX_FILE_LINES and functions over MAX_FN_LINES, outside test code."""
    problems = []
    for name, (d, _) in sorted(crates.items()):
        src = os.path.join(d, "src")
        if not os.path.isdir(src):
            continue
        test_only = set(crate_test_files(src))
        roots = [src] + [os.path.join(d, x) for x in ("benches",) if os.path.isdir(os.path.join(d, x))]
        for root in roots:
            for dp, _, files in os.walk(root):
                for f in sorted(files):
                    path = os.path.join(dp, f)
                    if not f.endswith(".rs") or path in test_only:
                        continue
                    lines = open(path, encoding="utf-8").read().split("\n")
                    cut = next((k for k, l in enumerate(lines) if l.startswith("#[cfg(test)]")), len(lines))
                    rel = os.path.relpath(path, ROOT)
                    if cut > MAX_FILE_LINES:
                        problems.append(f"{rel}: {cut} lines before its tests (at most {MAX_FILE_LINES})")
                    for fn, at, n in long_functions(lines[:cut]):
                        problems.append(f"{rel}:{at}: fn {fn} is {n} lines (at most {MAX_FN_LINES})")
    return problems


def crate_test_files(src_dir):
    """Files of modules declared `#[cfg(test)] mod x;` (and everything below them)."""
    all_mods = {}
    for dp, _, files in os.walk(src_dir):
        for f in files:
            if f.endswith(".rs"):
                p = os.path.join(dp, f)
                parts = os.path.relpath(p, src_dir)[:-3].split(os.sep)
                if parts[-1] in ("mod", "lib", "main"):
                    parts = parts[:-1]
                all_mods["::".join(parts)] = p
    tests = set()
    for m, p in all_mods.items():
        src = open(p, encoding="utf-8").read()
        for t in re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", src):
            tests.add(f"{m}::{t}" if m else t)
    return [p for m, p in all_mods.items() if any(m == t or m.startswith(t + "::") for t in tests)]


def may_import(head):
    """The crates a lib.rs says it may import; None for "every crate below it"."""
    m = re.search(r"^//! May import:(.*(?:\n//! cadre-.*)*)", head, re.M)
    if not m:
        return set()
    text = m.group(1)
    if "every crate" in text:
        return None
    return set(re.findall(r"cadre(?:-[a-z]+)*", text))


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
                    dm = re.match(r"^(cadre(?:-[\w-]+)?)\s*[.=]", line)
                    if dm:
                        deps.append(dm.group(1))
            crates[nm.group(1)] = (dp, deps)
    return crates


def check():
    """Every problem of the tree at ROOT, and the number of crates with a layer."""
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
        allowed = may_import(head)
        for dep in crates[name][1]:
            if allowed is not None and dep not in allowed:
                problems.append(f"{name} depends on {dep}, which its lib.rs does not list under `May import:`")
    for name, (d, deps) in sorted(crates.items()):
        for dep in deps:
            if name in layers and dep in layers and layers[dep] >= layers[name]:
                problems.append(
                    f"{name} (layer {layers[name]}) depends on {dep} (layer {layers[dep]}): crates may import only lower layers"
                )
        if not os.path.isdir(os.path.join(d, "src")):
            continue
        roots = [(name, os.path.join(d, "src"))]
        bins = os.path.join(d, "src", "bin")
        if os.path.isdir(bins):
            roots += [
                (f"{name} (bin {b})", os.path.join(bins, b))
                for b in sorted(os.listdir(bins))
                if os.path.isfile(os.path.join(bins, b, "main.rs"))
            ]
        for label, root in roots:
            crate = Crate(root)
            for comp in cycles(crate.edges(), crate.mods):
                names = ", ".join(c or "(crate root)" for c in comp)
                problems.append(f"{label}: modules import each other in a circle: {names}")
    problems.extend(size_problems(crates))
    return problems, len(layers)


SELF_TEST_TREE = {
    "Cargo.toml": "[workspace]\n",
    "low/Cargo.toml": '[package]\nname = "cadre-low"\n[dependencies]\ncadre-high.workspace = true\n',
    "low/src/lib.rs": "//! Low.\n//!\n//! Layer: 0.\n//! May import: none of our crates.\npub mod a;\npub mod b;\n",
    "low/src/a.rs": "use crate::b::B;\npub struct A;\n",
    "low/src/b.rs": "use crate::a::A;\npub struct B;\nfn long() {\n" + "    let _x = 1;\n" * 101 + "}\n",
    "high/Cargo.toml": '[package]\nname = "cadre-high"\n',
    "high/src/lib.rs": "//! High.\n//!\n//! Layer: 1.\npub mod c;\n",
    "bare/Cargo.toml": '[package]\nname = "cadre-bare"\n',
    "bare/src/lib.rs": "pub fn bare() {}\n",
    "high/src/c.rs": "pub fn c() {}\n" + "// filler\n" * 1001 + "#[cfg(test)]\nmod tests {}\n",
}


def self_test():
    """Builds a small tree with one of each violation and checks every one is reported."""
    import tempfile

    global ROOT
    with tempfile.TemporaryDirectory() as tmp:
        for rel, text in SELF_TEST_TREE.items():
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)) or tmp, exist_ok=True)
            open(os.path.join(tmp, rel), "w", encoding="utf-8").write(text)
        root, ROOT = ROOT, tmp
        try:
            problems, _ = check()
        finally:
            ROOT = root
    expected = [
        "cadre-low depends on cadre-high, which its lib.rs does not list",
        "cadre-low (layer 0) depends on cadre-high (layer 1): crates may import only lower layers",
        "cadre-low: modules import each other in a circle: a, b",
        "low/src/b.rs:3: fn long is 103 lines",
        "high/src/lib.rs: no `//! May import:` line",
        "high/src/c.rs: 1002 lines before its tests",
        "bare/src/lib.rs: does not open with a crate doc comment",
        "bare/src/lib.rs: no `//! May import:` line",
        "bare/src/lib.rs: no `//! Layer: N` line",
    ]
    missing = [e for e in expected if not any(e in p for p in problems)]
    for e in missing:
        print(f"house-rules self-test: not reported: {e}")
    if len(problems) != len(expected):
        print(f"house-rules self-test: {len(problems)} problems reported, {len(expected)} expected: {problems}")
    ok = not missing and len(problems) == len(expected)
    print(f"house-rules self-test: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


def main():
    if "--self-test" in sys.argv:
        return self_test()
    problems, n_layers = check()
    if "-v" in sys.argv:
        for name, (d, _) in sorted(workspace_crates().items()):
            if os.path.isdir(os.path.join(d, "src")):
                e = Crate(os.path.join(d, "src")).edges()
                for m in sorted(e):
                    print(f"{name}: {m or '(lib)'} -> {', '.join(sorted(x or '(lib)' for x in e[m]))}")
    for p in problems:
        print(p)
    if problems:
        print(f"house-rules: {len(problems)} problem(s)")
        return 1
    print(f"house-rules: {n_layers} crates, layers point down, no module circles, sizes within bounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
