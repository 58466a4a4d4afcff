"""Calls steer proxy's Azure OpenAI paths with the official `openai` SDK's
`AzureOpenAI` client.

    python azure_client.py http://127.0.0.1:PORT

`azure_endpoint` is the proxy; the deployments are `my-gpt4o` (chat) and
`my-emb` (embeddings). Prints one JSON object per case on stdout, like
sdk_client.py: what the SDK parsed and, for the `*_raw` cases, the exact
bytes and headers received (hex). Each request carries
`x-steer-tag-case: <name>`.
"""

import json
import sys

import openai

ROOT = sys.argv[1].rstrip("/")
AZURE_KEY = "azure-test-client-key-0123456789"

az = openai.AzureOpenAI(
    azure_endpoint=ROOT,
    api_key=AZURE_KEY,
    api_version="2024-10-21",
    max_retries=0,
    default_headers={"x-steer-tag-suite": "azure"},
)

DEPLOYMENT = "my-gpt4o"
MESSAGES = [{"role": "user", "content": "What are the secrets?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "secret_retrieval_tool",
            "description": "A secret for a password",
            "parameters": {
                "type": "object",
                "properties": {"password": {"type": "string"}},
                "required": ["password"],
            },
        },
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
        code=getattr(exc, "code", None),
        body_hex=exc.response.content.hex(),
        retry_after=exc.response.headers.get("retry-after"),
    )


r = az.chat.completions.with_raw_response.create(
    model=DEPLOYMENT, messages=MESSAGES, user="alice", extra_headers=case("az_chat")
)
c = r.parse()
raw("az_chat_raw", r.http_response, r.http_response.content)
emit(
    "az_chat",
    content=c.choices[0].message.content,
    finish_reason=c.choices[0].finish_reason,
    model=c.model,
    prompt_tokens=c.usage.prompt_tokens,
    completion_tokens=c.usage.completion_tokens,
)

c = az.chat.completions.create(
    model=DEPLOYMENT, messages=MESSAGES, tools=TOOLS, extra_headers=case("az_tools")
)
emit(
    "az_tools",
    tool_names=[t.function.name for t in c.choices[0].message.tool_calls or []],
    finish_reason=c.choices[0].finish_reason,
)

text, chunks, usage_chunks = "", 0, 0
for chunk in az.chat.completions.create(
    model=DEPLOYMENT, messages=MESSAGES, stream=True, user="bob", extra_headers=case("az_stream")
):
    chunks += 1
    if chunk.usage is not None:
        usage_chunks += 1
    for ch in chunk.choices:
        if ch.delta is not None:
            text += ch.delta.content or ""
emit("az_stream", text=text, chunks=chunks, usage_chunks=usage_chunks)

with az.chat.completions.with_streaming_response.create(
    model=DEPLOYMENT, messages=MESSAGES, stream=True, extra_headers=case("az_stream_raw")
) as r:
    body = b"".join(r.iter_bytes())
    raw("az_stream_raw", r.http_response, body)

usage = None
for chunk in az.chat.completions.create(
    model=DEPLOYMENT,
    messages=MESSAGES,
    stream=True,
    stream_options={"include_usage": True},
    extra_headers=case("az_stream_usage"),
):
    if chunk.usage is not None:
        usage = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens]
emit("az_stream_usage", usage=usage)

names = []
for chunk in az.chat.completions.create(
    model=DEPLOYMENT,
    messages=MESSAGES,
    tools=TOOLS,
    stream=True,
    extra_headers=case("az_stream_tools"),
):
    for ch in chunk.choices:
        for tc in (ch.delta.tool_calls if ch.delta else None) or []:
            if tc.function and tc.function.name:
                names.append(tc.function.name)
emit("az_stream_tools", tool_names=names)

r = az.embeddings.with_raw_response.create(
    model="my-emb", input=["hello", "world"], extra_headers=case("az_embeddings")
)
e = r.parse()
raw("az_embeddings_raw", r.http_response, r.http_response.content)
emit("az_embeddings", vectors=len(e.data), prompt_tokens=e.usage.prompt_tokens)

for name, scenario in [("az_429", "rate_limit"), ("az_401", "auth"), ("az_filtered", "content_filter")]:
    try:
        az.chat.completions.create(
            model=DEPLOYMENT,
            messages=MESSAGES,
            extra_headers={**case(name), "x-fake-scenario": scenario},
        )
        emit(name, error=None)
    except openai.APIStatusError as exc:
        error(name, exc)
