//! `StoreError`: what the storage layer reports to the use cases, without the database driver's
//! types. The conversions from `sqlx`'s errors live here, inside the storage module, so `?` works
//! in the adapters while nothing outside `storage/` needs to name `sqlx`.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("too many points ({0}); narrow the time range or pass a step")]
    TooManyPoints(usize),
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(DatabaseError),
    /// Something stored (a document, labels, a chunk) could not be read back.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migrate(String),
}

impl StoreError {
    /// A stored value that does not decode (JSON of a spec or labels, scopes, a chunk).
    pub fn corrupt(err: impl fmt::Display) -> Self {
        StoreError::Corrupt(err.to_string())
    }

    /// The database chose this transaction as a deadlock's victim and rolled it back (InnoDB's
    /// 1213, SQLSTATE 40001; PostgreSQL's 40P01): running it again is the remedy.
    pub fn is_deadlock(&self) -> bool {
        matches!(self, StoreError::Database(err) if err.is_deadlock())
    }
}

/// A database failure as the use cases see it: the driver's message, the SQLSTATE (or the
/// backend's own code) when the database reported one, and what kind of failure it was.
#[derive(Debug)]
pub struct DatabaseError {
    message: String,
    code: Option<String>,
}

impl DatabaseError {
    /// A failure found by the storage code itself (an unexpected schema, a broken constraint).
    pub(crate) fn new(message: impl Into<String>) -> Self {
        DatabaseError { message: message.into(), code: None }
    }

    /// The SQLSTATE (PostgreSQL, MariaDB) or extended result code (SQLite) the database sent.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// See `StoreError::is_deadlock`.
    pub fn is_deadlock(&self) -> bool {
        matches!(self.code(), Some("40001") | Some("40P01"))
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DatabaseError {}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        let code = match &err {
            sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        };
        StoreError::Database(DatabaseError { message: err.to_string(), code })
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_errors_keep_their_message_and_corrupt_data_is_its_own_kind() {
        let err = StoreError::from(sqlx::Error::PoolTimedOut);
        assert_eq!(err.to_string(), format!("database error: {}", sqlx::Error::PoolTimedOut));
        assert!(!err.is_deadlock());
        let corrupt = StoreError::corrupt("expected value at line 1 column 1");
        assert!(matches!(corrupt, StoreError::Corrupt(_)));
        assert!(!corrupt.is_deadlock());
    }

    #[test]
    fn deadlock_codes_are_recognized() {
        for (code, deadlock) in [("40001", true), ("40P01", true), ("23505", false)] {
            let err = StoreError::Database(DatabaseError { message: "x".into(), code: Some(code.into()) });
            assert_eq!(err.is_deadlock(), deadlock, "{code}");
        }
    }
}
