//! Sink specs: one string names a sink, the same on the command line, in
//! `steer.toml` and from the library (`"postgres://user@host:5432/db".parse::<SinkSpec>()`).
//!
//! Secrets never appear in a spec's `Display` (passwords are redacted) and
//! tokens/keys come from the environment (`INFLUX_TOKEN`, `DD_API_KEY`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

/// A parsed sink spec.
#[derive(Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// `sqlite:PATH`
    Sqlite(PathBuf),
    /// `jsonl:PATH`
    JsonLines(PathBuf),
    /// `log`
    Log,
    /// `postgres://...` or `postgresql://...` (the full URL)
    Postgres(String),
    /// `influxdb://HOST:PORT/DB` (v1) or `influxdb2://HOST:PORT?org=O&bucket=B` (the full URL)
    Influx(String),
    /// `cloudwatch:NAMESPACE`
    CloudWatch(String),
    /// `datadog` or `datadog:SITE_OR_URL`
    Datadog(Option<String>),
    /// `otlp:URL`
    Otlp(String),
    /// `prometheus:ADDR`
    Prometheus(String),
}

impl SinkSpec {
    /// The sink kind (`sqlite`, `postgres`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            SinkSpec::Sqlite(_) => "sqlite",
            SinkSpec::JsonLines(_) => "jsonl",
            SinkSpec::Log => "log",
            SinkSpec::Postgres(_) => "postgres",
            SinkSpec::Influx(_) => "influxdb",
            SinkSpec::CloudWatch(_) => "cloudwatch",
            SinkSpec::Datadog(_) => "datadog",
            SinkSpec::Otlp(_) => "otlp",
            SinkSpec::Prometheus(_) => "prometheus",
        }
    }
}

impl fmt::Debug for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SinkSpec({self})")
    }
}

/// Why a sink spec could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Nothing before the `:` matched a known sink.
    #[error("unknown sink `{0}`: expected one of sqlite:PATH, jsonl:PATH, log, postgres://..., influxdb://..., influxdb2://..., cloudwatch:NAMESPACE, datadog[:SITE], otlp:URL, prometheus:ADDR")]
    Unknown(String),
    /// A known sink with a missing or malformed argument.
    #[error("invalid `{kind}` sink spec: {reason}")]
    Invalid {
        /// The sink kind.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(kind: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        kind,
        reason: reason.into(),
    }
}

impl FromStr for SinkSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (kind, rest) = match s.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => (s, None),
        };
        let need = |kind: &'static str, what: &str| -> Result<String, SpecError> {
            match rest {
                Some(r) if !r.trim().is_empty() => Ok(r.trim().to_string()),
                _ => Err(invalid(kind, format!("expected `{kind}:{what}`"))),
            }
        };
        match kind.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(SinkSpec::Sqlite(PathBuf::from(need("sqlite", "PATH")?))),
            "jsonl" => Ok(SinkSpec::JsonLines(PathBuf::from(need("jsonl", "PATH")?))),
            "log" if rest.is_none() => Ok(SinkSpec::Log),
            "postgres" | "postgresql" => {
                url_with_host("postgres", s)?;
                Ok(SinkSpec::Postgres(s.to_string()))
            }
            "influxdb" => {
                let u = url_with_host("influxdb", s)?;
                if u.path().trim_matches('/').is_empty() {
                    return Err(invalid("influxdb", "expected `influxdb://HOST:PORT/DATABASE`"));
                }
                Ok(SinkSpec::Influx(s.to_string()))
            }
            "influxdb2" => {
                let u = url_with_host("influxdb2", s)?;
                let has = |k: &str| u.query_pairs().any(|(q, v)| q == k && !v.is_empty());
                if !has("org") || !has("bucket") {
                    return Err(invalid(
                        "influxdb2",
                        "expected `influxdb2://HOST:PORT?org=ORG&bucket=BUCKET`",
                    ));
                }
                Ok(SinkSpec::Influx(s.to_string()))
            }
            "cloudwatch" => Ok(SinkSpec::CloudWatch(need("cloudwatch", "NAMESPACE")?)),
            "datadog" => Ok(SinkSpec::Datadog(
                rest.map(str::trim).filter(|r| !r.is_empty()).map(String::from),
            )),
            "otlp" => {
                let url = need("otlp", "URL")?;
                // `otlp://host:4318` means the OTLP/HTTP endpoint at host:4318.
                let url = if url.starts_with("//") {
                    format!("http:{url}")
                } else {
                    url
                };
                url_with_host("otlp", &url)?;
                Ok(SinkSpec::Otlp(url))
            }
            "prometheus" => Ok(SinkSpec::Prometheus(need("prometheus", "ADDR")?)),
            _ => Err(SpecError::Unknown(redact(s))),
        }
    }
}

