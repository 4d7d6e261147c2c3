//! Where a SQLite database lives and how hitlhook's connections to it are set up: the URL
//! (percent-encoding, the directory to create), the per-connection pragmas, and the check at
//! open that the database can actually be written.

use std::path::Path;
use std::str::FromStr;

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor};

use crate::{StoreError, StoreResult};

/// Per-connection SQLite settings. WAL lets readers run beside the single writer;
/// `synchronous=FULL` makes every commit durable before the HTTP 2xx is sent.
///
/// The WAL is checkpointed into the database every 32,000 pages (up to 128 MiB of WAL) instead
/// of SQLite's 1,000: each checkpoint copies a page once however often it changed since the
/// last, and under ingest the same index and execution pages change in almost every commit.
/// Measured (20 s at 32 connections, paired): 1.20-1.29 x the events/s of 1,000 and half its
/// p99; 16,000 gave 1.14-1.23 x. The same on every connection, so a decision's commit does
/// not checkpoint a WAL the ingest thread lets grow.
pub(crate) const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
    PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
    PRAGMA wal_autocheckpoint = 32000;";

/// The writer keeps more of the database in its page cache than SQLite's 2 MiB default: every
/// event touches a few pages of the unique-key indexes at random places, and re-reading them
/// from the OS page cache was a visible part of the write path. The cache fills only as used.
pub(crate) const SQLITE_WRITER_PRAGMAS: &str = "PRAGMA cache_size = -65536;";

/// The ingest thread's cache is smaller (16 MiB still holds the hot index leaves of a thousand
/// busy executions): after a B-tree split SQLite scans its whole page-cache hash table at
/// commit (the split renumbers pages through a temporary page number beyond the file's end),
/// and that scan grows with the pages cached. Measured at 32 connections: about 3 % less CPU
/// per event than with the writer's 64 MiB.
///
/// `synchronous=NORMAL` (after `SQLITE_PRAGMAS`' FULL): its commits do not wait for the disk
/// themselves; the ingest thread's sync thread syncs the WAL after each commit and before any
/// caller is answered (see `sqlite_ingest`), so nothing acknowledged is less durable.
pub(crate) const SQLITE_INGEST_PRAGMAS: &str =
    "PRAGMA cache_size = -16384; PRAGMA synchronous = NORMAL;";

/// Creates `dir` (and missing parents) readable by its owner only: the database holds
/// subscriber signing secrets and the audit trail, and SQLite creates its files with the
/// process umask (often world-readable). An existing directory is left as the operator made it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The SQLite URL of the database file `path`, with what a URL would read otherwise (`%`, `?`,
/// `#`) percent-encoded: a data directory may be named anything.
#[must_use]
pub fn sqlite_file_url(path: &Path) -> String {
    const SPECIAL: &percent_encoding::AsciiSet =
        &percent_encoding::CONTROLS.add(b'%').add(b'?').add(b'#');
    let text = path.to_string_lossy();
    format!(
        "sqlite://{}",
        percent_encoding::utf8_percent_encode(&text, SPECIAL)
    )
}

/// Normalises a SQLite URL: creates the parent directory and asks sqlx to create the file.
pub(crate) fn sqlite_url(url: &str) -> StoreResult<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    if path == ":memory:" {
        // Each of the store's connections would get a database of its own.
        return Err(StoreError::InMemory);
    }
    let decoded = decoded_path(path);
    if let Some(parent) = Path::new(&decoded)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        create_private_dir(parent)
            .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", parent.display())))?;
    }
    let query = if query.contains("mode=") {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// The database file a `sqlite:` URL names (as sqlx opens it), or `None` for other URLs.
#[must_use]
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    (!path.is_empty() && path != ":memory:").then(|| decoded_path(path).into())
}

/// The file a URL's path names: sqlx percent-decodes it (so a file name may hold `?` or `#`).
fn decoded_path(url_path: &str) -> String {
    percent_encoding::percent_decode_str(url_path)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether a normalised SQLite URL (`sqlite_url`) opens the database read-write with no other
/// option: where the ingest thread's own connection can write the same database the same way.
pub(crate) fn opens_read_write(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .all(|option| option == "mode=rwc" || option == "mode=rw")
}

/// Opens one connection before the pools do and checks that it can write. The pools retry a
/// failing open until their 30 s acquire timeout and then say only "pool timed out"; this says
/// why at once. A database SQLite can only read (read-only file system, directory or file, or
/// `mode=ro` in the URL) is refused here: otherwise the server starts and every write is a 500.
pub(crate) async fn preflight(url: &str) -> StoreResult<()> {
    let options = AnyConnectOptions::from_str(url)?;
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    let path = decoded_path(path.split_once('?').map_or(path, |(p, _)| p));
    let classify = |e: sqlx::Error| {
        // SQLITE_READONLY (8) and SQLITE_CANTOPEN (14), with any extended code.
        let code = match &e {
            sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i32>().ok()),
            _ => None,
        };
        match code.map(|c| c & 0xff) {
            Some(8 | 14) => StoreError::NotWritable {
                path: path.clone(),
                cause: e.to_string(),
            },
            _ => StoreError::Backend(e),
        }
    };
    let mut conn = AnyConnection::connect_with(&options)
        .await
        .map_err(classify)?;
    conn.execute(SQLITE_PRAGMAS).await.map_err(classify)?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut conn)
        .await?;
    // Writing the header's own value back is a real write, rolled back at once.
    let mut tx = Connection::begin_with(&mut conn, "BEGIN IMMEDIATE")
        .await
        .map_err(classify)?;
    let probe = tx
        .execute(AssertSqlSafe(format!("PRAGMA user_version = {version}")))
        .await;
    tx.rollback().await?;
    probe.map_err(classify)?;
    conn.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_are_normalised() {
        let dir = std::env::temp_dir().join(format!("hh-{}", uuid::Uuid::new_v4()));
        let abs = format!("sqlite://{}/a.db", dir.display());
        assert_eq!(
            sqlite_url(&abs).expect("ok"),
            format!("sqlite://{}/a.db?mode=rwc", dir.display())
        );
        assert!(dir.exists());
        assert_eq!(
            sqlite_url("sqlite:x.db").expect("ok"),
            "sqlite://x.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite:x.db?mode=ro").expect("ok"),
            "sqlite://x.db?mode=ro"
        );
        assert!(sqlite_url("sqlite:").is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
