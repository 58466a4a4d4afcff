//! Configuration: the builder, the Datadog site → API URL mapping and the
//! API key (which never appears in Debug/Display output).

use std::time::Duration;

use url::Url;

pub use crate::encode::Compression;

/// Environment variable read for the API key when none is given.
pub const API_KEY_ENV: &str = "DD_API_KEY";

/// Largest compressed body Datadog accepts on `/api/v2/series` (512 000 bytes).
pub const MAX_COMPRESSED_BYTES: usize = 512_000;
/// Largest decompressed body Datadog accepts on `/api/v2/series` (5 242 880 bytes).
pub const MAX_UNCOMPRESSED_BYTES: usize = 5_242_880;

/// Why a [`DatadogSink`](crate::DatadogSink) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No API key was given and `DD_API_KEY` is unset or empty.
    #[error("no Datadog API key: set DD_API_KEY or call DatadogSinkBuilder::api_key")]
    MissingApiKey,
    /// The API key contains characters that cannot go in an HTTP header.
    #[error("the Datadog API key contains characters not allowed in an HTTP header")]
    InvalidApiKey,
    /// The site is neither a known Datadog site nor an http(s) URL.
    #[error("unknown Datadog site `{0}` (expected datadoghq.com, datadoghq.eu, us3, us5, ap1, ap2, ddog-gov or an http(s) URL)")]
    UnknownSite(String),
    /// A knob has a value that cannot work.
    #[error("invalid Datadog sink setting: {0}")]
    Invalid(&'static str),
    /// The HTTP client could not be created.
    #[error("could not create the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// A Datadog API key: the shared [`Secret`](steer_metrics::http::Secret)
/// (its `Debug` and `Display` print `***`).
pub type ApiKey = steer_metrics::http::Secret;

/// The API base URL for a Datadog site name or a full URL.
///
/// Accepted: `datadoghq.com` (also `us1`, `app.datadoghq.com`),
/// `datadoghq.eu` (`eu`, `eu1`), `us3`, `us5`, `ap1`, `ap2` (bare or as
/// `us3.datadoghq.com` …), `ddog-gov.com` (`ddog-gov`, `gov`), or any
/// `http://` / `https://` URL used as is (a proxy, a test server).
pub fn site_url(site: &str) -> Result<Url, ConfigError> {
    let s = site.trim();
    if s.starts_with("http://") || s.starts_with("https://") {
        let mut url = Url::parse(s).map_err(|_| ConfigError::UnknownSite(redact_userinfo(site)))?;
        // The URL shows in Debug output and messages: it must hold no secret.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::Invalid(
                "the site URL must not contain credentials (the API key goes in DD_API_KEY)",
            ));
        }
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        return Ok(url);
    }
    let lower = s.to_ascii_lowercase();
    let bare = lower.strip_prefix("app.").unwrap_or(&lower);
    let host = match bare {
        "datadoghq.com" | "us1" | "us" | "us1.datadoghq.com" => "api.datadoghq.com",
        "datadoghq.eu" | "eu" | "eu1" => "api.datadoghq.eu",
        "us3" | "us3.datadoghq.com" => "api.us3.datadoghq.com",
        "us5" | "us5.datadoghq.com" => "api.us5.datadoghq.com",
        "ap1" | "ap1.datadoghq.com" => "api.ap1.datadoghq.com",
        "ap2" | "ap2.datadoghq.com" => "api.ap2.datadoghq.com",
        "ddog-gov.com" | "ddog-gov" | "gov" | "us1-fed" => "api.ddog-gov.com",
        _ => return Err(ConfigError::UnknownSite(redact_userinfo(site))),
    };
    Url::parse(&format!("https://{host}/")).map_err(|_| ConfigError::UnknownSite(redact_userinfo(site)))
}

/// `site` with anything that looks like `user:password@` masked.
fn redact_userinfo(site: &str) -> String {
    // A site may carry userinfo without a scheme (`user:pw@host`): hide all
    // of it, then apply the one shared redaction (query parameters).
    let masked = match site.rfind('@') {
        Some(at) => {
            let start = site[..at].find("//").map_or(0, |i| i + 2);
            format!("{}***{}", &site[..start], &site[at..])
        }
        None => site.to_string(),
    };
    steer_metrics::redact::redact(&masked)
}

