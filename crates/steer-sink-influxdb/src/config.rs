//! Configuration: where to write (v1 or v2 API), how (precision, gzip,
//! request size) and what (measurement, which attributes are tags).

use std::fmt;
use std::time::Duration;

use url::Url;

pub use crate::attribute::{Attribute, Placement, Precision};

/// A secret (password, token): the shared
/// [`Secret`](steer_metrics::http::Secret), never shown by `Debug` or `Display`.
pub use steer_metrics::http::Secret;

/// Which write API to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    /// InfluxDB 1.x: `POST /write?db=&rp=&precision=`, optional basic auth.
    V1 {
        /// Database.
        database: String,
        /// Retention policy (default: the database's default).
        retention_policy: Option<String>,
    },
    /// InfluxDB 2.x / 3.x: `POST /api/v2/write?org=&bucket=&precision=`,
    /// `Authorization: Token ...`.
    V2 {
        /// Organisation (name or id).
        org: String,
        /// Bucket (in InfluxDB 3: the database).
        bucket: String,
    },
}

/// Errors in the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL is not a valid URL or has an unsupported scheme.
    #[error("invalid InfluxDB URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, without credentials.
        url: String,
        /// Why.
        reason: String,
    },
    /// Neither a v1 database nor a v2 org/bucket was given.
    #[error("no target: set a v1 database (`.database(..)`) or a v2 org and bucket (`.org(..).bucket(..)`)")]
    MissingTarget,
    /// v2 needs both org and bucket.
    #[error("the v2 API needs both an org and a bucket")]
    IncompleteV2,
    /// Both a v1 database and v2 settings were given.
    #[error("set either a v1 database or a v2 org/bucket, not both")]
    AmbiguousApi,
    /// The measurement is empty after normalisation or starts with `#`
    /// (which would make every line a comment).
    #[error("invalid measurement `{0}`: it must be non-empty and must not start with `#`")]
    InvalidMeasurement(String),
    /// A numeric attribute cannot be a tag.
    #[error("attribute `{0}` is numeric and cannot be a tag")]
    NumericTag(&'static str),
    /// A limit is zero.
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    /// The credentials contain characters not allowed in an HTTP header.
    #[error("the {0} contains characters not allowed in an HTTP header")]
    InvalidCredential(&'static str),
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// Where and how an [`InfluxSink`](crate::InfluxSink) writes. Build with
/// [`InfluxConfig::builder`].
#[derive(Debug, Clone)]
pub struct InfluxConfig {
    pub(crate) url: Url,
    pub(crate) api: Api,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Secret>,
    pub(crate) token: Option<Secret>,
    pub(crate) precision: Precision,
    pub(crate) measurement: String,
    pub(crate) placement: [Placement; Attribute::COUNT],
    pub(crate) user_tag_prefix: String,
    pub(crate) max_lines: usize,
    pub(crate) max_bytes: usize,
    pub(crate) gzip: bool,
    pub(crate) timeout: Duration,
    pub(crate) name: String,
}

impl InfluxConfig {
    /// Start a configuration for the server at `url` (e.g.
    /// `http://127.0.0.1:8086`).
    pub fn builder(url: impl Into<String>) -> InfluxConfigBuilder {
        InfluxConfigBuilder {
            url: url.into(),
            database: None,
            retention_policy: None,
            org: None,
            bucket: None,
            username: None,
            password: None,
            token: None,
            precision: Precision::default(),
            measurement: DEFAULT_MEASUREMENT.to_string(),
            placement: Attribute::ALL.map(Attribute::default_placement),
            user_tag_prefix: String::new(),
            max_lines: DEFAULT_MAX_LINES,
            max_bytes: DEFAULT_MAX_BYTES,
            gzip: false,
            timeout: Duration::from_secs(30),
            name: "influxdb".to_string(),
        }
    }

    /// The write API in use.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The server URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The measurement as written (normalised).
    pub fn measurement(&self) -> &str {
        &self.measurement
    }
}

/// The default measurement name.
pub const DEFAULT_MEASUREMENT: &str = "llm_request";
/// Default largest number of lines per request.
pub const DEFAULT_MAX_LINES: usize = 5_000;
/// Default largest request body, uncompressed.
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;

/// Builds an [`InfluxConfig`].
#[must_use]
#[derive(Clone)]
pub struct InfluxConfigBuilder {
    url: String,
    database: Option<String>,
    retention_policy: Option<String>,
    org: Option<String>,
    bucket: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
    token: Option<Secret>,
    precision: Precision,
    measurement: String,
    placement: [Placement; Attribute::COUNT],
    user_tag_prefix: String,
    max_lines: usize,
    max_bytes: usize,
    gzip: bool,
    timeout: Duration,
    name: String,
}

impl fmt::Debug for InfluxConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfluxConfigBuilder")
            .field("url", &redact_url(&self.url))
            .field("database", &self.database)
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("token", &self.token)
            .field("measurement", &self.measurement)
            .finish_non_exhaustive()
    }
}

