"""Calls steer proxy with the official `openai` and `anthropic` Python SDKs.

    python sdk_client.py http://127.0.0.1:PORT

Runs every case below against the proxy and prints one JSON object per case
on stdout: what the SDK parsed, and, for the `*_raw` cases, the exact bytes
and headers the client received (hex), so the Rust test can compare them
with what the fake upstream sent. Each request carries the header
`x-steer-tag-case: <name>`, so its metrics record can be found by tag.
"""

import json
import sys

import anthropic
import openai

ROOT = sys.argv[1].rstrip("/")
OPENAI_KEY = "sk-test-openai-client-key-0123456789"
ANTHROPIC_KEY = "sk-ant-test-client-key-0123456789"

oai = openai.OpenAI(
    base_url=f"{ROOT}/v1",
    api_key=OPENAI_KEY,
    max_retries=0,
    default_headers={"x-steer-tag-suite": "pysdk"},
)
ant = anthropic.Anthropic(
    base_url=ROOT,
    api_key=ANTHROPIC_KEY,
    max_retries=0,
    default_headers={"x-steer-tag-suite": "pysdk"},
)

MESSAGES = [{"role": "user", "content": "What is the capital of the UK?"}]
OAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_user_country",
            "description": "The user's country",
            "parameters": {"type": "object", "properties": {}},
        },
    }
]
ANT_TOOLS = [
    {
        "name": "get_user_country",
        "description": "The user's country",
        "input_schema": {"type": "object", "properties": {}},
    }
]


def case(name):
    return {"x-steer-tag-case": name}


def emit(name, **fields):
    print(json.dumps({"case": name, **fields}), flush=True)


def raw(name, http_response, body):
    headers = {k.lower(): v for k, v in http_response.headers.items()}
    emit(name, status=http_response.status_code, body_hex=body.hex(), headers=headers)


def error(name, exc):
    emit(
        name,
        error=type(exc).__name__,
        status=exc.status_code,
        body_hex=exc.response.content.hex(),
        request_id=exc.response.headers.get("x-steer-request-id"),
    )


# --- OpenAI -----------------------------------------------------------------

r = oai.chat.completions.with_raw_response.create(
    model="gpt-4o", messages=MESSAGES, user="alice", extra_headers=case("oai_chat")
)
c = r.parse()
raw("oai_chat_raw", r.http_response, r.http_response.content)
emit(
    "oai_chat",
    content=c.choices[0].message.content,
    finish_reason=c.choices[0].finish_reason,
    model=c.model,
    prompt_tokens=c.usage.prompt_tokens,
    completion_tokens=c.usage.completion_tokens,
)

c = oai.chat.completions.create(
    model="gpt-4o", messages=MESSAGES, tools=OAI_TOOLS, extra_headers=case("oai_tools")
)
emit(
    "oai_tools",
    tool_names=[t.function.name for t in c.choices[0].message.tool_calls or []],
    finish_reason=c.choices[0].finish_reason,
)

text, chunks, usage_chunks = "", 0, 0
for chunk in oai.chat.completions.create(
    model="gpt-4o-mini", messages=MESSAGES, stream=True, user="bob", extra_headers=case("oai_stream")
):
    chunks += 1
    if chunk.usage is not None:
        usage_chunks += 1
    for ch in chunk.choices:
        text += ch.delta.content or ""
emit("oai_stream", text=text, chunks=chunks, usage_chunks=usage_chunks)

with oai.chat.completions.with_streaming_response.create(
    model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=case("oai_stream_raw")
) as r:
    body = b"".join(r.iter_bytes())
    raw("oai_stream_raw", r.http_response, body)

usage = None
for chunk in oai.chat.completions.create(
    model="gpt-4o-mini",
    messages=MESSAGES,
    stream=True,
    stream_options={"include_usage": True},
    extra_headers=case("oai_stream_usage"),
):
    if chunk.usage is not None:
        usage = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens]
