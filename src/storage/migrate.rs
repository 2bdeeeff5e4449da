//! Ordered, idempotent migrations parsed from `schema.sql` and recorded in
//! `schema_migrations` with a checksum, so edited or too-new schemas are refused.

use super::{Result, StorageError, now_rfc3339};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const SCHEMA: &str = include_str!("../../schema.sql");
const MARKER: &str = "-- migration: ";

/// One block of `schema.sql`.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    pub sql: String,
}

impl Migration {
    fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.trim().as_bytes()))
    }
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<i64>,
    pub current: i64,
}

/// The migrations compiled into this binary, in order.
pub static MIGRATIONS: OnceLock<Vec<Migration>> = OnceLock::new();

fn migrations() -> &'static [Migration] {
    MIGRATIONS.get_or_init(|| parse(SCHEMA))
}

fn parse(schema: &str) -> Vec<Migration> {
    let mut out: Vec<Migration> = Vec::new();
    for line in schema.lines() {
        if let Some(rest) = line.strip_prefix(MARKER) {
            let (version, name) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
            out.push(Migration {
                // The block markers are ours, compiled in; a bad one is a build bug.
                version: version
                    .parse()
                    .expect("schema.sql: migration version must be a number"),
                name: name.trim().to_string(),
                sql: String::new(),
            });
        } else if let Some(m) = out.last_mut() {
            m.sql.push_str(line);
            m.sql.push('\n');
        }
    }
    out
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// The highest applied version (0 for a new file); `SchemaTooNew` when it is beyond what
/// this binary knows.
pub fn current_version(conn: &Connection) -> Result<i64> {
    let exists: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(0);
    }
    let found: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let known = migrations().last().map_or(0, |m| m.version);
    if found > known {
        return Err(StorageError::SchemaTooNew { found, known });
    }
    Ok(found)
}

/// Applies every pending migration, each in its own transaction with its record.
pub fn apply(conn: &mut Connection) -> Result<MigrationReport> {
    conn.execute_batch(CREATE_TABLE)?;
    let current = current_version(conn)?;
    for m in migrations().iter().filter(|m| m.version <= current) {
        let recorded: Option<String> = conn
            .query_row(
                "SELECT checksum FROM schema_migrations WHERE version = ?1",
                [m.version],
                |r| r.get(0),
            )
            .optional()?;
        if recorded.is_some_and(|c| c != m.checksum()) {
            return Err(StorageError::SchemaDrift(format!(
                "migration {} ({}) was changed after it was applied; add a new migration instead",
                m.version, m.name
            )));
        }
    }
    let mut applied = Vec::new();
    for m in migrations().iter().filter(|m| m.version > current) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(&m.sql).map_err(|e| {
            StorageError::Database(format!("migration {} ({}): {e}", m.version, m.name))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![m.version, m.name, m.checksum(), now_rfc3339()],
        )?;
        tx.commit()?;
        applied.push(m.version);
    }
    let current = current_version(conn)?;
    Ok(MigrationReport { applied, current })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_blocks_are_ordered_and_unique() {
        let ms = migrations();
        assert!(!ms.is_empty());
        for w in ms.windows(2) {
            assert!(
                w[0].version < w[1].version,
                "{} !< {}",
                w[0].version,
                w[1].version
            );
        }
        assert!(ms.iter().all(|m| !m.sql.trim().is_empty()));
    }

    #[test]
    fn applying_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        let first = apply(&mut conn).unwrap();
        assert_eq!(first.applied.len(), migrations().len());
        let second = apply(&mut conn).unwrap();
        assert!(second.applied.is_empty());
        assert_eq!(first.current, second.current);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, migrations().len() as i64);
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (9999, 'future', 'x', '2030-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
        match apply(&mut conn) {
            Err(StorageError::SchemaTooNew { found, .. }) => assert_eq!(found, 9999),
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn edited_migration_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn.execute(
            "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
            [],
        )
        .unwrap();
        assert!(matches!(
            apply(&mut conn),
            Err(StorageError::SchemaDrift(_))
        ));
    }
}
