//! CrewAI AMP in SQL: sources, the resume metadata saved beside each AMP checkpoint (in the
//! checkpoint's own transaction), the executions hitlhook resumes, and the planning of the
//! resume delivery when an AMP checkpoint is decided (in the decision's transaction).

use hitlhook_domain::amp::{AuthMode, EmitMap, KickoffHooks, Origin, OriginKind, resume};
use hitlhook_domain::{Checkpoint, CheckpointStatus, NewDelivery, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};

use crate::model::{AmpExecution, AmpSource};
use crate::{StoreError, StoreResult};

const SOURCE_COLUMNS: &str = "name, auth, token_hash, basic_username, password_hash, \
    signing_secret, url_token, deployment_url, deployment_token, emit_map, created_at";

const EXECUTION_COLUMNS: &str =
    "kickoff_id, source, hooks, remote_status, remote_detail, created_at, updated_at";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn source(row: &AnyRow) -> StoreResult<AmpSource> {
    let auth: String = row.try_get("auth")?;
    let emit_map: String = row.try_get("emit_map")?;
    Ok(AmpSource {
        name: row.try_get("name")?,
        auth: AuthMode::parse(&auth).ok_or_else(|| corrupt("amp source auth", &auth))?,
        token_hash: row.try_get("token_hash")?,
        basic_username: row.try_get("basic_username")?,
        password_hash: row.try_get("password_hash")?,
        signing_secret: row.try_get("signing_secret")?,
        url_token: row.try_get("url_token")?,
        deployment_url: row.try_get("deployment_url")?,
        deployment_token: row.try_get("deployment_token")?,
        emit_map: serde_json::from_str(&emit_map).map_err(|e| corrupt("amp emit_map", e))?,
        created_at: Timestamp(row.try_get::<i64, _>("created_at")?),
    })
}

fn execution(row: &AnyRow) -> StoreResult<AmpExecution> {
    let hooks: String = row.try_get("hooks")?;
    Ok(AmpExecution {
        kickoff_id: row.try_get("kickoff_id")?,
        source: row.try_get("source")?,
        hooks: serde_json::from_str(&hooks).map_err(|e| corrupt("amp hooks", e))?,
        remote_status: row.try_get("remote_status")?,
        remote_detail: row.try_get("remote_detail")?,
        created_at: Timestamp(row.try_get::<i64, _>("created_at")?),
        updated_at: Timestamp(row.try_get::<i64, _>("updated_at")?),
    })
}

pub(crate) async fn create_source(pool: &AnyPool, s: AmpSource) -> StoreResult<AmpSource> {
    let emit_map = serde_json::to_string(&s.emit_map).map_err(|e| corrupt("amp emit_map", e))?;
    sqlx::query(
        "insert into amp_sources (name, auth, token_hash, basic_username, password_hash, signing_secret, \
         url_token, deployment_url, deployment_token, emit_map, created_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&s.name)
    .bind(s.auth.as_str())
    .bind(s.token_hash.as_deref())
    .bind(s.basic_username.as_deref())
    .bind(s.password_hash.as_deref())
    .bind(s.signing_secret.as_deref())
    .bind(&s.url_token)
    .bind(s.deployment_url.as_deref())
    .bind(s.deployment_token.as_deref())
    .bind(&emit_map)
    .bind(s.created_at.millis())
    .execute(pool)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Duplicate("an AMP source with this name exists")
        }
        other => other.into(),
    })?;
    Ok(s)
}

