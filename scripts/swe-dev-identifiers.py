#!/usr/bin/env python3
"""Identifier-shaped queries from the SWE-bench development set.

For each instance, the query is the name of a function or class the fix
edits (read from the gold patch and the tree at the base commit), and the
gold file is the one file in the tree that defines that name: what an
engineer or agent types when they know the symbol and want its definition.
Names defined in more than one file, dunder names and names shorter than four
characters are skipped; instances without such a name are left out. With
`--ambiguous`, only names that two to ten files define are kept instead (the
gold file is still the one the fix edits): ranking among definitions.

    scripts/swe-dev-identifiers.py INSTANCES.jsonl GOLD.json OUT_DIR [--ambiguous]
    scripts/eval-swe-dev.sh OUT_DIR/instances.jsonl ...

Writes OUT_DIR/instances.jsonl (same instance ids and trees, so indexes built
for the issue queries are reused) and one query file per instance.
"""

import ast
import json
import os
import re
import sys

HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")


def edited_lines(patch):
    """{path: sorted old-side line numbers the patch removes or inserts at}."""
    out, path, old = {}, None, 0
    for line in patch.splitlines():
        if line.startswith("--- "):
            path = None
        elif line.startswith("+++ "):
            name = line[4:].strip()
            path = name[2:] if name.startswith("b/") else None
        elif path and (m := HUNK.match(line)):
            old = int(m.group(1))
        elif path and line.startswith("-"):
            out.setdefault(path, set()).add(old)
            old += 1
        elif path and line.startswith("+"):
            out.setdefault(path, set()).add(max(old - 1, 1))
        elif path and line.startswith(" "):
            old += 1
    return {p: sorted(ls) for p, ls in out.items()}


def innermost_definitions(source, lines):
    """Names of the innermost function or class around each line, in order."""
    tree = ast.parse(source)
    defs = [
        n
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    names = []
    for ln in lines:
        around = [d for d in defs if d.lineno <= ln <= (d.end_lineno or d.lineno)]
        if around:
            inner = max(around, key=lambda d: d.lineno)
            if inner.name not in names:
                names.append(inner.name)
    return names


def definers(tree_dir, name):
    pattern = re.compile(rf"^\s*(?:async\s+def|def|class)\s+{re.escape(name)}\b", re.M)
    found = []
    for root, dirs, files in os.walk(tree_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if f.endswith(".py"):
                p = os.path.join(root, f)
                try:
                    text = open(p, encoding="utf-8", errors="replace").read()
                except OSError:
                    continue
                if pattern.search(text):
                    found.append(os.path.relpath(p, tree_dir))
    return found


def main():
    instances, gold, out_dir = sys.argv[1:4]
    ambiguous = "--ambiguous" in sys.argv[4:]
    patches = {g["instance_id"]: g["golden_patch"] for g in json.load(open(gold))}
    os.makedirs(os.path.join(out_dir, "queries"), exist_ok=True)
    kept = 0
    with open(os.path.join(out_dir, "instances.jsonl"), "w") as out:
        for line in open(instances):
            inst = json.loads(line)
            chosen = None
            for path, lines in edited_lines(patches[inst["instance_id"]]).items():
                if not path.endswith(".py"):
                    continue
                try:
                    source = open(os.path.join(inst["tree"], path), encoding="utf-8").read()
                    names = innermost_definitions(source, lines)
                except (OSError, SyntaxError, ValueError):
                    continue
                for name in names:
                    if name.startswith("__") or len(name) < 4:
                        continue
                    found = definers(inst["tree"], name)
                    wanted = 2 <= len(found) <= 10 if ambiguous else len(found) == 1
                    if path in found and wanted:
                        chosen = (name, path)
                        break
                if chosen:
                    break
            if not chosen:
                continue
            name, path = chosen
            query_file = os.path.join(out_dir, "queries", inst["instance_id"] + ".txt")
            with open(query_file, "w") as q:
                q.write(name)
            inst.update(query=name, query_file=query_file, gold_files=[path])
            out.write(json.dumps(inst) + "\n")
            kept += 1
    print(f"{kept} identifier queries written to {out_dir}/instances.jsonl")


if __name__ == "__main__":
    main()