fn url_with_host(kind: &'static str, s: &str) -> Result<url::Url, SpecError> {
    let u = url::Url::parse(s).map_err(|e| invalid(kind, format!("{e} in `{}`", redact(s))))?;
    if u.host_str().is_none_or(str::is_empty) {
        return Err(invalid(kind, format!("no host in `{}`", redact(s))));
    }
    Ok(u)
}

/// Hide the secrets of a URL-like string (userinfo password, secret-looking
/// query parameters): [`steer_metrics::redact::redact`], the one redaction
/// every steer crate uses.
pub fn redact(s: &str) -> String {
    steer_metrics::redact::redact(s)
}

impl fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkSpec::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            SinkSpec::JsonLines(p) => write!(f, "jsonl:{}", p.display()),
            SinkSpec::Log => f.write_str("log"),
            SinkSpec::Postgres(u) | SinkSpec::Influx(u) => f.write_str(&redact(u)),
            SinkSpec::CloudWatch(n) => write!(f, "cloudwatch:{n}"),
            SinkSpec::Datadog(None) => f.write_str("datadog"),
            SinkSpec::Datadog(Some(s)) => write!(f, "datadog:{}", redact(s)),
            SinkSpec::Otlp(u) => write!(f, "otlp:{}", redact(u)),
            SinkSpec::Prometheus(a) => write!(f, "prometheus:{}", redact(a)),
        }
    }
}

/// `steer.toml`: defaults for every command.
///
/// ```toml
/// db = "steer-metrics.db"          # SQLite store used by demo and stats
/// sinks = ["jsonl:calls.jsonl", "postgres://steer@127.0.0.1:5432/metrics"]
/// prices = "prices.json"           # price file merged over the built-in table
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Default SQLite store.
    pub db: Option<PathBuf>,
    /// Extra sinks for every command.
    #[serde(default)]
    pub sinks: Vec<String>,
    /// A price file (steer's TOML/JSON, or the community price map's JSON)
    /// merged over the built-in table; relative to the config file's folder.
    pub prices: Option<PathBuf>,
    /// Custom providers, addressed as `NAME/model`:
    /// `[providers.NAME] base_url = "..."`, optional `api_key_env` (the
    /// variable holding its key, never the key itself) and `dialect`
    /// (`openai`, default, or `anthropic`, `gemini`).
    #[serde(default)]
    pub providers: std::collections::BTreeMap<String, ProviderConfig>,
}

/// A custom provider in `steer.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The base URL (the part before `/chat/completions` for OpenAI-compatible servers).
    pub base_url: String,
    /// The environment variable holding the key, if the server needs one.
    pub api_key_env: Option<String>,
    /// The wire protocol: `openai` (default), `anthropic` or `gemini`.
    #[serde(default)]
    pub dialect: Option<String>,
}

impl ProviderConfig {
    /// The dialect named by `dialect` (default OpenAI).
    pub fn dialect(&self) -> Result<crate::Dialect, String> {
        match self.dialect.as_deref().unwrap_or("openai") {
            "openai" => Ok(crate::Dialect::OpenAi),
            "anthropic" => Ok(crate::Dialect::Anthropic),
            "gemini" => Ok(crate::Dialect::Gemini),
            other => Err(format!(
                "unknown dialect `{other}` (expected openai, anthropic or gemini)"
            )),
        }
    }

    /// Register this provider as `name` on a client builder (its key read
    /// from `api_key_env` now).
    pub fn register(
        &self,
        name: &str,
        builder: crate::SteerClientBuilder,
    ) -> Result<crate::SteerClientBuilder, String> {
        let key = self
            .api_key_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|k| !k.trim().is_empty());
        Ok(builder.custom_provider(name, self.dialect()?, self.base_url.clone(), key.as_deref()))
    }
}

/// Errors reading `steer.toml`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why (never echoes values).
        message: String,
    },
    /// The file is larger than [`ConfigFile::MAX_BYTES`].
    #[error("config file {path} is larger than {max} bytes; is it the right file?")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
    /// `steer.toml` in the current directory is a symlink to nothing.
    #[error("config file {path} is a symbolic link to a file that does not exist")]
    DanglingSymlink {
        /// The link.
        path: PathBuf,
    },
    /// A sink in the file is not valid.
    #[error("config file {path}: {source}")]
    Spec {
        /// The file.
        path: PathBuf,
        /// Why.
        source: SpecError,
    },
}

impl ConfigFile {
    /// Largest config file read (1 MiB): `--config /dev/zero` must not
    /// grow without bound.
    pub const MAX_BYTES: u64 = 1 << 20;

