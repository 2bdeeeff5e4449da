//! Integrations: users' sealed provider keys. Stores and reads only sealed bytes (the
//! vault seals and opens); re-sealing for `vault rotate` is a compare-and-swap per row.

use super::audit::insert_event;
use super::{Result, Storage, StorageError, now_rfc3339};
use crate::model::{AuditEvent, Integration};
use rusqlite::{OptionalExtension, params};

/// A new or replacement key for (user, provider), already sealed and checked live.
pub struct NewIntegration<'a> {
    pub user_id: &'a str,
    pub provider: &'a str,
    pub sealed: &'a [u8],
    pub key_id: &'a str,
    pub key_hint: &'a str,
    pub base_url: Option<&'a str>,
    pub validated_at: &'a str,
}

/// A row to re-seal: its sealed bytes as read, so a concurrent PUT is never overwritten.
pub struct SealedRow {
    pub user_id: String,
    pub provider: String,
    pub sealed: Vec<u8>,
}

impl Storage {
    /// Inserts or atomically replaces the key; the audit event is `integration.stored` for
    /// a first key and `integration.rotated` for a replacement. Returns the row and
    /// whether it replaced one.
    pub fn put_integration(
        &self,
        n: &NewIntegration<'_>,
        audit: &AuditEvent,
    ) -> Result<(Integration, bool)> {
        let now = now_rfc3339();
        self.write(|tx| {
            let existed = tx
                .query_row(
                    "SELECT 1 FROM integrations WHERE user_id = ?1 AND provider = ?2",
                    params![n.user_id, n.provider],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            tx.execute(
                "INSERT INTO integrations (user_id, provider, sealed_key, key_id, key_hint, base_url,
                                           validated_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
                 ON CONFLICT (user_id, provider) DO UPDATE SET
                    sealed_key = excluded.sealed_key, key_id = excluded.key_id,
                    key_hint = excluded.key_hint, base_url = excluded.base_url,
                    validated_at = excluded.validated_at, updated_at = excluded.updated_at",
                params![n.user_id, n.provider, n.sealed, n.key_id, n.key_hint, n.base_url, n.validated_at, now],
            )?;
            let mut audit = audit.clone();
            audit.action = if existed { "integration.rotated" } else { "integration.stored" }.into();
            audit.detail = Some(serde_json::json!({ "provider": n.provider, "key_hint": n.key_hint }));
            insert_event(tx, &audit)?;
            Ok((
                Integration {
                    provider: n.provider.to_string(),
                    key_hint: n.key_hint.to_string(),
                    base_url: n.base_url.map(String::from),
                    validated_at: n.validated_at.to_string(),
                    updated_at: now.clone(),
                },
                existed,
            ))
        })
    }

    pub fn list_integrations(&self, user_id: &str) -> Result<Vec<Integration>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT provider, key_hint, base_url, validated_at, updated_at FROM integrations
                 WHERE user_id = ?1 ORDER BY provider",
            )?;
            let rows = st.query_map([user_id], |r| {
                Ok(Integration {
                    provider: r.get(0)?,
                    key_hint: r.get(1)?,
                    base_url: r.get(2)?,
                    validated_at: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The sealed key and base URL of (user, provider), if any.
    pub fn sealed_integration(
        &self,
        user_id: &str,
        provider: &str,
    ) -> Result<Option<(Vec<u8>, Option<String>)>> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT sealed_key, base_url FROM integrations WHERE user_id = ?1 AND provider = ?2")?
                .query_row(params![user_id, provider], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        })
    }

    pub fn delete_integration(
        &self,
        user_id: &str,
        provider: &str,
        audit: &AuditEvent,
    ) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM integrations WHERE user_id = ?1 AND provider = ?2",
                params![user_id, provider],
            )?;
            if n == 0 {
                return Err(StorageError::NotFound);
            }
            insert_event(tx, audit)?;
            Ok(())
        })
    }

    /// Up to `limit` rows sealed under a key other than `key_id`, in (user, provider) order
    /// after the `after` cursor.
    pub fn integrations_to_reseal(
        &self,
        key_id: &str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<SealedRow>> {
        let (au, ap) = after.unwrap_or(("", ""));
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT user_id, provider, sealed_key FROM integrations
                 WHERE key_id <> ?1 AND (user_id, provider) > (?2, ?3)
                 ORDER BY user_id, provider LIMIT ?4",
            )?;
            let rows = st.query_map(params![key_id, au, ap, limit], |r| {
                Ok(SealedRow {
                    user_id: r.get(0)?,
                    provider: r.get(1)?,
                    sealed: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub fn count_integrations_to_reseal(&self, key_id: &str) -> Result<u64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM integrations WHERE key_id <> ?1",
                [key_id],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
    }

    /// Replaces each row's sealed bytes in one transaction, only where they are still the
    /// bytes that were read (a key changed meanwhile by a PUT is left alone). Returns how
    /// many rows changed.
    pub fn reseal(&self, rows: &[(SealedRow, Vec<u8>)], key_id: &str) -> Result<usize> {
        self.write(|tx| {
            let mut st = tx.prepare_cached(
                "UPDATE integrations SET sealed_key = ?4, key_id = ?5
                 WHERE user_id = ?1 AND provider = ?2 AND sealed_key = ?3",
            )?;
            let mut n = 0;
            for (old, new) in rows {
                n += st.execute(params![old.user_id, old.provider, old.sealed, new, key_id])?;
            }
            Ok(n)
        })
    }
}