/// The host name to report when none is configured.
fn detect_host() -> Option<String> {
    let from_env = |k: &str| {
        std::env::var(k)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    from_env("DD_HOSTNAME")
        .or_else(|| from_env("HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        })
}

/// How records become Datadog points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Aggregate per series per flush interval (the default): counts as
    /// `count` (type 1) with their interval, latency and TTFT as
    /// distributions.
    #[default]
    Aggregate,
    /// One point per record per metric at the record's own second, like the
    /// original guide (but with correct types, compression and limits).
    /// Datadog keeps only the last count point per series per second, so
    /// counts are under-reported when a series sees more than one request
    /// per second: use only for low traffic or parity checks.
    Raw,
}

/// Everything the sink needs; built by [`DatadogSinkBuilder`].
#[derive(Debug, Clone)]
pub struct DatadogConfig {
    pub(crate) base_url: Url,
    pub(crate) api_key: ApiKey,
    pub(crate) host: Option<String>,
    pub(crate) static_tags: Vec<String>,
    pub(crate) record_tags: Vec<String>,
    pub(crate) flush_interval: Duration,
    pub(crate) max_tag_sets: usize,
    pub(crate) compression: Compression,
    pub(crate) max_compressed_bytes: usize,
    pub(crate) max_uncompressed_bytes: usize,
    pub(crate) mode: Mode,
    pub(crate) timeout: Duration,
    pub(crate) significant_digits: u32,
    pub(crate) retained_intervals: usize,
    pub(crate) max_age: Duration,
    pub(crate) name: String,
}

impl DatadogConfig {
    /// The API base URL.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }
    /// The aggregation interval.
    pub fn flush_interval(&self) -> Duration {
        self.flush_interval
    }
}

/// Builder for [`DatadogSink`](crate::DatadogSink).
///
/// ```no_run
/// use std::time::Duration;
/// use steer_sink_datadog::DatadogSink;
/// let sink = DatadogSink::builder()
///     .site("datadoghq.eu")
///     .api_key("...")
///     .service("checkout")
///     .env("prod")
///     .host("web-1")
///     .flush_interval(Duration::from_secs(10))
///     .build()?;
/// # Ok::<(), steer_sink_datadog::ConfigError>(())
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct DatadogSinkBuilder {
    site: String,
    api_key: Option<ApiKey>,
    host: Option<String>,
    service: Option<String>,
    env: Option<String>,
    tags: Vec<String>,
    record_tags: Vec<String>,
    flush_interval: Duration,
    max_tag_sets: usize,
    compression: Compression,
    max_compressed_bytes: usize,
    max_uncompressed_bytes: usize,
    mode: Mode,
    timeout: Duration,
    significant_digits: u32,
    retained_intervals: usize,
    max_age: Duration,
    name: String,
}

impl Default for DatadogSinkBuilder {
    fn default() -> Self {
        DatadogSinkBuilder {
            site: "datadoghq.com".into(),
            api_key: None,
            host: None,
            service: None,
            env: None,
            tags: Vec::new(),
            record_tags: Vec::new(),
            flush_interval: Duration::from_secs(10),
            max_tag_sets: 1000,
            compression: Compression::Gzip,
            max_compressed_bytes: MAX_COMPRESSED_BYTES,
            max_uncompressed_bytes: MAX_UNCOMPRESSED_BYTES,
            mode: Mode::Aggregate,
            timeout: Duration::from_secs(10),
            significant_digits: 3,
            retained_intervals: 60,
            max_age: Duration::from_secs(3600),
            name: "datadog".into(),
        }
    }
}

impl DatadogSinkBuilder {
    /// Datadog site (`datadoghq.com`, `datadoghq.eu`, `us3`, `us5`, `ap1`,
    /// `ap2`, `ddog-gov.com`) or a full `http(s)://` base URL. Default
    /// `datadoghq.com`. See [`site_url`].
    pub fn site(mut self, site: impl Into<String>) -> Self {
        self.site = site.into();
        self
    }

    /// The API key (default: the `DD_API_KEY` environment variable).
    /// Sent as the `DD-API-KEY` header; never logged or printed.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(ApiKey::new(key));
        self
    }

    /// The host the metrics are attributed to. Default: `DD_HOSTNAME`,
    /// else `HOSTNAME`, else the system host name (Linux), else none.
    /// Each process should report under its own identity: see the crate
    /// docs on why two writers of the same series overwrite each other.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Send no host (series are then identified by their tags alone).
    pub fn no_host(mut self) -> Self {
        self.host = Some(String::new());
        self
    }

    /// Adds the `service:` tag (default: none).
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Adds the `env:` tag (default: none).
    pub fn env(mut self, env: impl Into<String>) -> Self {
        self.env = Some(env.into());
        self
    }

    /// Adds a static `key:value` tag to every series.
    pub fn tag(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.tags.push(format!("{}:{}", key.as_ref(), value.as_ref()));
        self
    }

    /// Copies this key of [`AgentMetrics::tags`](steer_metrics::AgentMetrics::tags)
    /// into a tag when a record has it (default: no record tags; each one
    /// multiplies the number of series).
    pub fn record_tag(mut self, key: impl Into<String>) -> Self {
        self.record_tags.push(key.into());
        self
    }

    /// Aggregation interval, also the `interval` of count points
    /// (default 10 s; whole seconds, at least 1 s).
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.flush_interval = d;
        self
    }

    /// Largest number of distinct tag sets per interval (default 1000);
    /// records beyond it are folded into `model:other,provider:other`.
    pub fn max_tag_sets(mut self, n: usize) -> Self {
        self.max_tag_sets = n;
        self
    }

    /// Body compression (default gzip).
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Largest body as sent (default 512 000 bytes, Datadog's limit).
    pub fn max_compressed_bytes(mut self, n: usize) -> Self {
        self.max_compressed_bytes = n;
        self
    }

    /// Largest body before compression (default 5 242 880 bytes, Datadog's limit).
    pub fn max_uncompressed_bytes(mut self, n: usize) -> Self {
        self.max_uncompressed_bytes = n;
        self
    }

    /// Aggregate (default) or raw per-request points.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Per-HTTP-request timeout (default 10 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Significant digits kept for distribution values (default 3: relative
    /// error ≤ 0.5 %; 1 to 17).
    pub fn significant_digits(mut self, n: u32) -> Self {
        self.significant_digits = n;
        self
    }

    /// How many intervals of count state are kept for late records and
    /// resends (default 60, i.e. 10 minutes at 10 s).
    pub fn retained_intervals(mut self, n: usize) -> Self {
        self.retained_intervals = n;
        self
    }

    /// Records older than this are rejected, because Datadog ignores points
    /// more than an hour old (default 1 h).
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = d;
        self
    }

    /// The sink's name in collector stats (default `datadog`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub(crate) fn into_config(self, env_key: Option<String>) -> Result<DatadogConfig, ConfigError> {
        let api_key = match self.api_key {
            Some(k) if !k.expose().is_empty() => k,
            _ => match env_key {
                Some(k) if !k.trim().is_empty() => ApiKey::new(k.trim()),
                _ => return Err(ConfigError::MissingApiKey),
            },
        };
        if api_key.expose().bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err(ConfigError::InvalidApiKey);
        }
        let base_url = site_url(&self.site)?;
        let secs = self.flush_interval.as_secs();
        if secs == 0 || self.flush_interval.subsec_nanos() != 0 {
            return Err(ConfigError::Invalid(
                "flush_interval must be whole seconds, at least 1 s",
            ));
        }
        if self.max_tag_sets == 0 {
            return Err(ConfigError::Invalid("max_tag_sets must be at least 1"));
        }
        if self.max_compressed_bytes < 1024 || self.max_uncompressed_bytes < 1024 {
            return Err(ConfigError::Invalid("payload limits must be at least 1024 bytes"));
        }
        if !(1..=17).contains(&self.significant_digits) {
            return Err(ConfigError::Invalid("significant_digits must be 1 to 17"));
        }
        let mut static_tags: Vec<String> = Vec::new();
        if let Some(s) = &self.service {
            static_tags.push(format!("service:{s}"));
        }
        if let Some(e) = &self.env {
            static_tags.push(format!("env:{e}"));
        }
        static_tags.extend(self.tags.iter().cloned());
        let static_tags = static_tags
            .iter()
            .filter_map(|t| crate::encode::normalize_tag(t))
            .collect();
        let host = match self.host {
            Some(h) if h.is_empty() => None,
            Some(h) => Some(h),
            None => detect_host(),
        };
        Ok(DatadogConfig {
            base_url,
            api_key,
            host,
            static_tags,
            record_tags: self.record_tags,
            flush_interval: self.flush_interval,
            max_tag_sets: self.max_tag_sets,
            compression: self.compression,
            max_compressed_bytes: self.max_compressed_bytes,
            max_uncompressed_bytes: self.max_uncompressed_bytes,
            mode: self.mode,
            timeout: self.timeout,
            significant_digits: self.significant_digits,
            retained_intervals: self.retained_intervals.max(1),
            max_age: self.max_age,
            name: self.name,
        })
    }

    /// Build the sink. Fails when there is no API key (neither given nor in
    /// `DD_API_KEY`), the site is unknown or a setting cannot work.
    pub fn build(self) -> Result<crate::DatadogSink, ConfigError> {
        let env_key = std::env::var(API_KEY_ENV).ok();
        crate::DatadogSink::from_config(self.into_config(env_key)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sites_map_to_api_hosts() {
        let cases = [
            ("datadoghq.com", "https://api.datadoghq.com/"),
            ("app.datadoghq.com", "https://api.datadoghq.com/"),
            ("datadoghq.eu", "https://api.datadoghq.eu/"),
            ("us3", "https://api.us3.datadoghq.com/"),
            ("us5.datadoghq.com", "https://api.us5.datadoghq.com/"),
            ("ap1", "https://api.ap1.datadoghq.com/"),
            ("ddog-gov.com", "https://api.ddog-gov.com/"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000/"),
            ("https://proxy.example/dd", "https://proxy.example/dd/"),
        ];
        for (site, url) in cases {
            assert_eq!(site_url(site).unwrap().as_str(), url, "{site}");
        }
        assert!(matches!(
            site_url("datadoghq.moon"),
            Err(ConfigError::UnknownSite(_))
        ));
    }

    #[test]
    fn missing_key_is_a_typed_error_and_env_key_is_used() {
        let b = DatadogSinkBuilder::default();
        assert!(matches!(
            b.clone().into_config(None),
            Err(ConfigError::MissingApiKey)
        ));
        assert!(matches!(
            b.clone().into_config(Some("  ".into())),
            Err(ConfigError::MissingApiKey)
        ));
        let c = b.into_config(Some("abc".into())).unwrap();
        assert_eq!(c.api_key.expose(), "abc");
    }

    #[test]
    fn key_never_printed() {
        let key = "fake-dd-key-RECOGNISABLE-0123456789";
        let c = DatadogSinkBuilder::default()
            .api_key(key)
            .into_config(None)
            .unwrap();
        assert!(!format!("{c:?}").contains(key));
        assert!(!format!("{:?}", DatadogSinkBuilder::default().api_key(key)).contains(key));
        assert!(!format!("{}", c.api_key).contains(key));
    }

    #[test]
    fn host_is_configurable_or_omitted() {
        let b = DatadogSinkBuilder::default().api_key("k");
        assert_eq!(
            b.clone().host("web-1").into_config(None).unwrap().host.as_deref(),
            Some("web-1")
        );
        assert_eq!(b.no_host().into_config(None).unwrap().host, None);
    }

    #[test]
    fn bad_settings_are_rejected() {
        let b = DatadogSinkBuilder::default().api_key("k");
        assert!(b
            .clone()
            .flush_interval(Duration::from_millis(1500))
            .into_config(None)
            .is_err());
        assert!(b.clone().max_tag_sets(0).into_config(None).is_err());
        assert!(b.clone().api_key("bad key\n").into_config(None).is_err());
        let c = b
            .service("Check Out")
            .env("PROD")
            .tag("Team", "Search!")
            .into_config(None)
            .unwrap();
        assert_eq!(
            c.static_tags,
            vec!["service:check_out", "env:prod", "team:search"]
        );
    }
}