emit("oai_stream_usage", usage=usage)

names = []
for chunk in oai.chat.completions.create(
    model="gpt-4o-mini",
    messages=MESSAGES,
    tools=OAI_TOOLS,
    stream=True,
    extra_headers=case("oai_stream_tools"),
):
    for ch in chunk.choices:
        for tc in ch.delta.tool_calls or []:
            if tc.function and tc.function.name:
                names.append(tc.function.name)
emit("oai_stream_tools", tool_names=names)

r = oai.embeddings.with_raw_response.create(
    model="text-embedding-3-small", input=["hello", "world"], extra_headers=case("oai_embeddings")
)
e = r.parse()
raw("oai_embeddings_raw", r.http_response, r.http_response.content)
emit("oai_embeddings", vectors=len(e.data), prompt_tokens=e.usage.prompt_tokens)

try:
    oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers={**case("oai_429"), "x-fake-scenario": "rate_limit"},
    )
    emit("oai_429", error=None)
except openai.APIStatusError as exc:
    error("oai_429", exc)

try:
    oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers={**case("oai_401"), "x-fake-scenario": "auth"},
    )
    emit("oai_401", error=None)
except openai.APIStatusError as exc:
    error("oai_401", exc)

# --- Anthropic --------------------------------------------------------------

r = ant.messages.with_raw_response.create(
    model="claude-sonnet-4-5",
    max_tokens=100,
    messages=MESSAGES,
    metadata={"user_id": "carol"},
    extra_headers=case("ant_msg"),
)
m = r.parse()
raw("ant_msg_raw", r.http_response, r.http_response.content)
emit(
    "ant_msg",
    model=m.model,
    stop_reason=m.stop_reason,
    input_tokens=m.usage.input_tokens,
    cache_read=m.usage.cache_read_input_tokens,
    cache_write=m.usage.cache_creation_input_tokens,
)

m = ant.messages.create(
    model="claude-sonnet-4-5",
    max_tokens=100,
    messages=MESSAGES,
    tools=ANT_TOOLS,
    extra_headers=case("ant_tools"),
)
emit("ant_tools", tool_names=[b.name for b in m.content if b.type == "tool_use"], stop_reason=m.stop_reason)

with ant.messages.stream(
    model="claude-sonnet-4-5", max_tokens=1000, messages=MESSAGES, extra_headers=case("ant_stream")
) as s:
    for _ in s:
        pass
    final = s.get_final_message()
emit(
    "ant_stream",
    stop_reason=final.stop_reason,
    output_tokens=final.usage.output_tokens,
    blocks=[b.type for b in final.content],
)

with ant.messages.with_streaming_response.create(
    model="claude-sonnet-4-5",
    max_tokens=1000,
    messages=MESSAGES,
    stream=True,
    extra_headers=case("ant_stream_raw"),
) as r:
    body = b"".join(r.iter_bytes())
    raw("ant_stream_raw", r.http_response, body)

with ant.messages.stream(
    model="claude-sonnet-4-5",
    max_tokens=1000,
    messages=MESSAGES,
    tools=ANT_TOOLS,
    extra_headers=case("ant_stream_tools"),
) as s:
    final = s.get_final_message()
emit("ant_stream_tools", tool_names=[b.name for b in final.content if b.type == "tool_use"])

try:
    ant.messages.create(
        model="claude-haiku-4-5",
        max_tokens=10,
        messages=MESSAGES,
        extra_headers={**case("ant_429"), "x-fake-scenario": "rate_limit"},
    )
    emit("ant_429", error=None)
except anthropic.APIStatusError as exc:
    error("ant_429", exc)

try:
    ant.messages.create(
        model="claude-haiku-4-5",
        max_tokens=10,
        messages=MESSAGES,
        extra_headers={**case("ant_401"), "x-fake-scenario": "auth"},
    )
    emit("ant_401", error=None)
except anthropic.APIStatusError as exc:
    error("ant_401", exc)
