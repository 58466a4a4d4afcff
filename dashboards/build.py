#!/usr/bin/env python3
"""Write the Grafana dashboards in this folder (one per backend), with the
panels of `steer dashboard`:

  calls per step by model · errors per step by error class ·
  latency p50/p95/p99 · latency p95 by model · TTFT p50/p95 ·
  tokens in/out/cached/reasoning · cost per step by model ·
  a table of the top models by cost, calls, error rate and p95.

    python3 dashboards/build.py        # rewrites dashboards/*.json

Each file is importable as-is (Dashboards → New → Import): Grafana asks for
the data source (the `__inputs` entry). The queries are checked against the
real backends, filled by `steer demo --sink ...`, by
crates/steer-dashboard/tests/grafana.rs.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

PANELS = [
    # id, title, unit, kind
    ("calls", "Calls by model", "short", "timeseries"),
    ("errors", "Errors by class", "short", "timeseries"),
    ("latency", "Latency, all calls", "ms", "timeseries"),
    ("latency_by", "Latency p95 by model", "ms", "timeseries"),
    ("ttft", "Time to first token (streamed calls)", "ms", "timeseries"),
    ("tokens", "Tokens", "short", "timeseries"),
    ("cost", "Cost by model", "currencyUSD", "timeseries"),
    ("top", "Top models", "short", "table"),
]

# ---------------------------------------------------------------- PostgreSQL

PG = "public.llm_metrics"


def pg_ts(select, where="", group="", extra_group=""):
    return (
        f"SELECT $__timeGroupAlias(\"timestamp\", $__interval, 0), {select}\n"
        f"FROM {PG}\nWHERE $__timeFilter(\"timestamp\"){where}\n"
        f"GROUP BY 1{extra_group}\nORDER BY 1"
    )


POSTGRES = {
    "calls": [("A", pg_ts("model AS metric, count(*) AS value", extra_group=", 2"), "time_series")],
    "errors": [("A", pg_ts("error_class AS metric, count(*) AS value", " AND error_class IS NOT NULL", extra_group=", 2"), "time_series")],
    "latency": [("A", pg_ts(
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,\n"
        "       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95,\n"
        "       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99"), "time_series")],
    "latency_by": [("A", pg_ts("model AS metric, percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS value", extra_group=", 2"), "time_series")],
    "ttft": [("A", pg_ts(
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_ms) AS p50,\n"
        "       percentile_cont(0.95) WITHIN GROUP (ORDER BY ttft_ms) AS p95", " AND ttft_ms IS NOT NULL"), "time_series")],
    "tokens": [("A", pg_ts(
        "sum(input_tokens) AS input, sum(output_tokens) AS output, sum(cached_tokens) AS cached,\n"
        "       coalesce(sum(reasoning_tokens), 0) AS reasoning"), "time_series")],
    "cost": [("A", pg_ts("model AS metric, sum(cost_usd)::float8 AS value", " AND cost_usd IS NOT NULL", extra_group=", 2"), "time_series")],
    "top": [("A",
             "SELECT model,\n"
             "       count(*) AS calls,\n"
             "       count(error_class) AS errors,\n"
             "       round(100.0 * count(error_class) / count(*), 1) AS \"error %\",\n"
             "       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS \"p95 ms\",\n"
             "       percentile_cont(0.95) WITHIN GROUP (ORDER BY ttft_ms) AS \"TTFT p95 ms\",\n"
             "       sum(retries) AS retries,\n"
             "       coalesce(sum(cost_usd), 0)::float8 AS \"cost USD\"\n"
             f"FROM {PG}\nWHERE $__timeFilter(\"timestamp\")\n"
             "GROUP BY model\nORDER BY \"cost USD\" DESC\nLIMIT 20", "table")],
}

# ---------------------------------------------------------------- InfluxDB 1.x (InfluxQL)

M = '"llm_request"'
INFLUX = {
    "calls": [("A", f'SELECT count("latency_ms") FROM {M} WHERE $timeFilter GROUP BY time($__interval), "model" fill(none)', "time_series", "$tag_model")],
    "errors": [("A", f'SELECT count("latency_ms") FROM {M} WHERE "status" = \'error\' AND $timeFilter GROUP BY time($__interval), "error_class" fill(none)', "time_series", "$tag_error_class")],
    "latency": [("A", f'SELECT percentile("latency_ms", 50) AS "p50", percentile("latency_ms", 95) AS "p95", percentile("latency_ms", 99) AS "p99" FROM {M} WHERE $timeFilter GROUP BY time($__interval) fill(none)', "time_series", "")],
    "latency_by": [("A", f'SELECT percentile("latency_ms", 95) FROM {M} WHERE $timeFilter GROUP BY time($__interval), "model" fill(none)', "time_series", "$tag_model")],
    "ttft": [("A", f'SELECT percentile("ttft_ms", 50) AS "p50", percentile("ttft_ms", 95) AS "p95" FROM {M} WHERE $timeFilter GROUP BY time($__interval) fill(none)', "time_series", "")],
    "tokens": [("A", f'SELECT sum("input_tokens") AS "input", sum("output_tokens") AS "output", sum("cached_tokens") AS "cached", sum("reasoning_tokens") AS "reasoning" FROM {M} WHERE $timeFilter GROUP BY time($__interval) fill(none)', "time_series", "")],
    "cost": [("A", f'SELECT sum("cost_usd") FROM {M} WHERE $timeFilter GROUP BY time($__interval), "model" fill(none)', "time_series", "$tag_model")],
    "top": [
        ("A", f'SELECT count("latency_ms") AS "calls", percentile("latency_ms", 95) AS "p95 ms", percentile("ttft_ms", 95) AS "TTFT p95 ms", sum("retries") AS "retries", sum("cost_usd") AS "cost USD" FROM {M} WHERE $timeFilter GROUP BY "model"', "table", ""),
        ("B", f'SELECT count("latency_ms") AS "errors" FROM {M} WHERE "status" = \'error\' AND $timeFilter GROUP BY "model"', "table", ""),
    ],
}

# ---------------------------------------------------------------- Prometheus

R = "$__rate_interval"
PROM = {
    "calls": [("A", f"sum by (gen_ai_request_model) (increase(steer_llm_requests_total[{R}]))", "{{gen_ai_request_model}}", False)],
    "errors": [("A", f"sum by (error_type) (increase(steer_llm_errors_total[{R}]))", "{{error_type}}", False)],
    "latency": [
        ("A", f"1000 * histogram_quantile(0.5, sum by (le) (rate(gen_ai_client_operation_duration_seconds_bucket[{R}])))", "p50", False),
        ("B", f"1000 * histogram_quantile(0.95, sum by (le) (rate(gen_ai_client_operation_duration_seconds_bucket[{R}])))", "p95", False),
        ("C", f"1000 * histogram_quantile(0.99, sum by (le) (rate(gen_ai_client_operation_duration_seconds_bucket[{R}])))", "p99", False),
    ],
    "latency_by": [("A", f"1000 * histogram_quantile(0.95, sum by (le, gen_ai_request_model) (rate(gen_ai_client_operation_duration_seconds_bucket[{R}])))", "{{gen_ai_request_model}}", False)],
    "ttft": [
        ("A", f"1000 * histogram_quantile(0.5, sum by (le) (rate(gen_ai_client_operation_time_to_first_chunk_seconds_bucket[{R}])))", "p50", False),
        ("B", f"1000 * histogram_quantile(0.95, sum by (le) (rate(gen_ai_client_operation_time_to_first_chunk_seconds_bucket[{R}])))", "p95", False),
    ],
    # The GenAI conventions define only input/output token types; cached and
    # reasoning tokens are not exported to Prometheus (see docs/backends/otlp.md).
    "tokens": [("A", f"sum by (gen_ai_token_type) (increase(gen_ai_client_token_usage_sum[{R}]))", "{{gen_ai_token_type}}", False)],
    "cost": [("A", f"sum by (gen_ai_request_model) (increase(steer_llm_cost_usd_total[{R}]))", "{{gen_ai_request_model}}", False)],
    "top": [
        ("A", "sum by (gen_ai_request_model) (increase(steer_llm_requests_total[$__range]))", "calls", True),
        ("B", "sum by (gen_ai_request_model) (increase(steer_llm_errors_total[$__range]))", "errors", True),
        ("C", "1000 * histogram_quantile(0.95, sum by (le, gen_ai_request_model) (increase(gen_ai_client_operation_duration_seconds_bucket[$__range])))", "p95 ms", True),
        ("D", "sum by (gen_ai_request_model) (increase(steer_llm_cost_usd_total[$__range]))", "cost USD", True),
    ],
}


def panel(i, pid, title, unit, kind, ds, targets):
    x = (i % 2) * 12
    y = (i // 2) * 8
    p = {
        "id": i + 1,
        "title": title,
        "type": kind,
        "datasource": ds,
        "gridPos": {"h": 8, "w": 12 if kind != "table" else 24, "x": x if kind != "table" else 0, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "description": f"steer-dashboard panel `{pid}`",
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"lineWidth": 2, "fillOpacity": 0, "spanNulls": False, "axisLabel": {
            "ms": "ms", "short": "per step", "currencyUSD": "USD per step"}[unit]}
        p["options"] = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["sum", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    else:
        p["options"] = {"showHeader": True, "sortBy": [{"displayName": "cost USD", "desc": True}]}
        p["transformations"] = [{"id": "merge", "options": {}}]
    return p


def dashboard(uid, title, ds_input, ds_type, ds_name, make_targets, tags):
    ds = {"type": ds_type, "uid": "${" + ds_input + "}"}
    panels = [panel(i, pid, t, u, k, ds, make_targets(pid, ds)) for i, (pid, t, u, k) in enumerate(PANELS)]
    return {
        "__inputs": [{"name": ds_input, "label": ds_name, "description": f"the {ds_name} data source steer writes to",
                      "type": "datasource", "pluginId": ds_type, "pluginName": ds_name}],
        "__requires": [{"type": "datasource", "id": ds_type, "name": ds_name, "version": "1.0.0"},
                       {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"}],
        "uid": uid,
        "title": title,
        "tags": ["steer", "llm"] + tags,
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }


def pg_targets(pid, ds):
    return [{"refId": r, "datasource": ds, "rawQuery": True, "editorMode": "code", "rawSql": sql, "format": fmt}
            for r, sql, fmt in POSTGRES[pid]]


def influx_targets(pid, ds):
    return [{"refId": r, "datasource": ds, "rawQuery": True, "query": q, "resultFormat": fmt, "alias": alias}
            for r, q, fmt, alias in INFLUX[pid]]


def prom_targets(pid, ds):
    return [{"refId": r, "datasource": ds, "expr": e, "legendFormat": legend, "range": not instant,
             "instant": instant, **({"format": "table"} if instant else {})}
            for r, e, legend, instant in PROM[pid]]


def main():
    out = {
        "steer-postgres.json": dashboard("steer-postgres", "steer — LLM calls (PostgreSQL)", "DS_POSTGRES",
                                         "grafana-postgresql-datasource", "PostgreSQL", pg_targets, ["postgres"]),
        "steer-influxdb.json": dashboard("steer-influxdb", "steer — LLM calls (InfluxDB)", "DS_INFLUXDB",
                                         "influxdb", "InfluxDB", influx_targets, ["influxdb"]),
        "steer-prometheus.json": dashboard("steer-prometheus", "steer — LLM calls (Prometheus)", "DS_PROMETHEUS",
                                           "prometheus", "Prometheus", prom_targets, ["prometheus"]),
    }
    for name, d in out.items():
        with open(os.path.join(HERE, name), "w") as f:
            json.dump(d, f, indent=2, ensure_ascii=False)
            f.write("\n")
        print("wrote", os.path.join("dashboards", name))


if __name__ == "__main__":
    main()
