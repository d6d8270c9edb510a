#!/usr/bin/env python3
"""Checks trusty-search's MCP server with a client nobody here wrote: the
official Python `mcp` SDK.

Usage:
  client_check.py stdio <trusty-search binary> <api base URL> <index> <symbol> <query>
  client_check.py http  <MCP endpoint URL>                     <index> <symbol> <query>

It lists the tools, searches `index` for `query` and expects `symbol` among
the hits (with the structured content the SDK validated against the declared
output schema), finds the definition of `symbol`, and searches an index that
does not exist expecting a tool error that says `index_not_found` and
`retryable` (in its text and in `_meta`). Exits non-zero with a message on the first failed check.
"""

import asyncio
import sys
from contextlib import asynccontextmanager

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

EXPECTED_TOOLS = {
    "search",
    "search_all",
    "find_definition",
    "find_references",
    "call_graph",
    "read_code",
    "file_outline",
    "list_indexes",
    "index_status",
}


class CheckFailed(Exception):
    pass


def check(cond, what, detail=""):
    if not cond:
        raise CheckFailed(f"{what}\n{detail}")
    print(f"ok: {what}", file=sys.stderr)


def first_check_failure(exc):
    if isinstance(exc, CheckFailed):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_check_failure(inner)
            if found is not None:
                return found
    return None


def text_of(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


@asynccontextmanager
async def connect(transport, target):
    if transport == "stdio":
        binary, api_url = target
        params = StdioServerParameters(
            command=binary,
            args=["mcp", "--router", api_url],
            env={"RUST_LOG": "warn"},
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                yield session
    elif transport == "http":
        (url,) = target
        async with streamable_http_client(url) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                yield session
    else:
        raise CheckFailed(f"unknown transport {transport!r}")


async def run(transport, target, index, symbol, query):
    async with connect(transport, target) as session:
        init = await session.initialize()
        check(init.server_info.name == "trusty-search", "server identifies as trusty-search", str(init.server_info))

        tools = await session.list_tools()
        names = {t.name for t in tools.tools}
        check(names == EXPECTED_TOOLS, "the nine tools are listed", f"got {sorted(names)}")
        search_tool = next(t for t in tools.tools if t.name == "search")
        props = search_tool.input_schema.get("properties", {})
        check(
            {"index", "query", "mode", "top_k", "language", "path"} <= set(props),
            "search declares its input schema",
            str(search_tool.input_schema),
        )
        check(search_tool.output_schema is not None, "search declares an output schema")

        # The SDK validates structured content against the output schema here.
        res = await session.call_tool("search", {"index": index, "query": query, "top_k": 5})
        text = text_of(res)
        check(not res.is_error, "search succeeds", text)
        hits = (res.structured_content or {}).get("hits", [])
        check(any(h.get("symbol") == symbol for h in hits), f"search hits include {symbol}", text)
        check(symbol in text and "score" in text and "why:" in text, "search text shows symbol, score and reasons", text)

        res = await session.call_tool("find_definition", {"index": index, "symbol": symbol})
        text = text_of(res)
        check(not res.is_error, "find_definition succeeds", text)
        results = (res.structured_content or {}).get("results", [])
        check(
            any(r.get("symbol") == symbol and r.get("path", "").endswith(".rs") for r in results),
            f"find_definition locates {symbol}",
            text,
        )
        check(f"definition of `{symbol}`" in text, "find_definition text names the symbol", text)

        # Open the definition where navigation pointed, then the outline of its file.
        where = next(r for r in results if r.get("symbol") == symbol)
        res = await session.call_tool(
            "read_code",
            {"index": index, "path": where["path"], "start_line": where["start_line"], "end_line": where["end_line"]},
        )
        text = text_of(res)
        check(not res.is_error, "read_code succeeds", text)
        sc = res.structured_content or {}
        check(
            sc.get("path") == where["path"] and sc.get("start_line") == where["start_line"] and symbol in sc.get("text", ""),
            "read_code returns the definition's lines",
            str(sc),
        )
        check(f"{where['start_line']} | " in text, "read_code numbers the lines", text)
        res = await session.call_tool("file_outline", {"index": index, "path": where["path"]})
        text = text_of(res)
        check(not res.is_error, "file_outline succeeds", text)
        symbols = [s.get("symbol") for s in (res.structured_content or {}).get("symbols", [])]
        check(symbol in symbols, f"file_outline lists {symbol}", text)
        # File search through both search tools: files ranked once each, with
        # their best line ranges; the SDK validates them against the output schema.
        res = await session.call_tool("search", {"index": index, "query": query, "top_k": 5, "group_by": "file"})
        text = text_of(res)
        check(not res.is_error, "file search succeeds", text)
        sc = res.structured_content or {}
        paths = [f.get("path") for f in sc.get("files", [])]
        check(where["path"] in paths, f"file search ranks {where['path']}", text)
        check(len(paths) == len(set(paths)), "file search lists each file once", str(paths))
        check(not sc.get("hits"), "file search answers files, not chunks", str(sc.get("hits")))
        best = next(f for f in sc["files"] if f["path"] == where["path"])
        check(
            any(c.get("start_line", 0) >= 1 and c.get("end_line", 0) >= c.get("start_line", 0) for c in best.get("chunks", [])),
            "a ranked file carries its best line ranges",
            str(best),
        )
        check(where["path"] in text and "score" in text, "file search text shows paths and scores", text)
        res = await session.call_tool("search_all", {"query": query, "group_by": "file"})
        text = text_of(res)
        check(not res.is_error, "search_all by file succeeds", text)
        merged = (res.structured_content or {}).get("files", [])
        check(
            any(f.get("index_id") == index and f.get("path") == where["path"] for f in merged),
            "search_all by file names each file's index",
            text,
        )

        res = await session.call_tool("read_code", {"index": index, "path": "../etc/passwd"})
        text = text_of(res)
        check(res.is_error and "bad_request" in text, "read_code refuses a path outside the repository", text)

        res = await session.call_tool("search", {"index": "no-such-index", "query": query})
        text = text_of(res)
        check(res.is_error, "search on an unknown index is a tool error", text)
        check("index_not_found" in text, "the error names index_not_found", text)
        check("retryable: false" in text, "the error says it is not retryable", text)
        # Some clients check structured content against the output schema even
        # on errors, so the error body travels in `_meta`, not there.
        check(res.structured_content is None, "the error has no structured content", str(res.structured_content))
        body = (res.meta or {}).get("search.trusty.dev/error") or {}
        check(body.get("error") == "index_not_found" and body.get("retryable") is False, "the error is structured in _meta", str(res.meta))

        res = await session.call_tool("list_indexes", {})
        text = text_of(res)
        check(not res.is_error and index in text, "list_indexes names the index", text)


def main(argv):
    if len(argv) < 2 or argv[1] not in ("stdio", "http"):
        print(__doc__, file=sys.stderr)
        return 2
    transport = argv[1]
    n_target = 2 if transport == "stdio" else 1
    rest = argv[2:]
    if len(rest) != n_target + 3:
        print(__doc__, file=sys.stderr)
        return 2
    target, (index, symbol, query) = rest[:n_target], rest[n_target:]
    try:
        asyncio.run(asyncio.wait_for(run(transport, target, index, symbol, query), timeout=120))
    except Exception as e:
        # anyio task groups wrap the failure in (nested) exception groups.
        failure = first_check_failure(e)
        if failure is None:
            raise
        print(f"FAILED ({transport}): {failure}", file=sys.stderr)
        return 1
    print(f"all MCP checks passed over {transport}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
