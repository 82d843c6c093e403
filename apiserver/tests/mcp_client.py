"""A real MCP client for apiserver/tests/mcp.rs: the official Python SDK (PyPI `mcp`).

Usage: mcp_client.py http URL TOKEN CALLS_JSON
       mcp_client.py stdio MICRODASH_BIN SERVER_URL TOKEN CALLS_JSON
MCP_CLIENT_MODE=legacy negotiates the 2025 protocol (sessions, ping); by default the SDK's `auto`
takes the newest both sides speak.

Connects over Streamable HTTP (the bearer token in every request) or starts `microdash mcp` as a
subprocess (stdio, the token in MICRODASH_TOKEN), pings, lists the tools and calls each
`[name, arguments]` of CALLS_JSON in order. Prints one JSON document: the tools (name, scope
hints, input schema) and each call's result (isError, structuredContent, text).
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def dump_result(result):
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    return {
        "isError": bool(result.is_error),
        "structured": result.structured_content,
        "text": "\n".join(texts),
    }


async def session(client, calls, legacy):
    if legacy:  # ping was removed from the protocol in 2026-07-28
        await client.send_ping()
    tools = await client.list_tools()
    out = {
        "tools": [
            {
                "name": t.name,
                "title": t.title,
                "description": t.description,
                "readOnly": t.annotations.read_only_hint if t.annotations else None,
                "inputSchema": t.input_schema,
            }
            for t in tools.tools
        ],
        "results": [],
    }
    for name, arguments in calls:
        try:
            result = await client.call_tool(name, arguments)
            out["results"].append(dump_result(result))
        except Exception as e:  # a protocol error (unknown tool): reported, not raised
            out["results"].append({"protocolError": str(e)})
    return out


async def main():
    mode = sys.argv[1]
    legacy = os.environ.get("MCP_CLIENT_MODE") == "legacy"
    options = {"mode": "legacy"} if legacy else {}
    if mode == "http":
        url, token, calls = sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        async with http:
            async with Client(streamable_http_client(url, http_client=http), **options) as client:
                out = await session(client, calls, legacy)
    else:
        binary, server_url, token, calls = sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
        params = StdioServerParameters(
            command=binary,
            args=["mcp"],
            env={"MICRODASH_URL": server_url, "MICRODASH_TOKEN": token},
        )
        async with Client(params, **options) as client:
            out = await session(client, calls, legacy)
    print(json.dumps(out))


asyncio.run(main())
