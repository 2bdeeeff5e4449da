//! The audit log: single security events inside a caller's transaction, batches of
//! per-request rows in one transaction, and filtered, cursor-paginated reads.

use super::{Result, Storage, now_rfc3339};
use crate::model::{AuditEvent, AuditQuery, AuditRow};
use rusqlite::{Transaction, params};

/// Inserts one event in the caller's transaction (so it commits with the change).
pub(crate) fn insert_event(tx: &Transaction<'_>, e: &AuditEvent) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit_logs (created_at, action, user_id, ip, user_agent, request_id,
                                 method, route, status, duration_ms, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        now_rfc3339(),
        e.action,
        e.actor.user_id,
        e.actor.ip,
        e.actor.user_agent,
        e.actor.request_id,
        e.method,
        e.route,
        e.status,
        e.duration_ms,
        e.detail.as_ref().map(|d| d.to_string()),
    ])?;
    Ok(())
}

impl Storage {
    /// Records a security event that changes nothing else (a failed login, say).
    pub fn record_event(&self, e: &AuditEvent) -> Result<()> {
        self.write(|tx| insert_event(tx, e))
    }

    /// Audit rows, newest first.
    pub fn audit_rows(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, created_at, action, user_id, ip, user_agent, request_id, method, route,
                        status, duration_ms, detail
                 FROM audit_logs
                 WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR action = ?2)
                   AND (?3 IS NULL OR created_at >= ?3) AND (?4 IS NULL OR id < ?4)
                 ORDER BY id DESC LIMIT ?5",
            )?;
            let rows = st.query_map(
                params![q.user_id, q.action, q.since, q.before_id, q.limit],
                |r| {
                    let detail: Option<String> = r.get(11)?;
                    Ok(AuditRow {
                        id: r.get(0)?,
                        created_at: r.get(1)?,
                        action: r.get(2)?,
                        user_id: r.get(3)?,
                        ip: r.get(4)?,
                        user_agent: r.get(5)?,
                        request_id: r.get(6)?,
                        method: r.get(7)?,
                        route: r.get(8)?,
                        status: r.get(9)?,
                        duration_ms: r.get(10)?,
                        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}