pub(crate) async fn get_source(
    c: &mut AnyConnection,
    name: &str,
) -> StoreResult<Option<AmpSource>> {
    let sql = format!("select {SOURCE_COLUMNS} from amp_sources where name = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(name)
        .fetch_optional(&mut *c)
        .await?;
    row.as_ref().map(source).transpose()
}

pub(crate) async fn list_sources(pool: &AnyPool) -> StoreResult<Vec<AmpSource>> {
    let sql = format!("select {SOURCE_COLUMNS} from amp_sources order by name");
    let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(pool).await?;
    rows.iter().map(source).collect()
}

/// Deletes a source. Its checkpoints keep their origin: a decision on one then dead-letters
/// (revivable once a source of that name exists again).
pub(crate) async fn remove_source(pool: &AnyPool, name: &str) -> StoreResult<bool> {
    let done = sqlx::query("delete from amp_sources where name = $1")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Saves where a new checkpoint came from, in the transaction that creates it.
pub(crate) async fn save_origin(
    c: &mut AnyConnection,
    checkpoint_id: &str,
    origin: &Origin,
    now: Timestamp,
) -> StoreResult<()> {
    let json = serde_json::to_string(origin).map_err(|e| corrupt("amp origin", e))?;
    sqlx::query(
        "insert into amp_checkpoints (checkpoint_id, source, origin, created_at) values ($1, $2, $3, $4)",
    )
    .bind(checkpoint_id)
    .bind(&origin.source)
    .bind(&json)
    .bind(now.millis())
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Points a pending flow checkpoint's answer at an escalation's `callback_url` (its token may be
/// new). Crew origins and unchanged URLs are left alone.
pub(crate) async fn replace_flow_callback(
    c: &mut AnyConnection,
    checkpoint_id: &str,
    callback_url: &str,
) -> StoreResult<()> {
    let Some(mut origin) = load_origin(c, checkpoint_id).await? else {
        return Ok(());
    };
    if origin.kind != OriginKind::Flow || origin.callback_url.as_deref() == Some(callback_url) {
        return Ok(());
    }
    origin.callback_url = Some(callback_url.to_owned());
    let json = serde_json::to_string(&origin).map_err(|e| corrupt("amp origin", e))?;
    sqlx::query("update amp_checkpoints set origin = $1 where checkpoint_id = $2")
        .bind(&json)
        .bind(checkpoint_id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub(crate) async fn load_origin(
    c: &mut AnyConnection,
    checkpoint_id: &str,
) -> StoreResult<Option<Origin>> {
    let json: Option<String> =
        sqlx::query_scalar("select origin from amp_checkpoints where checkpoint_id = $1")
            .bind(checkpoint_id)
            .fetch_optional(&mut *c)
            .await?;
    json.map(|j| serde_json::from_str(&j).map_err(|e| corrupt("amp origin", e)))
        .transpose()
}

pub(crate) async fn get_execution(
    c: &mut AnyConnection,
    kickoff_id: &str,
) -> StoreResult<Option<AmpExecution>> {
    let sql = format!("select {EXECUTION_COLUMNS} from amp_executions where kickoff_id = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(kickoff_id)
        .fetch_optional(&mut *c)
        .await?;
    row.as_ref().map(execution).transpose()
}

pub(crate) async fn list_executions(
    pool: &AnyPool,
    status: &str,
    updated_before: Timestamp,
    limit: i64,
) -> StoreResult<Vec<AmpExecution>> {
    let sql = format!(
        "select {EXECUTION_COLUMNS} from amp_executions where remote_status = $1 and updated_at < $2 \
         order by updated_at limit $3"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(status)
        .bind(updated_before.millis())
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(execution).collect()
}

/// Inserts or replaces an execution's source and webhook URLs (a kickoff), or its last remote
/// status (a reconcile).
pub(crate) async fn save_execution(pool: &AnyPool, ex: &AmpExecution) -> StoreResult<()> {
    let hooks = serde_json::to_string(&ex.hooks).map_err(|e| corrupt("amp hooks", e))?;
    sqlx::query(
        "insert into amp_executions (kickoff_id, source, hooks, remote_status, remote_detail, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7) on conflict (kickoff_id) do update set \
         source = excluded.source, hooks = excluded.hooks, remote_status = excluded.remote_status, \
         remote_detail = excluded.remote_detail, updated_at = excluded.updated_at",
    )
    .bind(&ex.kickoff_id)
    .bind(&ex.source)
    .bind(&hooks)
    .bind(ex.remote_status.as_deref())
    .bind(ex.remote_detail.as_deref())
    .bind(ex.created_at.millis())
    .bind(ex.updated_at.millis())
    .execute(pool)
    .await?;
    Ok(())
}

/// The delivery that sends a decided AMP checkpoint's decision back to AMP, if it is one.
pub(crate) async fn resume_delivery(
    c: &mut AnyConnection,
    checkpoint: &Checkpoint,
) -> StoreResult<Option<NewDelivery>> {
    let Some(decision) = checkpoint
        .decision
        .as_ref()
        .filter(|_| checkpoint.status == CheckpointStatus::Decided)
    else {
        return Ok(None);
    };
    let Some(origin) = load_origin(c, &checkpoint.id).await? else {
        return Ok(None);
    };
    let emit_map = get_source(c, &origin.source)
        .await?
        .map(|s| s.emit_map)
        .unwrap_or_else(EmitMap::default);
    let hooks = match &origin.execution_id {
        Some(kickoff) => get_execution(c, kickoff)
            .await?
            .map(|ex| ex.hooks)
            .unwrap_or_default(),
        None => KickoffHooks::default(),
    };
    Ok(resume::plan(
        &origin,
        &hooks,
        &emit_map,
        &checkpoint.id,
        decision,
    ))
}
