"""Calls steer proxy's Gemini native routes with the official Google Gen AI
SDK (`google-genai`).

    python genai_client.py http://127.0.0.1:PORT

`http_options.base_url` is the proxy. Prints one JSON object per case on
stdout, like sdk_client.py: what the SDK parsed and, where the SDK keeps
it, the raw answer it received. Each request carries
`x-steer-tag-case: <name>`.
"""

import base64
import json
import sys

from google import genai
from google.genai import errors, types

ROOT = sys.argv[1].rstrip("/")
GEMINI_KEY = "AIza-test-client-key-0123456789"
MODEL = "gemini-2.5-flash"

client = genai.Client(
    api_key=GEMINI_KEY,
    http_options=types.HttpOptions(
        base_url=ROOT,
        headers={"x-steer-tag-suite": "genai"},
        retry_options=types.HttpRetryOptions(attempts=1),
    ),
)

WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="weather",
            description="The weather in a city",
            parameters=types.Schema(
                type="OBJECT", properties={"city": types.Schema(type="STRING")}
            ),
        )
    ]
)


def config(name, scenario=None, **kw):
    headers = {"x-steer-tag-case": name}
    if scenario:
        headers["x-fake-scenario"] = scenario
    return types.GenerateContentConfig(
        http_options=types.HttpOptions(headers=headers), **kw
    )


def emit(name, **fields):
    print(json.dumps({"case": name, **fields}), flush=True)


def usage(u):
    if u is None:
        return None
    return {
        "prompt": u.prompt_token_count,
        "candidates": u.candidates_token_count,
        "thoughts": u.thoughts_token_count,
        "total": u.total_token_count,
    }


def as_json(resp):
    """The SDK's object in the wire's JSON shape (bytes as standard base64)."""
    obj = resp.model_dump(by_alias=True, exclude_none=True, exclude={"sdk_http_response", "automatic_function_calling_history"})
    return json.loads(json.dumps(obj, default=lambda b: base64.b64encode(b).decode()))


def http_fields(resp):
    h = resp.sdk_http_response
    if h is None:
        return {}
    out = {"headers": {k.lower(): v for k, v in (h.headers or {}).items()}}
    if h.body is not None:
        out["body"] = h.body
    return out


r = client.models.generate_content(
    model=MODEL, contents="Why is the sky blue?", config=config("gm_generate")
)
emit(
    "gm_generate",
    text=r.text,
    model_version=r.model_version,
    finish_reason=r.candidates[0].finish_reason.value,
    usage=usage(r.usage_metadata),
    json=as_json(r),
    **http_fields(r),
)

text, chunks, last = "", 0, None
for chunk in client.models.generate_content_stream(
    model=MODEL, contents="Why is the sky blue?", config=config("gm_stream")
):
    chunks += 1
    text += chunk.text or ""
    last = chunk
emit(
    "gm_stream",
    text=text,
    chunks=chunks,
    model_version=last.model_version,
    finish_reason=last.candidates[0].finish_reason.value,
    usage=usage(last.usage_metadata),
)

r = client.models.generate_content(
    model=MODEL,
    contents="Weather in Paris?",
    config=config(
        "gm_tools",
        tools=[WEATHER],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    ),
)
emit("gm_tools", tool_names=[c.name for c in r.function_calls or []], usage=usage(r.usage_metadata))

names = []
for chunk in client.models.generate_content_stream(
    model=MODEL,
    contents="Which country?",
    config=config(
        "gm_stream_tools",
        tools=[WEATHER],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    ),
):
    names += [c.name for c in chunk.function_calls or []]
emit("gm_stream_tools", tool_names=names)

for name, scenario in [("gm_429", "rate_limit"), ("gm_400", "auth")]:
    try:
        client.models.generate_content(
            model=MODEL, contents="hi", config=config(name, scenario)
        )
        emit(name, error=None)
    except errors.APIError as exc:
        emit(name, error=type(exc).__name__, code=exc.code, status=exc.status, message=exc.message)
