//! GitOps holds and the ownership recorded on jobs (migration 0013).
//!
//! A hold pauses Argo CD or Flux for one object while a repair stands. It is a row here so that
//! whichever replica is alive releases it (at expiry, once Git agrees, or by hand), after a
//! restart too; `release` moves a hold only while it is open, so two replicas racing to release
//! the same one record (and announce) it once.

use sqlx::any::AnyRow;
use sqlx::{Arguments, Row};

use super::{Error, Result, Store, WriteTx};
use crate::gitops::{Controller, GitChange, HoldPlacement, Ownership};
use crate::rules::Target;

/// A hold to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewHold {
    /// The job whose repair placed it.
    pub job_id: i64,
    /// The object held.
    pub target: Target,
    /// The paused controller.
    pub controller: Controller,
    /// How it was paused, and what to put back.
    pub placement: HoldPlacement,
    /// The change to make in Git (what lets the hold go early).
    pub change: GitChange,
    /// When it was placed (epoch ms).
    pub created_at: i64,
    /// When it is released whatever Git says (epoch ms).
    pub expires_at: i64,
}

/// A recorded hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Hold {
    /// Row id.
    pub id: i64,
    /// What it was recorded with.
    pub hold: NewHold,
    /// When it was released (epoch ms); `None` while open.
    pub released_at: Option<i64>,
    /// `expiry`, `git` or `api:<who>`.
    pub released_by: Option<String>,
    /// The last failed release attempt, while it stays open.
    pub release_error: Option<String>,
    /// How many release attempts failed.
    pub release_attempts: i64,
}

const COLUMNS: &str = "id, job_id, target_namespace, target_kind, target_name, controller, \
                       placement, change, created_at, expires_at, released_at, released_by, \
                       release_error, release_attempts";

fn json<T: serde::de::DeserializeOwned>(r: &AnyRow, column: &'static str) -> Result<T> {
    let text: String = r.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| Error::Corrupt {
        column,
        message: e.to_string(),
    })
}

fn hold_row(r: &AnyRow) -> Result<Hold> {
    Ok(Hold {
        id: r.try_get("id")?,
        hold: NewHold {
            job_id: r.try_get("job_id")?,
            target: Target {
                namespace: r.try_get("target_namespace")?,
                kind: r.try_get("target_kind")?,
                name: r.try_get("target_name")?,
            },
            controller: json(r, "controller")?,
            placement: json(r, "placement")?,
            change: json(r, "change")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
        },
        released_at: r.try_get("released_at")?,
        released_by: r.try_get("released_by")?,
        release_error: r.try_get("release_error")?,
        release_attempts: r.try_get("release_attempts")?,
    })
}

fn text<T: serde::Serialize>(value: &T) -> String {
    // The gitops types are plain data: serializing them cannot fail.
    serde_json::to_string(value).expect("gitops types serialize")
}

impl Store {
    /// The open hold of `target`, if any (at most one: a unique index).
    pub async fn open_hold(&self, target: &Target) -> Result<Option<Hold>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM gitops_holds WHERE target_namespace = $1 AND target_kind = $2 \
             AND target_name = $3 AND released_at IS NULL"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&target.namespace)
            .bind(&target.kind)
            .bind(&target.name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(hold_row).transpose()
    }

    /// Records a hold just placed and returns its id. Fails on the unique index when the
    /// target already has an open hold: extend that one instead ([`Store::extend_hold`]).
    pub async fn record_hold(&self, h: &NewHold) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO gitops_holds (job_id, target_namespace, target_kind, target_name, \
             controller, placement, change, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(h.job_id)
        .bind(&h.target.namespace)
        .bind(&h.target.kind)
        .bind(&h.target.name)
        .bind(text(&h.controller))
        .bind(text(&h.placement))
        .bind(text(&h.change))
        .bind(h.created_at)
        .bind(h.expires_at)
        .fetch_one(&mut *tx.tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        tx.commit().await?;
        Ok(id)
    }

    /// Pushes an open hold's expiry to `expires_at` (never earlier) and records the change
    /// the newer repair needs. False when the hold is no longer open.
    pub async fn extend_hold(&self, id: i64, expires_at: i64, change: &GitChange) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE gitops_holds SET expires_at = CASE WHEN expires_at > $2 THEN expires_at ELSE $2 END, \
             change = $3 WHERE id = $1 AND released_at IS NULL",
        )
        .bind(id)
        .bind(expires_at)
        .bind(text(change))
        .execute(&mut *tx.tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(done)
    }

