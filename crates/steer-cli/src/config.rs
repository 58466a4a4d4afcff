//! `steer.toml`: the CLI's config file (defaults for every command).

use std::path::PathBuf;

use serde::Deserialize;
use steer_sinks::{SinkSpec, SpecError};

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
    pub fn dialect(&self) -> Result<steer::Dialect, String> {
        match self.dialect.as_deref().unwrap_or("openai") {
            "openai" => Ok(steer::Dialect::OpenAi),
            "anthropic" => Ok(steer::Dialect::Anthropic),
            "gemini" => Ok(steer::Dialect::Gemini),
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
        builder: steer::SteerClientBuilder,
    ) -> Result<steer::SteerClientBuilder, String> {
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
            .map(|s| steer_sinks::parse(s))
            .collect::<Result<Vec<SinkSpec>, _>>()
            .map_err(|source| ConfigError::Spec {
                path: path.to_path_buf(),
                source,
            })?;
        Ok((cfg, specs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_parses_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("steer.toml");
        std::fs::write(&p, "db = \"a.db\"\nsinks = [\"jsonl:x.jsonl\", \"log\"]\n").unwrap();
        let (cfg, specs) = ConfigFile::load(&p).unwrap();
        assert_eq!(cfg.db.unwrap(), PathBuf::from("a.db"));
        let shown: Vec<String> = specs.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["jsonl:x.jsonl", "log"]);
        std::fs::write(&p, "sinks = [\"nope:1\"]\n").unwrap();
        assert!(matches!(ConfigFile::load(&p), Err(ConfigError::Spec { .. })));
        std::fs::write(&p, "colour = 1\n").unwrap();
        assert!(matches!(ConfigFile::load(&p), Err(ConfigError::Parse { .. })));
    }
}
