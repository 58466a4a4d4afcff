"""Calls steer proxy's Bedrock Runtime routes with the official AWS SDK for
Python (boto3), its endpoint URL pointed at the proxy, and with Anthropic's
own Bedrock client (`anthropic.AnthropicBedrock`, base URL = the proxy).

    python bedrock_client.py http://127.0.0.1:PORT PROXY_KEY MODEL_ID

The client signs with its own (fake) AWS keys, as any boto3 client does;
the proxy drops that signature and signs with its own credentials. The
proxy key goes in the `x-steer-proxy-key` header, added by an event hook
(the way a boto3 user adds it). Each request also carries
`x-steer-tag-case: <name>` so its metrics record can be found by tag.

Prints one JSON object per case on stdout: what boto3 parsed, and for the
`*_raw` cases the exact bytes the client received (hex), so the Rust test
can compare them with what the fake Bedrock endpoint sent.
"""

import json
import sys

import anthropic
import boto3
import botocore.exceptions
from botocore.config import Config

ROOT, PROXY_KEY, MODEL = sys.argv[1], sys.argv[2], sys.argv[3]

client = boto3.client(
    "bedrock-runtime",
    endpoint_url=ROOT,
    region_name="us-east-1",
    aws_access_key_id="client-key",
    aws_secret_access_key="client-secret",
    config=Config(retries={"total_max_attempts": 1}),
)

state = {"case": "", "key": PROXY_KEY}


def add_steer_headers(request, **kwargs):
    """Before boto3 signs: the proxy key and the tags (never signed by the proxy's upstream)."""
    if state["key"] is not None:
        request.headers["x-steer-proxy-key"] = state["key"]
    request.headers["x-steer-tag-case"] = state["case"]
    request.headers["x-steer-tag-suite"] = "boto3"


client.meta.events.register("before-sign.bedrock-runtime.*", add_steer_headers)

raw_bodies = {}


def keep_raw_body(response_dict, **kwargs):
    """The bytes of a whole (non-streamed) answer, as the client received them."""
    if isinstance(response_dict.get("body"), bytes):
        raw_bodies[state["case"]] = (response_dict["body"], dict(response_dict["headers"]))


client.meta.events.register("before-parse.bedrock-runtime.Converse", keep_raw_body)

MESSAGES = [{"role": "user", "content": [{"text": "What is the capital of the UK?"}]}]


def emit(name, **fields):
    print(json.dumps({"case": name, **fields}), flush=True)


def run(name, fn):
    state["case"] = name
    try:
        fn(name)
    except botocore.exceptions.ClientError as e:
        emit(
            name,
            error=e.response["Error"]["Code"],
            message=e.response["Error"].get("Message", ""),
            status=e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
        )


def converse(name):
    r = client.converse(modelId=MODEL, messages=MESSAGES, inferenceConfig={"maxTokens": 64})
    body, headers = raw_bodies[name]
    blocks = r["output"]["message"]["content"]
    emit(
        name,
        body_hex=body.hex(),
        headers={k.lower(): v for k, v in headers.items()},
        stop_reason=r["stopReason"],
        usage=r["usage"],
        text="".join(b.get("text", "") for b in blocks),
        tool_names=[b["toolUse"]["name"] for b in blocks if "toolUse" in b],
    )


def converse_stream(name):
    r = client.converse_stream(modelId=MODEL, messages=MESSAGES)
    text, stop, usage, kinds = "", None, None, []
    for ev in r["stream"]:
        kind = next(iter(ev))
        kinds.append(kind)
        if kind == "contentBlockDelta":
            text += ev[kind]["delta"].get("text", "")
        elif kind == "messageStop":
            stop = ev[kind]["stopReason"]
        elif kind == "metadata":
            usage = ev[kind]["usage"]
    emit(name, text=text, stop_reason=stop, usage=usage, kinds=kinds)


def converse_stream_raw(name):
    r = client.converse_stream(modelId=MODEL, messages=MESSAGES)
    # The event-stream bytes as they came off the connection, before boto3 decodes them.
    raw = b"".join(r["stream"]._raw_stream.stream())
    headers = r["ResponseMetadata"]["HTTPHeaders"]
    emit(name, body_hex=raw.hex(), headers=headers)


ANTHROPIC_BODY = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the capital of the UK?"}]}],
}


def invoke_stream(name):
    """InvokeModelWithResponseStream: chunks carrying Anthropic's own events."""
    r = client.invoke_model_with_response_stream(modelId=MODEL, body=json.dumps(ANTHROPIC_BODY))
    types, text = [], ""
    for ev in r["body"]:
        inner = json.loads(ev["chunk"]["bytes"])
        types.append(inner["type"])
        if inner["type"] == "content_block_delta":
            text += inner["delta"].get("text", "")
    emit(name, types=types, text=text)


def anthropic_bedrock_client(name):
    return anthropic.AnthropicBedrock(
        base_url=ROOT,
        aws_region="us-east-1",
        aws_access_key="client-key",
        aws_secret_key="client-secret",
        max_retries=0,
        default_headers={
            "x-steer-proxy-key": PROXY_KEY,
            "x-steer-tag-case": name,
            "x-steer-tag-suite": "boto3",
        },
    )


def anthropic_bedrock_create(name):
    """Anthropic's Bedrock client, not streaming (invoke)."""
    m = anthropic_bedrock_client(name).messages.create(
        model=MODEL, max_tokens=64, messages=ANTHROPIC_BODY["messages"]
    )
    emit(
        name,
        text="".join(b.text for b in m.content if b.type == "text"),
        tool_names=[b.name for b in m.content if b.type == "tool_use"],
        stop_reason=m.stop_reason,
        cache_read=m.usage.cache_read_input_tokens,
    )


def anthropic_bedrock_stream(name):
    """Anthropic's Bedrock client, streaming (invoke-with-response-stream)."""
    with anthropic_bedrock_client(name).messages.stream(
        model=MODEL, max_tokens=64, messages=ANTHROPIC_BODY["messages"]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    emit(
        name,
        text=text,
        stop_reason=final.stop_reason,
        input_tokens=final.usage.input_tokens,
        output_tokens=final.usage.output_tokens,
    )


def without_key(name):
    state["key"] = None
    try:
        client.converse(modelId=MODEL, messages=MESSAGES)
    finally:
        state["key"] = PROXY_KEY


run("converse", converse)
run("converse_stream", converse_stream)
run("converse_stream_raw", converse_stream_raw)
run("throttled", lambda name: client.converse(modelId=MODEL, messages=MESSAGES))
run("stream_throttled", converse_stream)
run("no_proxy_key", without_key)
run("invoke_stream", invoke_stream)
run("anthropic_bedrock_stream", anthropic_bedrock_stream)
run("anthropic_bedrock_create", anthropic_bedrock_create)
