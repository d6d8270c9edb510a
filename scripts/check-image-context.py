#!/usr/bin/env python3
"""Builds the image's binaries from exactly what `docker build` would see.

Assembles the Docker build context (the tracked files that `.dockerignore`
lets through), keeps only what the Dockerfile's builder stage COPYs, and runs
the builder stage's cargo command in that tree against the shared target dir
(dev profile: the release profile differs only in optimisation, and sharing
the target dir keeps this to recompiling our own crates). A manifest that
names a file the context lacks, or a source the image never copies, fails
here instead of on the first `docker build`.

Usage: scripts/check-image-context.py [--keep]
"""
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dockerignore_patterns():
    """(negated, pattern) pairs, in file order (the last match wins, as in Docker)."""
    out = []
    with open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            pat = line[1:] if neg else line
            out.append((neg, pat.strip("/")))
    return out


def pattern_matches(pat, path):
    """Docker's matching: a pattern matches a path or any of its parents; `**` spans directories."""
    regex = re.escape(pat).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    regex = regex.replace(r"\?", "[^/]")
    parts = path.split("/")
    return any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1))


def context_files():
    tracked = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    patterns = dockerignore_patterns()
    kept = []
    for path in tracked:
        if not os.path.isfile(os.path.join(ROOT, path)):
            continue
        ignored = False
        for neg, pat in patterns:
            if pattern_matches(pat, path):
                ignored = not neg
        if not ignored:
            kept.append(path)
    return kept


def builder_steps():
    """The builder stage's instructions (continuation lines joined), up to the next FROM."""
    steps, stage, pending = [], 0, ""
    with open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8") as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line, pending = pending + line, ""
            word = line.split(None, 1)[0]
            if word == "FROM":
                stage += 1
                continue
            if stage == 1:
                steps.append((word, line.split(None, 1)[1] if " " in line else ""))
    return steps


def copy_step(args, files, work):
    """COPY SRC... DEST relative to WORKDIR, from the context only (Docker's rules:
    a directory's contents go into DEST; files go into DEST/ when DEST ends with
    a slash or there are several sources, else become DEST)."""
    *sources, dest = args.split()
    into_dir = dest.endswith("/") or len(sources) > 1
    for src in sources:
        prefix = src.rstrip("/") + "/"
        tree = [f for f in files if f.startswith(prefix)]
        if tree:
            pairs = [(f, os.path.join(dest, os.path.relpath(f, src))) for f in tree]
        else:
            matched = [f for f in files if fnmatch.fnmatchcase(f, src)]
            if not matched and not any(c in src for c in "*?["):
                sys.exit(f"check-image-context: the Dockerfile COPYs {src}, which the build context lacks")
            pairs = [(f, os.path.join(dest, os.path.basename(f)) if into_dir else dest) for f in matched]
        for f, target in pairs:
            target = os.path.normpath(os.path.join(work, target))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), target)


def run_step(command, work, env):
    """A RUN step in the dev profile; system package installs are the host's business."""
    if "apt-get" in command:
        return
    out = os.path.join(work, ".out")
    command = command.replace("cargo build --release", "cargo build --offline")
    command = command.replace("target/release/", env["CARGO_TARGET_DIR"] + "/debug/").replace(" /out/", f" {out}/")
    print(f"check-image-context: RUN {command[:160]}{'...' if len(command) > 160 else ''}", flush=True)
    if subprocess.run(["bash", "-c", "set -e; " + command], cwd=work, env=env).returncode != 0:
        sys.exit("check-image-context: the image's builder stage fails in its own build context")


def main():
    keep = "--keep" in sys.argv
    files = context_files()
    work = tempfile.mkdtemp(prefix="trusty-image-context.")
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/trusty-search/target"))
    try:
        for word, args in builder_steps():
            if word == "COPY":
                copy_step(args, files, work)
            elif word == "RUN":
                run_step(args, work, env)
        for binary in ("trusty-search", "trusty-operator"):
            if not os.path.isfile(os.path.join(work, ".out", "usr/local/bin", binary)):
                sys.exit(f"check-image-context: the builder stage did not install {binary}")
        print(f"check-image-context: the image's binaries build from its {len(files)}-file build context")
    finally:
        if keep:
            print(f"context kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
