//! Errors a processor reports.
//!
//! Two types, because the contract has two failure points: [`Error`] is a
//! plain message (a config that does not parse, a record that is not what the
//! plugin expects), and [`ProcessError`] is what a `process` call returns to
//! the host: a message plus the index in the batch of the record that failed,
//! so the host can dead-letter or skip exactly that record instead of
//! bisecting the batch.

use std::fmt;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error message.
///
/// Plugin functions may return any `E: Display` (a `String`, an
/// `anyhow::Error`, …); this type is the SDK's own, with `From` conversions
/// for the errors plugins meet most (JSON, UTF-8, number parsing) so `?`
/// works on them.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// This error with `context: ` in front of its message.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self {
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `unwrap()` in tests prints the message as written, not escaped.
        write!(formatter, "Error({})", self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Self::new(format!("invalid JSON: {error}"))
    }
}

impl From<std::str::Utf8Error> for Error {
    fn from(error: std::str::Utf8Error) -> Self {
        Self::new(format!("invalid UTF-8: {error}"))
    }
}

impl From<std::string::FromUtf8Error> for Error {
    fn from(error: std::string::FromUtf8Error) -> Self {
        Self::new(format!("invalid UTF-8: {}", error.utf8_error()))
    }
}

impl From<std::num::ParseIntError> for Error {
    fn from(error: std::num::ParseIntError) -> Self {
        Self::new(format!("invalid integer: {error}"))
    }
}

impl From<std::num::ParseFloatError> for Error {
    fn from(error: std::num::ParseFloatError) -> Self {
        Self::new(format!("invalid number: {error}"))
    }
}

impl From<std::convert::Infallible> for Error {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// Why a `process` call failed: what the host receives.
///
/// The kind macros fill `source` with the index of the record whose function
/// call failed; a [`Processor`](crate::Processor) sets it with
/// [`ProcessError::at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessError {
    /// What went wrong, for the operator.
    pub message: String,
    /// Index in the batch of the record that failed, when known. Without it
    /// the host retries the batch record by record to find the culprit.
    pub source: Option<u32>,
}

impl ProcessError {
    /// An error not tied to one record.
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            source: None,
        }
    }

    /// An error caused by the record at index `source` of the batch.
    pub fn at(source: u32, message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            source: Some(source),
        }
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            Some(source) => write!(formatter, "record {source} of the batch: {}", self.message),
            None => formatter.write_str(&self.message),
        }
    }
}

impl std::error::Error for ProcessError {}

impl From<Error> for ProcessError {
    fn from(error: Error) -> Self {
        Self {
            message: error.message,
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_the_cause() {
        let json: Error = serde_json::from_str::<u8>("x").unwrap_err().into();
        assert!(json.message().starts_with("invalid JSON: "), "{json}");
        let bytes = vec![0xff_u8];
        let utf8: Error = String::from_utf8(bytes).unwrap_err().into();
        assert!(utf8.message().starts_with("invalid UTF-8: "), "{utf8}");
        assert_eq!(
            Error::from("no").context("field `a`").message(),
            "field `a`: no"
        );
    }

    #[test]
    fn process_error_names_the_record() {
        let error = ProcessError::at(3, Error::new("bad"));
        assert_eq!(error.source, Some(3));
        assert_eq!(error.to_string(), "record 3 of the batch: bad");
        assert_eq!(ProcessError::from(Error::new("x")).source, None);
    }
}
