#!/usr/bin/env python3
"""A test-side protocol shim in front of moto's CloudWatch emulator.

The current AWS SDKs talk to CloudWatch with the Smithy rpcv2Cbor protocol
(POST /service/GraniteServiceVersion20100801/operation/<Op>, CBOR body,
possibly gzip-compressed). moto only speaks awsJson1_0 / awsQuery. This shim
decodes the CBOR request, forwards it to moto as awsJson1_0
(X-Amz-Target: GraniteServiceVersion20100801.<Op>) and encodes moto's JSON
reply back as CBOR, errors included. The botocore service model tells which
reply members are timestamps (CBOR tag 1, epoch seconds), blobs or numbers.

Test controls (per namespace, so tests running in parallel do not interfere):

  GET  /_shim/health                      -> 200 "ok"
  POST /_shim/faults  {"namespace": NS, "throttle": N, "server_error": N,
                       "reject_dimension_value": "V", "name_member": true,
                       "after": K}
       the next N PutMetricData calls for NS answer Throttling (400) or
       InternalServiceError (500); any call for NS carrying a dimension whose
       value is V answers InvalidParameterValue (400), like a server that
       refuses one datum and therefore the whole call; the message names
       the datum (MetricData.member.N...) unless name_member is false.
       With "after": K, the first K calls pass untouched.
  GET  /_shim/stats?namespace=NS          -> JSON counters of PutMetricData
       calls for NS: attempts, accepted, datums (accepted), max_datums,
       max_body_bytes (uncompressed CBOR), gzip_calls, values (accepted
       Values entries).

Usage: moto_cbor_shim.py --listen 127.0.0.1:PORT --moto http://127.0.0.1:PORT
Needs cbor2 and botocore (both in the test venv).
"""

import argparse
import base64
import datetime
import gzip
import json
import os
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cbor2

TARGET_PREFIX = "GraniteServiceVersion20100801"
PATH_PREFIX = "/service/%s/operation/" % TARGET_PREFIX


def load_model():
    # botocore ships its models compressed; its loader reads either form.
    import botocore.loaders

    return botocore.loaders.Loader().load_service_model("cloudwatch", "service-2")


MODEL = load_model()
SHAPES = MODEL["shapes"]
# Error shape name -> query-compatible code (e.g. InvalidParameterValueException -> InvalidParameterValue).
ERROR_CODES = {
    name: shape.get("error", {}).get("code", name)
    for name, shape in SHAPES.items()
    if shape.get("exception")
}


def to_json_value(v):
    """CBOR-decoded request value -> JSON-able value (awsJson1_0 conventions)."""
    if isinstance(v, dict):
        return {k: to_json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_json_value(x) for x in v]
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return v.timestamp()
    if isinstance(v, cbor2.CBORTag) and v.tag == 1:
        return float(v.value)
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode()
    return v


def to_cbor_value(shape_name, v):
    """moto's JSON reply value -> CBOR-ready value, driven by the service model."""
    if v is None:
        return None
    shape = SHAPES.get(shape_name, {})
    t = shape.get("type")
    if t == "structure":
        if not isinstance(v, dict):
            return v
        members = shape.get("members", {})
        out = {}
        for k, x in v.items():
            m = members.get(k)
            out[k] = to_cbor_value(m["shape"], x) if m else x
        return out
    if t == "list":
        return [to_cbor_value(shape["member"]["shape"], x) for x in v]
    if t == "map":
        return {k: to_cbor_value(shape["value"]["shape"], x) for k, x in v.items()}
    if t == "timestamp":
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                d = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
                v = d.timestamp()
        return cbor2.CBORTag(1, float(v))
    if t == "blob":
        return base64.b64decode(v) if isinstance(v, str) else v
    if t in ("double", "float"):
        return float(v)
    if t in ("integer", "long"):
        return int(v)
    return v


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_ns = {}
        self.stats = {}

    def set(self, spec):
        ns = spec.get("namespace", "")
        with self.lock:
            f = self.by_ns.setdefault(
                ns, {"throttle": 0, "server_error": 0, "reject": None, "name_member": True, "after": 0}
            )
            if "throttle" in spec:
                f["throttle"] = int(spec["throttle"])
            if "server_error" in spec:
                f["server_error"] = int(spec["server_error"])
            if "reject_dimension_value" in spec:
                f["reject"] = spec["reject_dimension_value"]
            if "after" in spec:
                f["after"] = int(spec["after"])
            if "name_member" in spec:
                f["name_member"] = bool(spec["name_member"])

    def take(self, ns, datums):
        """The fault to answer with, if any: (status, code, message)."""
        with self.lock:
            f = self.by_ns.get(ns)
            if not f:
                return None
            if f["after"] > 0:
                f["after"] -= 1
                return None
            if f["throttle"] > 0:
                f["throttle"] -= 1
                return (400, "Throttling", "Rate exceeded")
            if f["server_error"] > 0:
                f["server_error"] -= 1
                return (500, "InternalServiceError", "Internal service error (injected)")
            bad = f["reject"]
            name_member = f["name_member"]
        if bad is not None:
            for i, d in enumerate(datums, 1):
                for j, dim in enumerate(d.get("Dimensions") or [], 1):
                    if dim.get("Value") == bad:
                        if not name_member:
                            return (400, "InvalidParameterValue", "A dimension value is invalid.")
                        return (
                            400,
                            "InvalidParameterValue",
                            "The value %s for parameter MetricData.member.%d.Dimensions.member.%d.Value is invalid."
                            % (bad, i, j),
                        )
        return None

    def count(self, ns, datums, body_len, gz, accepted):
        with self.lock:
            s = self.stats.setdefault(
                ns,
                {
                    "attempts": 0,
                    "accepted": 0,
                    "datums": 0,
                    "values": 0,
                    "max_datums": 0,
                    "max_body_bytes": 0,
                    "gzip_calls": 0,
                },
            )
            s["attempts"] += 1
            s["max_datums"] = max(s["max_datums"], len(datums))
            s["max_body_bytes"] = max(s["max_body_bytes"], body_len)
            s["gzip_calls"] += 1 if gz else 0
            if accepted:
                s["accepted"] += 1
                s["datums"] += len(datums)
                s["values"] += sum(len(d.get("Values") or []) for d in datums)

    def get_stats(self, ns):
        with self.lock:
            return dict(self.stats.get(ns, {}))


