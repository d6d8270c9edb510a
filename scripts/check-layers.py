#!/usr/bin/env python3
"""Checks that code dependencies between the library's top-level modules flow
one way: build → bundle format → storage → open/search → serve.

Each rule names a module folder and the top-level modules its code may not
reach through `crate::` paths (tests included: tests reach writers through
`crate::test_support`, the one shared fixture module). Comments are ignored.
Also checks that the operator's normal dependency tree carries no engine crate.
Exits non-zero with every violation listed."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# module → modules it must not import
FORBIDDEN = {
    "bundle": {"index", "search", "embed", "shard", "router", "mcp", "server", "eval", "cli"},
    "embed": {"index", "search", "bundle", "shard", "router", "mcp", "server", "eval", "cli"},
    "index": {"search", "shard", "router", "mcp", "server", "eval", "cli"},
    "search": {"index", "shard", "router", "mcp", "eval", "cli"},
    "shard": {"index", "router", "mcp", "eval", "cli"},
    "router": {"index", "search", "shard", "eval", "cli"},
    "mcp": {"index", "search", "shard", "router", "eval", "cli"},
    "server": {"index", "search", "shard", "router", "mcp", "eval", "cli"},
    "model": {"index", "search", "bundle", "embed", "shard", "router", "mcp", "server", "eval", "cli"},
    "allocator": {"model", "index", "search", "bundle", "embed", "shard", "router", "mcp", "server", "eval", "cli", "telemetry"},
    "heap_size": {"model", "index", "search", "bundle", "embed", "shard", "router", "mcp", "server", "eval", "cli"},
}
ENGINE_CRATES = ("lance", "datafusion", "candle", "tantivy", "tree-sitter", "arrow")

STRING = re.compile(r'"(?:\\.|[^"\\])*"')
PATH = re.compile(r"\bcrate::(\{[^;]*?\}|\w+)", re.S)


def code_only(text):
    out = []
    for line in text.splitlines():
        s = line.lstrip()
        if s.startswith("//"):
            out.append("")
            continue
        out.append(STRING.sub('""', line.split(" // ")[0]))
    return "\n".join(out)


def top_modules(match):
    if match.startswith("{"):
        inner = match[1:-1]
        depth, names, cur = 0, [], ""
        for ch in inner:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                names.append(cur)
                cur = ""
            else:
                cur += ch
        names.append(cur)
        return {n.strip().split("::")[0] for n in names if n.strip()}
    return {match}


def main():
    problems = []
    src = ROOT / "src"
    for module, banned in FORBIDDEN.items():
        files = [src / f"{module}.rs"] if (src / f"{module}.rs").exists() else sorted((src / module).rglob("*.rs"))
        for f in files:
            text = code_only(f.read_text())
            for m in PATH.finditer(text):
                for name in top_modules(m.group(1)) & banned:
                    line = text[: m.start()].count("\n") + 1
                    problems.append(f"{f.relative_to(ROOT)}:{line}: `{module}` imports `crate::{name}`")
    tree = subprocess.run(
        ["cargo", "tree", "-p", "trusty-operator", "-e", "normal", "--prefix", "none", "--offline"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if tree.returncode != 0:
        tree = subprocess.run(
            ["cargo", "tree", "-p", "trusty-operator", "-e", "normal", "--prefix", "none"],
            cwd=ROOT, capture_output=True, text=True,
        )
    if tree.returncode != 0:
        problems.append(f"cargo tree failed: {tree.stderr.strip()[:400]}")
    else:
        engine = sorted({l.split()[0] for l in tree.stdout.splitlines() if l.split() and l.split()[0].startswith(ENGINE_CRATES)})
        if engine:
            problems.append(f"the operator's dependency tree contains engine crates: {', '.join(engine)}")
        if " trusty-search " in f" {tree.stdout} ".replace("\n", " "):
            problems.append("the operator depends on trusty-search (the engine); use trusty-core")
    if problems:
        print("check-layers: dependency rules broken:")
        print("\n".join(f"  {p}" for p in problems))
        sys.exit(1)
    print("check-layers: modules import one way; the operator builds without the engine")


if __name__ == "__main__":
    main()
