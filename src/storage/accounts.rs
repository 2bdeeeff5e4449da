//! Users, personal API tokens and revoked JWT ids. Every change that is a security event
//! takes its `AuditEvent` and commits it in the same transaction.

use super::audit::insert_event;
use super::{Result, Storage, StorageError, now_rfc3339};
use crate::model::{ApiToken, AuditEvent, Role, User};
use rusqlite::{OptionalExtension, Row, params};

/// A user with the password hash, for login only; never leaves the domain services.
pub struct UserWithHash {
    pub user: User,
    pub password_hash: String,
}

/// A personal token found by its hash, with its owner.
pub struct TokenOwner {
    pub token_id: String,
    pub last_used_at: Option<String>,
    pub user: User,
}

/// The columns `user_row` reads, in its order (a macro, so every query is one literal
/// built at compile time: `user_for_jwt` runs on every authenticated request).
macro_rules! user_cols {
    () => {
        "id, email, name, role, created_at"
    };
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(3)?;
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        name: r.get(2)?,
        role: Role::parse(&role).unwrap_or(Role::User),
        created_at: r.get(4)?,
    })
}

fn token_row(r: &Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        created_at: r.get(3)?,
        last_used_at: r.get(4)?,
    })
}

impl Storage {
    /// Inserts a user; `Conflict` when the (normalised) email is taken.
    pub fn create_user(
        &self,
        email: &str,
        name: Option<&str>,
        password_hash: &str,
        role: Role,
        audit: &AuditEvent,
    ) -> Result<User> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_rfc3339();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO users (id, email, name, password_hash, role, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![id, email, name, password_hash, role.as_str(), now],
            )?;
            let mut audit = audit.clone();
            audit.actor.user_id.get_or_insert(id.clone());
            insert_event(tx, &audit)?;
            Ok(User {
                id: id.clone(),
                email: email.to_string(),
                name: name.map(String::from),
                role,
                created_at: now.clone(),
            })
        })
    }

    pub fn user_by_email(&self, email: &str) -> Result<Option<UserWithHash>> {
        self.read(|c| {
            Ok(c.query_row(
                concat!(
                    "SELECT ",
                    user_cols!(),
                    ", password_hash FROM users WHERE email = ?1"
                ),
                [email],
                |r| {
                    Ok(UserWithHash {
                        user: user_row(r)?,
                        password_hash: r.get(5)?,
                    })
                },
            )
            .optional()?)
        })
    }

    /// The user behind a login token, unless the token's id is revoked: one read for the
    /// whole check (this runs on every authenticated request).
    pub fn user_for_jwt(&self, user_id: &str, jti: &str) -> Result<Option<User>> {
        self.read(|c| {
            Ok(c.prepare_cached(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users
                 WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?2)"
            ))?
            .query_row([user_id, jti], user_row)
            .optional()?)
        })
    }

    /// Users in creation order, `limit` at a time after the `after` id cursor.
    pub fn list_users(&self, after: Option<&str>, limit: u32) -> Result<Vec<User>> {
        self.read(|c| {
            let mut st = c.prepare(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users
                 WHERE (?1 IS NULL OR (created_at, id) > (SELECT created_at, id FROM users WHERE id = ?1))
                 ORDER BY created_at, id LIMIT ?2"
            ))?;
            let rows = st.query_map(params![after, limit], user_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Changes a role. Refuses (Conflict) to demote the last admin.
    pub fn set_role(&self, id: &str, role: Role, audit: &AuditEvent) -> Result<User> {
        self.write(|tx| {
            let user = tx
                .query_row(
                    concat!("SELECT ", user_cols!(), " FROM users WHERE id = ?1"),
                    [id],
                    user_row,
                )
                .optional()?
                .ok_or(StorageError::NotFound)?;
            if user.role == Role::Admin && role == Role::User && admin_count(tx)? <= 1 {
                return Err(StorageError::Conflict(
                    "the last admin cannot be demoted".into(),
                ));
            }
            tx.execute(
                "UPDATE users SET role = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, role.as_str(), now_rfc3339()],
            )?;
            insert_event(tx, audit)?;
            Ok(User { role, ..user })
        })
    }

    /// Deletes a user and (by cascade) everything they own. Refuses to delete the last admin.
    pub fn delete_user(&self, id: &str, audit: &AuditEvent) -> Result<()> {
        self.write(|tx| {
            let role: Option<String> = tx
                .query_row("SELECT role FROM users WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            match role.as_deref() {
                None => return Err(StorageError::NotFound),
                Some("admin") if admin_count(tx)? <= 1 => {
                    return Err(StorageError::Conflict(
                        "the last admin cannot be deleted".into(),
                    ));
                }
                _ => {}
            }
            tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
            insert_event(tx, audit)?;
            Ok(())
        })
    }

    /// Stores a personal token by its hash.
    pub fn create_api_token(
        &self,
        user_id: &str,
        name: &str,
        token_hash: &str,
        prefix: &str,
        audit: &AuditEvent,
    ) -> Result<ApiToken> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_rfc3339();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO api_tokens (id, user_id, name, token_hash, prefix, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, user_id, name, token_hash, prefix, now],
            )?;
            let mut audit = audit.clone();
            audit.detail = Some(serde_json::json!({ "target": id, "name": name }));
            insert_event(tx, &audit)?;
            Ok(ApiToken {
                id: id.clone(),
                name: name.to_string(),
                prefix: prefix.to_string(),
                created_at: now.clone(),
                last_used_at: None,
            })
        })
    }

    /// The caller's live tokens, newest first.
    pub fn list_api_tokens(&self, user_id: &str) -> Result<Vec<ApiToken>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, name, prefix, created_at, last_used_at FROM api_tokens
                 WHERE user_id = ?1 AND revoked_at IS NULL ORDER BY created_at DESC, id DESC",
            )?;
            let rows = st.query_map([user_id], token_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Revokes the owner's token; `NotFound` for anyone else's (ids cannot be probed).
    pub fn revoke_api_token(
        &self,
        user_id: &str,
        token_id: &str,
        audit: &AuditEvent,
    ) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE api_tokens SET revoked_at = ?3
                 WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL",
                params![token_id, user_id, now_rfc3339()],
            )?;
            if n == 0 {
                return Err(StorageError::NotFound);
            }
            insert_event(tx, audit)?;
            Ok(())
        })
    }

    /// The live token with this hash and its owner.
    pub fn token_owner(&self, token_hash: &str) -> Result<Option<TokenOwner>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT t.id, u.id, u.email, u.name, u.role, u.created_at, t.last_used_at
                 FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.token_hash = ?1 AND t.revoked_at IS NULL",
            )?
            .query_row([token_hash], |r| {
                let role: String = r.get(4)?;
                Ok(TokenOwner {
                    token_id: r.get(0)?,
                    last_used_at: r.get(6)?,
                    user: User {
                        id: r.get(1)?,
                        email: r.get(2)?,
                        name: r.get(3)?,
                        role: Role::parse(&role).unwrap_or(Role::User),
                        created_at: r.get(5)?,
                    },
                })
            })
            .optional()?)
        })
    }

    /// Records when a personal token was last used.
    pub fn touch_api_token(&self, token_id: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
                params![token_id, now_rfc3339()],
            )?;
            Ok(())
        })
    }

    /// Revokes a JWT id until its expiry; idempotent.
    pub fn revoke_jti(
        &self,
        jti: &str,
        user_id: &str,
        expires_at: &str,
        audit: Option<&AuditEvent>,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO revoked_tokens (jti, user_id, expires_at, revoked_at) VALUES (?1, ?2, ?3, ?4)",
                params![jti, user_id, expires_at, now_rfc3339()],
            )?;
            if let Some(a) = audit {
                insert_event(tx, a)?;
            }
            Ok(())
        })
    }

    pub fn is_jti_revoked(&self, jti: &str) -> Result<bool> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT 1 FROM revoked_tokens WHERE jti = ?1")?
                    .query_row([jti], |_| Ok(()))
                    .optional()?
                    .is_some(),
            )
        })
    }

    /// Deletes revoked ids whose token has expired anyway. Returns how many went.
    pub fn purge_expired_revocations(&self) -> Result<usize> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM revoked_tokens WHERE expires_at < ?1",
                [now_rfc3339()],
            )?)
        })
    }
}

fn admin_count(tx: &rusqlite::Transaction<'_>) -> Result<i64> {
    Ok(
        tx.query_row("SELECT count(*) FROM users WHERE role = 'admin'", [], |r| {
            r.get(0)
        })?,
    )
}