/// The URL with any userinfo removed (for messages).
pub(crate) fn redact_url(url: &str) -> String {
    // The one redaction of every steer crate: userinfo password and
    // secret-looking query parameters (`token=`, `password=`, ...).
    steer_metrics::redact::redact(url)
}

impl InfluxConfigBuilder {
    /// v1: the database to write to.
    pub fn database(mut self, db: impl Into<String>) -> Self {
        self.database = Some(db.into());
        self
    }
    /// v1: the retention policy (default: the database's default policy).
    pub fn retention_policy(mut self, rp: impl Into<String>) -> Self {
        self.retention_policy = Some(rp.into());
        self
    }
    /// v1: user name and password (sent as HTTP basic auth).
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<Secret>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }
    /// v2: the organisation.
    pub fn org(mut self, org: impl Into<String>) -> Self {
        self.org = Some(org.into());
        self
    }
    /// v2: the bucket (InfluxDB 3: the database).
    pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = Some(bucket.into());
        self
    }
    /// v2: the API token (`Authorization: Token ...`). Default: the
    /// `INFLUX_TOKEN` environment variable, if set. A token also works with
    /// v1 servers that accept it (1.8+ sends it the same way).
    pub fn token(mut self, token: impl Into<Secret>) -> Self {
        self.token = Some(token.into());
        self
    }
    /// Timestamp precision (default nanoseconds).
    pub fn precision(mut self, p: Precision) -> Self {
        self.precision = p;
        self
    }
    /// Measurement name (default `llm_request`).
    pub fn measurement(mut self, m: impl Into<String>) -> Self {
        self.measurement = m.into();
        self
    }
    /// Put `attr` as a tag, a field, or nowhere (defaults: see
    /// [`Attribute`]).
    pub fn place(mut self, attr: Attribute, placement: Placement) -> Self {
        self.placement[attr as usize] = placement;
        self
    }
    /// Make these attributes tags and every other text attribute that is
    /// currently a tag a field.
    pub fn tags(mut self, attrs: &[Attribute]) -> Self {
        for a in Attribute::ALL {
            if attrs.contains(&a) {
                self.placement[a as usize] = Placement::Tag;
            } else if self.placement[a as usize] == Placement::Tag {
                self.placement[a as usize] = Placement::Field;
            }
        }
        self
    }
    /// Prefix for the keys of user tags (default none), e.g. `tag_` so they
    /// cannot collide with built-in names. A user tag whose key equals a
    /// built-in attribute key is otherwise skipped.
    pub fn user_tag_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.user_tag_prefix = prefix.into();
        self
    }
    /// Largest number of lines per HTTP request (default 5000).
    pub fn max_lines_per_request(mut self, n: usize) -> Self {
        self.max_lines = n;
        self
    }
    /// Largest request body before compression (default 1 MiB). A single
    /// line larger than this is sent alone.
    pub fn max_bytes_per_request(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }
    /// Compress request bodies with gzip (default off).
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }
    /// Timeout of one HTTP request (default 30 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    /// The sink's name in stats and logs (default `influxdb`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Check and build.
    pub fn build(mut self) -> Result<InfluxConfig, ConfigError> {
        let mut url = Url::parse(&self.url).map_err(|e| ConfigError::InvalidUrl {
            url: redact_url(&self.url),
            reason: e.to_string(),
        })?;
        // Credentials in the URL become basic-auth credentials (unless set
        // explicitly) and leave the URL, which appears in logs and errors.
        if !url.username().is_empty() || url.password().is_some() {
            if self.username.is_none() && !url.username().is_empty() {
                self.username = Some(percent_decode(url.username()));
            }
            if self.password.is_none() {
                if let Some(pw) = url.password() {
                    self.password = Some(Secret::new(percent_decode(pw)));
                }
            }
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::InvalidUrl {
                url: redact_url(&self.url),
                reason: "the scheme must be http or https".into(),
            });
        }
        let api = match (self.database, self.org, self.bucket) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => return Err(ConfigError::AmbiguousApi),
            (Some(database), None, None) => Api::V1 {
                database,
                retention_policy: self.retention_policy,
            },
            (None, Some(org), Some(bucket)) => Api::V2 { org, bucket },
            (None, Some(_), None) | (None, None, Some(_)) => return Err(ConfigError::IncompleteV2),
            (None, None, None) => return Err(ConfigError::MissingTarget),
        };
        let measurement = crate::escape::normalize_measurement(&self.measurement).into_owned();
        if measurement.is_empty() || measurement.starts_with('#') {
            return Err(ConfigError::InvalidMeasurement(self.measurement));
        }
        for a in Attribute::ALL {
            if a.is_numeric() && self.placement[a as usize] == Placement::Tag {
                return Err(ConfigError::NumericTag(a.key()));
            }
        }
        if self.max_lines == 0 {
            return Err(ConfigError::ZeroLimit("max_lines_per_request"));
        }
        if self.max_bytes == 0 {
            return Err(ConfigError::ZeroLimit("max_bytes_per_request"));
        }
        let token = self.token.or_else(|| {
            std::env::var("INFLUX_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .map(Secret::new)
        });
        Ok(InfluxConfig {
            url,
            api,
            username: self.username,
            password: self.password,
            token,
            precision: self.precision,
            measurement,
            placement: self.placement,
            user_tag_prefix: self.user_tag_prefix,
            max_lines: self.max_lines,
            max_bytes: self.max_bytes,
            gzip: self.gzip,
            timeout: self.timeout,
            name: self.name,
        })
    }
}