    /// Read and validate a config file (at most [`MAX_BYTES`](Self::MAX_BYTES);
    /// `db`, when given, must not be empty).
    pub fn load(path: &std::path::Path) -> Result<(ConfigFile, Vec<SinkSpec>), ConfigError> {
        use std::io::Read;
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(|e| {
            let dangling = e.kind() == std::io::ErrorKind::NotFound
                && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            if dangling {
                ConfigError::DanglingSymlink {
                    path: path.to_path_buf(),
                }
            } else {
                read_err(e)
            }
        })?;
        let mut bytes = Vec::new();
        file.take(Self::MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > Self::MAX_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
                max: Self::MAX_BYTES,
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| ConfigError::Parse {
            path: path.to_path_buf(),
            message: "the file is not UTF-8 text".into(),
        })?;
        let cfg: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        if cfg
            .db
            .as_ref()
            .is_some_and(|d| d.as_os_str().to_string_lossy().trim().is_empty())
        {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message:
                    "`db` is empty: give the SQLite store's path, or leave `db` out for ./steer-metrics.db"
                        .into(),
            });
        }
        for (name, p) in &cfg.providers {
            p.dialect().map_err(|m| ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!("providers.{name}: {m}"),
            })?;
        }
        let specs = cfg
            .sinks
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<SinkSpec>, _>>()
            .map_err(|source| ConfigError::Spec {
                path: path.to_path_buf(),
                source,
            })?;
        Ok((cfg, specs))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_documented_form() {
        let ok = [
            ("sqlite:/tmp/x.db", SinkSpec::Sqlite("/tmp/x.db".into())),
            ("jsonl:out.jsonl", SinkSpec::JsonLines("out.jsonl".into())),
            ("log", SinkSpec::Log),
            (
                "postgres://u@h:5432/db",
                SinkSpec::Postgres("postgres://u@h:5432/db".into()),
            ),
            (
                "postgresql://u@h/db",
                SinkSpec::Postgres("postgresql://u@h/db".into()),
            ),
            (
                "influxdb://h:8086/db",
                SinkSpec::Influx("influxdb://h:8086/db".into()),
            ),
            (
                "influxdb2://h:8086?org=o&bucket=b",
                SinkSpec::Influx("influxdb2://h:8086?org=o&bucket=b".into()),
            ),
            (
                "cloudwatch:LLM/Metrics",
                SinkSpec::CloudWatch("LLM/Metrics".into()),
            ),
            ("datadog", SinkSpec::Datadog(None)),
            (
                "datadog:datadoghq.eu",
                SinkSpec::Datadog(Some("datadoghq.eu".into())),
            ),
            (
                "otlp:http://127.0.0.1:4318",
                SinkSpec::Otlp("http://127.0.0.1:4318".into()),
            ),
            (
                "prometheus:127.0.0.1:9464",
                SinkSpec::Prometheus("127.0.0.1:9464".into()),
            ),
        ];
        for (s, want) in ok {
            assert_eq!(s.parse::<SinkSpec>().unwrap(), want, "{s}");
        }
    }

    #[test]
    fn bad_specs_are_typed_errors() {
        assert!(matches!(
            "kafka:x".parse::<SinkSpec>(),
            Err(SpecError::Unknown(_))
        ));
        assert!(matches!(
            "sqlite:".parse::<SinkSpec>(),
            Err(SpecError::Invalid { kind: "sqlite", .. })
        ));
        assert!(matches!(
            "influxdb://h:1".parse::<SinkSpec>(),
            Err(SpecError::Invalid { .. })
        ));
        assert!(matches!(
            "influxdb2://h:1?org=o".parse::<SinkSpec>(),
            Err(SpecError::Invalid { .. })
        ));
        assert!(matches!(
            "postgres://".parse::<SinkSpec>(),
            Err(SpecError::Invalid { .. })
        ));
    }

    #[test]
    fn passwords_never_displayed() {
        let spec: SinkSpec = "postgres://steer:hunter2-SECRET@db:5432/m".parse().unwrap();
        assert!(!spec.to_string().contains("hunter2"));
        assert!(!format!("{spec:?}").contains("hunter2"));
        let err = "kafka://u:hunter2-SECRET@h".parse::<SinkSpec>().unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = "postgres://u:hunter2-SECRET@".parse::<SinkSpec>().unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn config_file_parses_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("steer.toml");
        std::fs::write(&p, "db = \"a.db\"\nsinks = [\"jsonl:x.jsonl\", \"log\"]\n").unwrap();
        let (cfg, specs) = ConfigFile::load(&p).unwrap();
        assert_eq!(cfg.db.unwrap(), PathBuf::from("a.db"));
        assert_eq!(specs, vec![SinkSpec::JsonLines("x.jsonl".into()), SinkSpec::Log]);
        std::fs::write(&p, "sinks = [\"nope:1\"]\n").unwrap();
        assert!(matches!(ConfigFile::load(&p), Err(ConfigError::Spec { .. })));
        std::fs::write(&p, "colour = 1\n").unwrap();
        assert!(matches!(ConfigFile::load(&p), Err(ConfigError::Parse { .. })));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = s.parse::<SinkSpec>();
        }
    }
}
