//! One server per SQLite database. A second `serve` on the same file would work for writes but
//! not for wake-ups: long-polls and live streams are woken by the process that committed, so a
//! decision made on one server would not wake a client waiting on the other, and a stream
//! client following one would miss the other's events. The lock is an advisory `flock` on a
//! file beside the database, released when the server stops or dies; the CLI does not take it
//! and may run beside a server.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The lock file of the database at `db`.
fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".server-lock");
    PathBuf::from(name)
}

/// Takes the server lock of the SQLite database at `db`, or says who to stop.
pub fn lock(db: &Path) -> anyhow::Result<File> {
    let path = lock_path(db);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the server lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(anyhow::anyhow!(
            "another hitlhook server is using {} (it holds {}): SQLite serves one server at a \
             time, since waiting clients are woken by the server that recorded the decision. \
             Stop the other server, give this one its own --data-dir, or use PostgreSQL \
             (DATABASE_URL=postgres://...) to run several nodes. The CLI may run beside a server.",
            db.display(),
            path.display()
        )),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_server_on_one_database_is_refused_until_the_first_stops() {
        let dir = std::env::temp_dir().join(format!("hitlhook-lock-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let db = dir.join("hitlhook.db");
        let first = lock(&db).expect("first");
        let error = lock(&db).expect_err("second").to_string();
        assert!(
            error.contains("another hitlhook server") && error.contains("PostgreSQL"),
            "{error}"
        );
        drop(first);
        lock(&db).expect("free again once the first stops");
        let _ = std::fs::remove_dir_all(dir);
    }
}