impl InfluxConfig {
    /// Parse a sink spec:
    ///
    /// * `influxdb://[USER:PASSWORD@]HOST:PORT/DB[?rp=RP&precision=P&gzip=true&measurement=M]`
    ///   — v1 over HTTP (`influxdbs://` for HTTPS);
    /// * `influxdb2://HOST:PORT?org=O&bucket=B[&precision=P&gzip=true&measurement=M]`
    ///   — v2 over HTTP (`influxdb2s://` for HTTPS), token from `INFLUX_TOKEN`.
    pub fn from_url(spec: &str) -> Result<InfluxConfig, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidUrl {
            url: redact_url(spec),
            reason: reason.to_string(),
        };
        let u = Url::parse(spec).map_err(|e| invalid(&e.to_string()))?;
        let (v2, https) = match u.scheme() {
            "influxdb" => (false, false),
            "influxdbs" => (false, true),
            "influxdb2" => (true, false),
            "influxdb2s" => (true, true),
            _ => {
                return Err(invalid(
                    "the scheme must be influxdb, influxdbs, influxdb2 or influxdb2s",
                ))
            }
        };
        let host = u.host_str().ok_or_else(|| invalid("missing host"))?;
        let port = u.port().unwrap_or(8086);
        let base = format!(
            "{}://{}:{port}",
            if https { "https" } else { "http" },
            fmt_host(host)
        );
        let mut b = InfluxConfig::builder(base);
        let mut rp = None;
        let (mut org, mut bucket) = (None, None);
        for (k, v) in u.query_pairs() {
            match &*k {
                "rp" if !v2 => rp = Some(v.into_owned()),
                "org" if v2 => org = Some(v.into_owned()),
                "bucket" if v2 => bucket = Some(v.into_owned()),
                "precision" => {
                    let p =
                        Precision::parse(&v).ok_or_else(|| invalid("precision must be ns, us, ms or s"))?;
                    b = b.precision(p);
                }
                "gzip" => b = b.gzip(matches!(&*v, "true" | "1" | "yes")),
                "measurement" => b = b.measurement(v.into_owned()),
                other => return Err(invalid(&format!("unknown parameter `{other}`"))),
            }
        }
        if v2 {
            b = b
                .org(org.ok_or_else(|| invalid("missing org="))?)
                .bucket(bucket.ok_or_else(|| invalid("missing bucket="))?);
        } else {
            let db = u.path().trim_start_matches('/');
            if db.is_empty() || db.contains('/') {
                return Err(invalid(
                    "the path must be the database name: influxdb://HOST:PORT/DB",
                ));
            }
            let db = percent_decode(db);
            b = b.database(db);
            if let Some(rp) = rp {
                b = b.retention_policy(rp);
            }
            if !u.username().is_empty() {
                let pw = u.password().map(percent_decode).unwrap_or_default();
                b = b.credentials(percent_decode(u.username()), Secret::new(pw));
            }
        }
        b.build()
    }
}

