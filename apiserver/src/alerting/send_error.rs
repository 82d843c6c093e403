//! Why a channel's attempt failed: what the webhook and email senders answer and the outbox
//! loop decides on (retry or give up). Beside the channels, so neither imports the loop.

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub struct SendError {
    pub status_code: Option<u16>,
    pub message: String,
    /// Retrying cannot help (a refused address, a 4xx): fail now.
    pub permanent: bool,
}

impl SendError {
    pub fn temporary(status_code: Option<u16>, message: impl Into<String>) -> Self {
        SendError { status_code, message: message.into(), permanent: false }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError { status_code: None, message: message.into(), permanent: true }
    }
}
