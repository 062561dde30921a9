//! The web console's users and sign-in sessions (migration 0014).
//!
//! A user's role and apps mean what an API token's do, so the console reuses
//! [`crate::auth::Claims`] for every access check. A session row is keyed by the SHA-256 of the
//! cookie's random token: the database never holds a value a browser could present.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Error, Result, Store, WriteTx};
use crate::auth::Role;

/// A console user as stored (the hash is a PHC string, never the password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleUser {
    /// Sign-in name; also the subject of the audit log (`console:<name>`).
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// What the user may do.
    pub role: Role,
    /// Apps (namespaces) the user sees; admins see every app whatever this says.
    pub apps: Vec<String>,
    /// When the user was added (epoch ms).
    pub created_at: i64,
    /// When the password, role or apps last changed (epoch ms).
    pub updated_at: i64,
}

/// A live session joined with its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 (hex) of the cookie's token.
    pub id_hash: String,
    /// The synchronizer token every form of this session carries.
    pub csrf: String,
    /// When it was created (epoch ms).
    pub created_at: i64,
    /// When it ends (epoch ms).
    pub expires_at: i64,
    /// Whose it is, as stored now (a role changed since sign-in applies at once).
    pub user: ConsoleUser,
}

const USER_COLUMNS: &str = "u.name, u.password_hash, u.role, u.apps, u.created_at, u.updated_at";

fn user_row(r: &AnyRow) -> Result<ConsoleUser> {
    let role: String = r.try_get("role")?;
    let apps: String = r.try_get("apps")?;
    Ok(ConsoleUser {
        name: r.try_get("name")?,
        password_hash: r.try_get("password_hash")?,
        role: role
            .parse()
            .map_err(|e: crate::auth::Error| Error::Corrupt {
                column: "role",
                message: e.to_string(),
            })?,
        apps: serde_json::from_str(&apps).map_err(|e| Error::Corrupt {
            column: "apps",
            message: e.to_string(),
        })?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Store {
    /// One user by name.
    pub async fn console_user(&self, name: &str) -> Result<Option<ConsoleUser>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM console_users u WHERE u.name = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_row)
            .transpose()
    }

    /// Every user, by name.
    pub async fn console_users(&self) -> Result<Vec<ConsoleUser>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM console_users u ORDER BY u.name");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_row)
            .collect()
    }

    /// The session whose token hashes to `id_hash`, if it has not expired at `now`.
    pub async fn console_session(&self, id_hash: &str, now: i64) -> Result<Option<ConsoleSession>> {
        let sql = format!(
            "SELECT s.id_hash, s.csrf, s.created_at AS s_created, s.expires_at, {USER_COLUMNS} \
             FROM console_sessions s JOIN console_users u ON u.name = s.user_name \
             WHERE s.id_hash = $1 AND s.expires_at > $2"
        );
        let Some(r) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(ConsoleSession {
            id_hash: r.try_get("id_hash")?,
            csrf: r.try_get("csrf")?,
            created_at: r.try_get("s_created")?,
            expires_at: r.try_get("expires_at")?,
            user: user_row(&r)?,
        }))
    }
}

impl WriteTx {
    /// Adds a user, or replaces the password, role and apps of the one with that name
    /// (keeping `created_at`). Returns true when the user was new.
    pub async fn put_console_user(
        &mut self,
        name: &str,
        password_hash: &str,
        role: Role,
        apps: &[String],
        now: i64,
    ) -> Result<bool> {
        let apps = serde_json::to_string(apps).map_err(|e| Error::Corrupt {
            column: "apps",
            message: e.to_string(),
        })?;
        let updated = sqlx::query(
            "UPDATE console_users SET password_hash = $1, role = $2, apps = $3, updated_at = $4 \
             WHERE name = $5",
        )
        .bind(password_hash)
        .bind(role.as_str())
        .bind(&apps)
        .bind(now)
        .bind(name)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if updated > 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO console_users (name, password_hash, role, apps, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(name)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(&apps)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(true)
    }

    /// Removes a user and, with it, every session of theirs. Returns true when one existed.
    pub async fn remove_console_user(&mut self, name: &str) -> Result<bool> {
        // Sessions first: on PostgreSQL the cascade would do it, but SQLite enforces foreign
        // keys only when the connection says so, and a store opened by another tool may not.
        sqlx::query("DELETE FROM console_sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut *self.tx)
            .await?;
        let n = sqlx::query("DELETE FROM console_users WHERE name = $1")
            .bind(name)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Records a new session.
    pub async fn insert_console_session(
        &mut self,
        id_hash: &str,
        user: &str,
        csrf: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, user_name, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_hash)
        .bind(user)
        .bind(csrf)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Ends one session (sign-out). Returns true when it existed.
    pub async fn end_console_session(&mut self, id_hash: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Ends every session of a user (a password change signs them out everywhere).
    pub async fn end_console_sessions_of(&mut self, user: &str) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM console_sessions WHERE user_name = $1")
                .bind(user)
                .execute(&mut *self.tx)
                .await?
                .rows_affected(),
        )
    }

    /// Forgets sessions that ended before `now`.
    pub async fn prune_console_sessions(&mut self, now: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *self.tx)
                .await?
                .rows_affected(),
        )
    }
}