fn fmt_host(h: &str) -> String {
    if h.contains(':') && !h.starts_with('[') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn b() -> InfluxConfigBuilder {
        InfluxConfig::builder("http://127.0.0.1:8086")
    }

    #[test]
    fn the_builder_refuses_what_cannot_work() {
        assert!(matches!(b().build(), Err(ConfigError::MissingTarget)));
        assert!(matches!(
            b().database("d").org("o").build(),
            Err(ConfigError::AmbiguousApi)
        ));
        assert!(matches!(b().org("o").build(), Err(ConfigError::IncompleteV2)));
        assert!(matches!(
            b().database("d").measurement("\t\\").build(),
            Err(ConfigError::InvalidMeasurement(_))
        ));
        assert!(matches!(
            b().database("d").measurement("#m").build(),
            Err(ConfigError::InvalidMeasurement(_))
        ));
        assert!(matches!(
            b().database("d")
                .place(Attribute::LatencyMs, Placement::Tag)
                .build(),
            Err(ConfigError::NumericTag("latency_ms"))
        ));
        assert!(matches!(
            b().database("d").max_lines_per_request(0).build(),
            Err(ConfigError::ZeroLimit(_))
        ));
        assert!(matches!(
            InfluxConfig::builder("unix:///x").database("d").build(),
            Err(ConfigError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn tags_moves_text_attributes_between_tags_and_fields() {
        let c = b()
            .database("d")
            .tags(&[Attribute::Model, Attribute::ResponseModel])
            .build()
            .unwrap();
        assert_eq!(c.placement[Attribute::Model as usize], Placement::Tag);
        assert_eq!(c.placement[Attribute::ResponseModel as usize], Placement::Tag);
        assert_eq!(c.placement[Attribute::Provider as usize], Placement::Field);
        assert_eq!(c.placement[Attribute::LatencyMs as usize], Placement::Field);
    }

    #[test]
    fn secrets_are_redacted_everywhere() {
        let c = b()
            .database("d")
            .credentials("u", "hunter2")
            .token("tok-123")
            .build()
            .unwrap();
        let dbg = format!("{c:?} {:?}", b().credentials("u", "hunter2").token("tok-123"));
        assert!(!dbg.contains("hunter2") && !dbg.contains("tok-123"), "{dbg}");
        assert_eq!(redact_url("http://u:hunter2@h:1/"), "http://u:***@h:1/");
        assert_eq!(
            redact_url("influxdb2://h:1?org=o&bucket=b&token=hunter3"),
            "influxdb2://h:1?org=o&bucket=b&token=***"
        );
    }

    #[test]
    fn precision_parameters_per_api() {
        assert_eq!(Precision::Microseconds.v1_param(), "u");
        assert_eq!(Precision::Microseconds.v2_param(), "us");
        assert_eq!(Precision::Nanoseconds.v1_param(), "n");
        assert_eq!(Precision::parse("ms"), Some(Precision::Milliseconds));
        assert_eq!(Precision::parse("h"), None);
    }
}
