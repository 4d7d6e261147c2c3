//! The listing queries (keyset pages, newest or oldest first) for checkpoints, executions and
//! events, and the dynamic-query helpers they share with the outbox's listing.

use hitlhook_domain::{Checkpoint, Execution};
use sqlx::{AnyPool, AssertSqlSafe};

use crate::StoreResult;
use crate::model::*;
use crate::rows::{self, CHECKPOINT_COLUMNS, EVENT_COLUMNS, EXECUTION_COLUMNS};

/// A bound parameter of a dynamically built query.
pub(crate) enum Param {
    Int(i64),
    Text(String),
    OptInt(Option<i64>),
    OptText(Option<String>),
}

pub(crate) async fn fetch_dynamic(
    pool: &AnyPool,
    sql: String,
    params: Vec<Param>,
) -> StoreResult<Vec<sqlx::any::AnyRow>> {
    let query = bind_all(sqlx::query(AssertSqlSafe(sql)), params);
    Ok(query.fetch_all(pool).await?)
}

/// Binds `params` to `query` in order (`$1`, `$2`, ...).
pub(crate) fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    params: Vec<Param>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for p in params {
        query = match p {
            Param::Int(v) => query.bind(v),
            Param::Text(v) => query.bind(v),
            Param::OptInt(v) => query.bind(v),
            Param::OptText(v) => query.bind(v),
        };
    }
    query
}

pub(crate) fn clamp_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, 1000))
}

/// Splits a fetched `limit + 1` rows into a page and the next cursor.
pub(crate) fn page<T>(mut items: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> i64) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(&cursor_of)
    } else {
        None
    };
    Page { items, next_cursor }
}

pub(crate) async fn list_checkpoints(
    pool: &AnyPool,
    q: &CheckpointQuery,
) -> StoreResult<Page<Checkpoint>> {
    let mut sql = format!("select {CHECKPOINT_COLUMNS} from checkpoints where 1 = 1");
    let mut params = Vec::new();
    if let Some(status) = q.status {
        params.push(Param::Text(status.as_str().to_owned()));
        sql += &format!(" and status = ${}", params.len());
    }
    if let Some(kickoff) = &q.kickoff_id {
        params.push(Param::Text(kickoff.clone()));
        sql += &format!(" and kickoff_id = ${}", params.len());
    }
    let (cmp, dir) = match q.order {
        Order::NewestFirst => ("<", "desc"),
        Order::OldestFirst => (">", "asc"),
    };
    if let Some(cursor) = q.cursor {
        params.push(Param::Int(cursor));
        sql += &format!(" and created_seq {cmp} ${}", params.len());
    }
    let limit = clamp_limit(q.limit);
    params.push(Param::Int(limit + 1));
    sql += &format!(" order by created_seq {dir} limit ${}", params.len());
    let rows = fetch_dynamic(pool, sql, params).await?;
    let items = rows
        .iter()
        .map(rows::checkpoint)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(page(items, limit, |cp| cp.created_seq))
}

pub(crate) async fn list_executions(
    pool: &AnyPool,
    q: &ExecutionQuery,
) -> StoreResult<Page<Execution>> {
    let mut sql = format!("select {EXECUTION_COLUMNS}, created_seq from executions where 1 = 1");
    let mut params = Vec::new();
    if let Some(status) = q.status {
        params.push(Param::Text(status.as_str().to_owned()));
        sql += &format!(" and status = ${}", params.len());
    }
    if let Some(cursor) = q.cursor {
        params.push(Param::Int(cursor));
        sql += &format!(" and created_seq < ${}", params.len());
    }
    let limit = clamp_limit(q.limit);
    params.push(Param::Int(limit + 1));
    sql += &format!(" order by created_seq desc limit ${}", params.len());
    let rows = fetch_dynamic(pool, sql, params).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push((
            rows::execution(row)?,
            sqlx::Row::try_get::<i64, _>(row, "created_seq")?,
        ));
    }
    let page = page(items, limit, |(_, seq)| *seq);
    Ok(Page {
        items: page.items.into_iter().map(|(ex, _)| ex).collect(),
        next_cursor: page.next_cursor,
    })
}

pub(crate) async fn list_events(pool: &AnyPool, q: &EventQuery) -> StoreResult<Page<StoredEvent>> {
    let mut sql = format!("select {EVENT_COLUMNS} from events where 1 = 1");
    let mut params = Vec::new();
    if let Some(kickoff) = &q.kickoff_id {
        params.push(Param::Text(kickoff.clone()));
        sql += &format!(" and kickoff_id = ${}", params.len());
    }
    if let Some(checkpoint) = &q.checkpoint_id {
        params.push(Param::Text(checkpoint.clone()));
        sql += &format!(" and checkpoint_id = ${}", params.len());
    }
    let (cmp, dir) = match q.order {
        Order::OldestFirst => (">", "asc"),
        Order::NewestFirst => ("<", "desc"),
    };
    if let Some(cursor) = q.cursor {
        params.push(Param::Int(cursor));
        sql += &format!(" and seq {cmp} ${}", params.len());
    }
    let limit = clamp_limit(q.limit);
    params.push(Param::Int(limit + 1));
    sql += &format!(" order by seq {dir} limit ${}", params.len());
    let rows = fetch_dynamic(pool, sql, params).await?;
    let items = rows
        .iter()
        .map(rows::event)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(page(items, limit, |e| e.seq))
}