FAULTS = Faults()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    moto = ""

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, status, body, headers):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status, obj):
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/_shim/health":
            self._send(200, b"ok", {"Content-Type": "text/plain"})
        elif url.path == "/_shim/stats":
            ns = urllib.parse.parse_qs(url.query).get("namespace", [""])[0]
            self._json(200, FAULTS.get_stats(ns))
        else:
            self._json(404, {"message": "not found"})

    def _cbor_error(self, status, code, message):
        fault = "Receiver" if status >= 500 else "Sender"
        body = cbor2.dumps({"__type": "com.amazonaws.cloudwatch#" + code, "message": message})
        self._send(
            status,
            body,
            {
                "Content-Type": "application/cbor",
                "smithy-protocol": "rpc-v2-cbor",
                "x-amzn-query-error": "%s;%s" % (code, fault),
            },
        )

    def do_POST(self):
        if self.path == "/_shim/faults":
            try:
                FAULTS.set(json.loads(self._read_body() or b"{}"))
            except (ValueError, TypeError) as e:
                self._json(400, {"message": str(e)})
                return
            self._json(200, {"ok": True})
            return
        if not self.path.startswith(PATH_PREFIX):
            self._json(404, {"message": "unknown path %s" % self.path})
            return
        op = self.path[len(PATH_PREFIX):].split("?")[0]
        raw = self._read_body()
        gz = "gzip" in (self.headers.get("Content-Encoding") or "").lower()
        try:
            body = gzip.decompress(raw) if gz else raw
            req = cbor2.loads(body) if body else {}
        except Exception as e:  # noqa: BLE001 - any decode failure is the client's
            self._cbor_error(400, "SerializationException", "cannot decode request: %s" % e)
            return
        req = to_json_value(req) or {}
        if op == "PutMetricData":
            ns = req.get("Namespace", "")
            datums = req.get("MetricData") or []
            fault = FAULTS.take(ns, datums)
            if fault:
                FAULTS.count(ns, datums, len(body), gz, False)
                self._cbor_error(*fault)
                return
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "%s.%s" % (TARGET_PREFIX, op),
        }
        for h in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if self.headers.get(h):
                headers[h] = self.headers[h]
        fwd = urllib.request.Request(
            self.moto + "/", data=json.dumps(req).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(fwd, timeout=60) as r:
                status, rbody, rheaders = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, rbody, rheaders = e.code, e.read(), e.headers
        except OSError as e:
            self._cbor_error(503, "ServiceUnavailable", "moto unreachable: %s" % e)
            return
        try:
            reply = json.loads(rbody) if rbody.strip() else {}
        except ValueError:
            reply = {"__type": "InternalFailure", "message": rbody[:200].decode(errors="replace")}
        if op == "PutMetricData":
            FAULTS.count(req.get("Namespace", ""), req.get("MetricData") or [], len(body), gz, status < 300)
        out_headers = {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"}
        rid = rheaders.get("x-amzn-RequestId")
        if rid:
            out_headers["x-amzn-RequestId"] = rid
        if status >= 300:
            t = str(reply.get("__type") or reply.get("code") or "InternalFailure")
            short = t.split("#")[-1].split(":")[0]
            code = ERROR_CODES.get(short, short)
            qe = rheaders.get("x-amzn-query-error")
            out_headers["x-amzn-query-error"] = qe or "%s;%s" % (code, "Receiver" if status >= 500 else "Sender")
            msg = reply.get("message") or reply.get("Message") or ""
            self._send(status, cbor2.dumps({"__type": "com.amazonaws.cloudwatch#" + short, "message": msg}), out_headers)
            return
        out_shape = MODEL["operations"].get(op, {}).get("output", {}).get("shape")
        value = to_cbor_value(out_shape, reply) if out_shape else {}
        self._send(status, cbor2.dumps(value), out_headers)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    p.add_argument("--moto", required=True, help="moto server URL")
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    Handler.moto = a.moto.rstrip("/")
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    srv.daemon_threads = True
    print("cbor shim on http://%s:%s -> %s" % (host, port, Handler.moto), file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
