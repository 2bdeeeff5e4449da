//! Storage: the SQLite database behind one boundary — a reader pool and one writer path.
//! Only this module knows SQL; it returns domain values and `StorageError`, never HTTP.

mod accounts;
mod agents;
mod audit;
mod integrations;
mod migrate;

pub use accounts::{TokenOwner, UserWithHash};
pub use integrations::{NewIntegration, SealedRow};

pub use migrate::{MIGRATIONS, MigrationReport};

use crate::config::DatabaseConfig;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Everything that can go wrong below the handlers, without HTTP meaning.
#[derive(Debug)]
pub enum StorageError {
    /// The database could not be opened or answered with an error.
    Database(String),
    /// No pooled connection became free in time.
    Busy(String),
    /// A unique constraint refused the write (e.g. an email already taken).
    Conflict(String),
    NotFound,
    /// The file holds a schema newer than this binary knows.
    SchemaTooNew {
        found: i64,
        known: i64,
    },
    /// An applied migration was edited after it ran.
    SchemaDrift(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Database(m) => write!(f, "database error: {m}"),
            StorageError::Busy(m) => write!(f, "database busy: {m}"),
            StorageError::Conflict(m) => write!(f, "conflict: {m}"),
            StorageError::NotFound => write!(f, "not found"),
            StorageError::SchemaTooNew { found, known } => write!(
                f,
                "the database schema is at version {found} but this binary only knows up to {known}; \
                 run a newer vel_tutor (or restore a backup made by this version)"
            ),
            StorageError::SchemaDrift(m) => write!(f, "schema drift: {m}"),
        }
    }
}

impl std::error::Error for StorageError {}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::QueryReturnedNoRows => StorageError::NotFound,
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StorageError::Conflict(e.to_string())
            }
            _ => StorageError::Database(e.to_string()),
        }
    }
}

impl From<r2d2::Error> for StorageError {
    fn from(e: r2d2::Error) -> Self {
        StorageError::Busy(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// The database. Reads run on pooled connections in parallel; every write goes through the
/// single writer connection, so writers queue here instead of meeting SQLITE_BUSY.
pub struct Storage {
    path: PathBuf,
    readers: r2d2::Pool<SqliteConnectionManager>,
    writer: Mutex<Connection>,
    /// Keeps a test profile's temp directory alive as long as the database.
    _temp: Option<TempDir>,
}

/// A directory removed when dropped (the test profile's database home).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn configure(conn: &Connection, cfg: &DatabaseConfig) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_millis(cfg.timeout_ms))?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA foreign_keys = ON;
         PRAGMA synchronous = {};",
        cfg.synchronous.as_sql()
    ))
}

impl Storage {
    /// Opens (creating if needed) the database file and its directory. An empty path (the
    /// test profile) means a fresh file in a new temp directory, removed on drop.
    pub fn open(cfg: &DatabaseConfig) -> Result<Storage> {
        let (path, temp) = if cfg.path.as_os_str().is_empty() {
            let dir = std::env::temp_dir().join(format!("vel_tutor-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir)
                .map_err(|e| StorageError::Database(format!("{}: {e}", dir.display())))?;
            (dir.join("test.sqlite3"), Some(TempDir(dir)))
        } else {
            (cfg.path.clone(), None)
        };
        // SQLite gives the -wal and -shm files the mode of the database file.
        crate::fsutil::create_private_file(&path)
            .map_err(|e| StorageError::Database(format!("{}: {e}", path.display())))?;
        let writer = Connection::open(&path)
            .map_err(|e| StorageError::Database(format!("{}: {e}", path.display())))?;
        configure(&writer, cfg)?;
        let init_cfg = cfg.clone();
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )
            .with_init(move |c| {
                c.busy_timeout(Duration::from_millis(init_cfg.timeout_ms))?;
                c.execute_batch("PRAGMA foreign_keys = ON;")
            });
        let readers = r2d2::Pool::builder()
            .max_size(cfg.pool_size)
            .min_idle(Some(1))
            // SQLite connections do not go stale; the check cost a query per checkout.
            .test_on_check_out(false)
            .connection_timeout(Duration::from_millis(cfg.timeout_ms))
            .build(manager)?;
        Ok(Storage {
            path,
            readers,
            writer: Mutex::new(writer),
            _temp: temp,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies pending migrations (see `schema.sql`).
    pub fn migrate(&self) -> Result<MigrationReport> {
        let mut conn = self.lock_writer();
        migrate::apply(&mut conn)
    }

    /// Fails with `SchemaTooNew` when the file was written by a newer binary.
    pub fn check_schema(&self) -> Result<i64> {
        self.read(migrate::current_version)
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the writer leaves no open transaction behind (rusqlite
        // rolls back on drop), so a poisoned lock is still safe to use.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a pooled read-only connection.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.readers.get()?;
        f(&conn)
    }

    /// Runs `f` in an IMMEDIATE transaction on the writer; commits when it returns Ok.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock_writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Health probe: a real query on a pooled connection plus a read of the file header,
    /// because pooled connections keep answering from cache after the file is gone or
    /// damaged. Returns how long it took.
    pub fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        check_file_header(&self.path)?;
        self.read(|c| {
            c.query_row("SELECT count(*) FROM schema_migrations", [], |r| {
                r.get::<_, i64>(0)
            })?;
            Ok(())
        })?;
        Ok(started.elapsed())
    }
}

fn check_file_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|e| StorageError::Database(format!("{}: {e}", path.display())))?;
    if &header != b"SQLite format 3\0" {
        return Err(StorageError::Database(format!(
            "{}: not an SQLite database (header damaged)",
            path.display()
        )));
    }
    Ok(())
}

/// The current time as RFC 3339 UTC, the one timestamp format of the schema.
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// RFC 3339 UTC with a fixed six-digit fraction, so stored timestamps sort as text.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}
