//! The agent's error type; `anyhow` is only used in `main`.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is missing or wrong; the message names the flag.
    #[error("configuration: {0}")]
    Config(String),
    /// The message already includes the I/O error, so it is not chained a second time.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{0}")]
    Http(#[from] reqwest::Error),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io { path: path.as_ref().to_path_buf(), error: source }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::Config(message.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
