//! Helpers for tests against the real InfluxDB started by
//! `scripts/services/influxdb.sh` (`STEER_TEST_INFLUXDB_URL`).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

pub const ENV: &str = "STEER_TEST_INFLUXDB_URL";

/// The server URL, or `None` (after a loud SKIPPED line) when it is not
/// configured and services are not required.
pub fn server_url() -> Option<String> {
    match std::env::var(ENV) {
        Ok(u) if !u.is_empty() => Some(u.trim_end_matches('/').to_string()),
        _ => {
            if std::env::var_os("STEER_REQUIRE_SERVICES").is_some() || std::env::var_os("CI").is_some() {
                panic!(
                    "{ENV} is not set but services are required: run scripts/test.sh (it starts InfluxDB)"
                );
            }
            // Straight to the process's stderr: the test harness captures eprintln!.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: set {ENV} (scripts/services/influxdb.sh starts a server) to run InfluxDB tests"
            );
            None
        }
    }
}

/// A real server and a fresh, uniquely named database on it.
pub struct Db {
    pub url: String,
    pub name: String,
    http: reqwest::Client,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Db {
    pub async fn create(url: &str, label: &str) -> Db {
        let name = format!(
            "steer_{label}_{}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            fastrand_suffix()
        );
        let db = Db {
            url: url.to_string(),
            name,
            http: reqwest::Client::new(),
        };
        db.query_raw(None, &format!("CREATE DATABASE \"{}\"", db.name))
            .await;
        db
    }

    pub async fn query_raw(&self, db: Option<&str>, q: &str) -> Value {
        let mut params = vec![("q", q.to_string()), ("epoch", "ns".to_string())];
        if let Some(db) = db {
            params.push(("db", db.to_string()));
        }
        let resp = self
            .http
            .post(format!("{}/query", self.url))
            .form(&params)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "query {q} -> {}", resp.status());
        let v: Value = resp.json().await.unwrap();
        if let Some(e) = v["results"][0].get("error") {
            panic!("query {q} failed: {e}");
        }
        v
    }

    /// Every point of `measurement`, as column -> value maps.
    pub async fn points(&self, measurement: &str) -> Vec<BTreeMap<String, Value>> {
        self.select(&format!("SELECT * FROM {}", quote_ident(measurement)))
            .await
    }

    /// Every point of every measurement (without naming one: InfluxQL
    /// cannot quote every name the line protocol can write).
    pub async fn all_points(&self) -> Vec<BTreeMap<String, Value>> {
        self.select("SELECT * FROM /.*/").await
    }

    /// The measurements of the database.
    pub async fn measurements(&self) -> Vec<String> {
        let v = self.query_raw(Some(&self.name), "SHOW MEASUREMENTS").await;
        v["results"][0]["series"][0]["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect()
    }

    async fn select(&self, q: &str) -> Vec<BTreeMap<String, Value>> {
        let v = self.query_raw(Some(&self.name), q).await;
        let mut out = Vec::new();
        let Some(series) = v["results"][0]["series"].as_array() else {
            return out;
        };
        for s in series {
            let cols: Vec<String> = s["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            for row in s["values"].as_array().unwrap() {
                let mut m = BTreeMap::new();
                for (c, v) in cols.iter().zip(row.as_array().unwrap()) {
                    if !v.is_null() {
                        m.insert(c.clone(), v.clone());
                    }
                }
                out.push(m);
            }
        }
        out
    }

    /// POST raw line protocol; returns the status.
    pub async fn write_raw(&self, body: &str) -> u16 {
        self.http
            .post(format!("{}/write?db={}", self.url, self.name))
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Points the server stored for this database (sum over its shards),
    /// and points it dropped: counts every point ever sent, resends included.
    pub async fn shard_points(&self) -> (u64, u64) {
        let v = self.query_raw(None, "SHOW STATS FOR 'shard'").await;
        let mut ok = 0;
        let mut dropped = 0;
        for s in v["results"][0]["series"].as_array().into_iter().flatten() {
            if s["tags"]["database"].as_str() != Some(self.name.as_str()) {
                continue;
            }
            let cols: Vec<&str> = s["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            let row = s["values"][0].as_array().unwrap();
            for (c, v) in cols.iter().zip(row) {
                match *c {
                    "writePointsOk" => ok += v.as_u64().unwrap(),
                    "writePointsDropped" => dropped += v.as_u64().unwrap(),
                    _ => {}
                }
            }
        }
        (ok, dropped)
    }

    pub async fn drop(self) {
        self.query_raw(None, &format!("DROP DATABASE \"{}\"", self.name))
            .await;
    }
}

/// An InfluxQL double-quoted identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn fastrand_suffix() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos() % 100_000
}
