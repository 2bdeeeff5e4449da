//! Agents (per-user definitions of provider, model, prompt and kind) and usage events
//! (one row per provider call, summed for /api/usage and monthly budgets).

use super::audit::insert_event;
use super::{Result, Storage, StorageError, now_rfc3339};
use crate::model::{Agent, Record, UsageEvent, UsageTotal};
use rusqlite::{OptionalExtension, Row, params};

fn insert_usage(tx: &rusqlite::Transaction<'_>, e: &UsageEvent) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO usage_events (user_id, agent_id, task_id, provider, model, prompt_tokens, completion_tokens,
                                   cost_usd, latency_ms, outcome, key_source, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        e.user_id,
        e.agent_id,
        e.task_id,
        e.provider,
        e.model,
        e.prompt_tokens as i64,
        e.completion_tokens as i64,
        e.cost_usd,
        e.latency_ms as i64,
        e.outcome,
        e.key_source,
        now_rfc3339()
    ])?;
    Ok(())
}

/// The columns `agent_row` reads, in its order (a macro, so every query is one literal
/// built at compile time: `agent` runs on every chat).
macro_rules! agent_cols {
    () => {
        "id, user_id, name, kind, provider, model, system_prompt, temperature, max_tokens, \
         fallback, tool, arguments, created_at, updated_at"
    };
}

fn agent_row(r: &Row<'_>) -> rusqlite::Result<Agent> {
    let args: Option<String> = r.get(11)?;
    Ok(Agent {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        provider: r.get(4)?,
        model: r.get(5)?,
        system_prompt: r.get(6)?,
        temperature: r.get(7)?,
        max_tokens: r.get(8)?,
        fallback: r.get(9)?,
        tool: r.get(10)?,
        arguments: args.and_then(|a| serde_json::from_str(&a).ok()),
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
    })
}

impl Storage {
    /// Inserts a new agent (id and timestamps are set here).
    pub fn create_agent(&self, a: &Agent) -> Result<Agent> {
        let now = now_rfc3339();
        let agent = Agent {
            id: uuid::Uuid::new_v4().to_string(),
            created_at: now.clone(),
            updated_at: now,
            ..a.clone()
        };
        self.write(|tx| {
            tx.execute(
                concat!(
                    "INSERT INTO agents (",
                    agent_cols!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ),
                params![
                    agent.id,
                    agent.user_id,
                    agent.name,
                    agent.kind,
                    agent.provider,
                    agent.model,
                    agent.system_prompt,
                    agent.temperature,
                    agent.max_tokens,
                    agent.fallback,
                    agent.tool,
                    agent.arguments.as_ref().map(|v| v.to_string()),
                    agent.created_at,
                    agent.updated_at
                ],
            )?;
            Ok(agent.clone())
        })
    }

    /// The agent, if it exists and `owner` (None = any, for admins) owns it.
    pub fn agent(&self, id: &str, owner: Option<&str>) -> Result<Option<Agent>> {
        self.read(|c| {
            Ok(c.prepare_cached(concat!(
                "SELECT ",
                agent_cols!(),
                " FROM agents WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)"
            ))?
            .query_row(params![id, owner], agent_row)
            .optional()?)
        })
    }

    /// Agents of `owner` (None = everyone's), newest first.
    pub fn list_agents(&self, owner: Option<&str>, limit: u32) -> Result<Vec<Agent>> {
        self.read(|c| {
            let mut st = c.prepare_cached(concat!(
                "SELECT ",
                agent_cols!(),
                " FROM agents WHERE (?1 IS NULL OR user_id = ?1) ORDER BY created_at DESC, id DESC LIMIT ?2"
            ))?;
            let rows = st.query_map(params![owner, limit], agent_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Replaces the editable fields of an agent owned by `owner` (None = admin).
    pub fn update_agent(&self, a: &Agent, owner: Option<&str>) -> Result<Agent> {
        let now = now_rfc3339();
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE agents SET name = ?3, kind = ?4, provider = ?5, model = ?6, system_prompt = ?7,
                        temperature = ?8, max_tokens = ?9, fallback = ?10, tool = ?11, arguments = ?12, updated_at = ?13
                 WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
                params![
                    a.id, owner, a.name, a.kind, a.provider, a.model, a.system_prompt, a.temperature, a.max_tokens,
                    a.fallback, a.tool, a.arguments.as_ref().map(|v| v.to_string()), now
                ],
            )?;
            if n == 0 {
                return Err(StorageError::NotFound);
            }
            Ok(Agent { updated_at: now.clone(), ..a.clone() })
        })
    }

    pub fn delete_agent(&self, id: &str, owner: Option<&str>) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM agents WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
                params![id, owner],
            )?;
            if n == 0 {
                return Err(StorageError::NotFound);
            }
            Ok(())
        })
    }

    /// Writes a batch of audit and usage rows in one transaction (the background writer).
    pub fn record_all(&self, records: &[Record]) -> Result<()> {
        self.write(|tx| {
            for r in records {
                match r {
                    Record::Audit(e) => insert_event(tx, e)?,
                    Record::Usage(u) => insert_usage(tx, u)?,
                }
            }
            Ok(())
        })
    }

    /// Usage since `since` (RFC 3339), of one user or everyone, per provider and model.
    pub fn usage_totals(&self, user_id: Option<&str>, since: &str) -> Result<Vec<UsageTotal>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT provider, model, count(*), sum(outcome <> 'ok'), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd)
                 FROM usage_events WHERE created_at >= ?1 AND (?2 IS NULL OR user_id = ?2)
                 GROUP BY provider, model ORDER BY provider, model",
            )?;
            let rows = st.query_map(params![since, user_id], |r| {
                Ok(UsageTotal {
                    provider: r.get(0)?,
                    model: r.get(1)?,
                    calls: r.get::<_, i64>(2)? as u64,
                    errors: r.get::<_, i64>(3)? as u64,
                    prompt_tokens: r.get::<_, i64>(4)? as u64,
                    completion_tokens: r.get::<_, i64>(5)? as u64,
                    cost_usd: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// USD spent per provider since `since` (all users): the monthly budgets' starting point.
    pub fn spend_by_provider(&self, since: &str) -> Result<Vec<(String, f64)>> {
        self.read(|c| {
            let mut st = c.prepare("SELECT provider, sum(cost_usd) FROM usage_events WHERE created_at >= ?1 GROUP BY provider")?;
            let rows = st.query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Whether an audit row with `action` and detail.provider exists since `since`.
    pub fn has_event_since(&self, action: &str, provider: &str, since: &str) -> Result<bool> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT 1 FROM audit_logs WHERE action = ?1 AND json_extract(detail, '$.provider') = ?2 AND created_at >= ?3 LIMIT 1",
                params![action, provider, since],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
        })
    }
}