    /// Every open hold, soonest expiry first.
    pub async fn open_holds(&self) -> Result<Vec<Hold>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM gitops_holds WHERE released_at IS NULL ORDER BY expires_at, id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(hold_row)
            .collect()
    }

    /// Holds, newest first: open ones, or all when `include_released`; at most `limit`.
    pub async fn holds(&self, include_released: bool, limit: i64) -> Result<Vec<Hold>> {
        self.holds_in(include_released, None, limit).await
    }

    /// [`Store::holds`] of the objects in `namespaces` only (`None`: every app). The filter is
    /// in the query, before the limit, so an app-scoped reader gets up to `limit` of its own
    /// holds however many other apps have.
    pub async fn holds_in(
        &self,
        include_released: bool,
        namespaces: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<Hold>> {
        let mut w = super::listing::Where::new();
        if let Some(ns) = namespaces {
            w.any_of("target_namespace", ns);
        }
        let mut filter = w.sql();
        if !include_released {
            filter.push_str(if filter.is_empty() {
                " WHERE released_at IS NULL"
            } else {
                " AND released_at IS NULL"
            });
        }
        let limit_p = w.next();
        w.args.add(limit).expect("encoding an integer");
        let sql =
            format!("SELECT {COLUMNS} FROM gitops_holds{filter} ORDER BY id DESC LIMIT {limit_p}");
        sqlx::query_with(sqlx::AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(hold_row)
            .collect()
    }

    /// One hold by id.
    pub async fn hold(&self, id: i64) -> Result<Option<Hold>> {
        let sql = format!("SELECT {COLUMNS} FROM gitops_holds WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(hold_row).transpose()
    }

    /// [`WriteTx::claim_hold_release`] in a transaction of its own.
    pub async fn claim_hold_release(&self, id: i64, by: &str, now: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = tx.claim_hold_release(id, by, now).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Records a failed release attempt; the hold stays open and is tried again. Returns the
    /// attempts counted so far, this one included (read in the same statement, so of replicas
    /// failing at once exactly one sees each count), or `None` when the hold is no longer open.
    pub async fn hold_release_failed(&self, id: i64, error: &str) -> Result<Option<i64>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE gitops_holds SET release_error = $2, release_attempts = release_attempts + 1 \
             WHERE id = $1 AND released_at IS NULL RETURNING release_attempts",
        )
        .bind(id)
        .bind(error)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let attempts = row.map(|r| r.try_get("release_attempts")).transpose()?;
        tx.commit().await?;
        Ok(attempts)
    }

    /// Records who owned a job's target when its playbook read it (the first reading stays:
    /// it is what the repair was decided on).
    pub async fn set_job_gitops(&self, job_id: i64, ownership: &Ownership) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE jobs SET gitops = $2 WHERE id = $1 AND gitops IS NULL")
            .bind(job_id)
            .bind(text(ownership))
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The ownership recorded on a job, if any.
    pub async fn job_gitops(&self, job_id: i64) -> Result<Option<Ownership>> {
        let row = sqlx::query("SELECT gitops FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let text: Option<String> = row.try_get("gitops")?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| Error::Corrupt {
                column: "gitops",
                message: e.to_string(),
            })
        })
        .transpose()
    }
}

impl WriteTx {
    /// Claims an open hold for release by `by` at `now` before the cluster is touched: true
    /// for the one caller that moved it. A release by `expiry` re-checks the expiry here, so a
    /// hold a job extended after the caller read it stays open; a hold already released (by
    /// another replica with the same stale list) is never claimed twice.
    pub async fn claim_hold_release(&mut self, id: i64, by: &str, now: i64) -> Result<bool> {
        // Two statements rather than one with `$3 <> 'expiry'`: no parameter is bound twice.
        let expiry = if by == "expiry" {
            " AND expires_at <= $2"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE gitops_holds SET released_at = $2, released_by = $3, release_error = NULL \
             WHERE id = $1 AND released_at IS NULL{expiry}"
        );
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(now)
            .bind(by)
            .execute(&mut *self.tx)
            .await?
            .rows_affected()
            == 1)
    }

    /// Undoes a claim whose cluster release failed, recording the failure: the hold is open
    /// again and retried. When another hold on the same target was opened meanwhile (the
    /// unique open-hold index allows one), this one stays released with the failure recorded
    /// on it. Returns the attempts counted so far and whether the hold was reopened.
    pub async fn unclaim_hold_release(&mut self, id: i64, error: &str) -> Result<(i64, bool)> {
        let reopened = sqlx::query(
            "UPDATE gitops_holds SET released_at = NULL, released_by = NULL, release_error = $2, \
             release_attempts = release_attempts + 1 WHERE id = $1 AND NOT EXISTS (\
             SELECT 1 FROM gitops_holds o WHERE o.released_at IS NULL AND o.id <> $1 \
             AND o.target_namespace = gitops_holds.target_namespace \
             AND o.target_kind = gitops_holds.target_kind \
             AND o.target_name = gitops_holds.target_name) RETURNING release_attempts",
        )
        .bind(id)
        .bind(error)
        .fetch_optional(&mut *self.tx)
        .await?;
        if let Some(row) = reopened {
            return Ok((row.try_get("release_attempts")?, true));
        }
        let row = sqlx::query(
            "UPDATE gitops_holds SET release_error = $2, release_attempts = release_attempts + 1 \
             WHERE id = $1 RETURNING release_attempts",
        )
        .bind(id)
        .bind(error)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok((row.try_get("release_attempts")?, false))
    }
}
