//! Opening PostgreSQL: a server that is not there, or a database that does not exist, is said at
//! once with what to check, not after the pool's 30 s timeout as "pool timed out".

use std::time::{Duration, Instant};

use hitlhook_store::testing::TestDb;
use hitlhook_store::*;

#[tokio::test]
async fn an_unreachable_postgres_is_said_at_once_with_what_to_check() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let started = Instant::now();
    let Err(error) = SqlStore::open(&format!("postgres://postgres:pw@127.0.0.1:{port}/test")).await
    else {
        panic!("opened a database nobody serves");
    };
    assert!(started.elapsed() < Duration::from_secs(5), "said at once");
    let message = error.to_string();
    assert!(matches!(error, StoreError::Unreachable { .. }), "{error:?}");
    assert!(message.contains("is PostgreSQL running"), "{message}");
    assert!(
        !message.contains(":pw@"),
        "the password is not shown: {message}"
    );
}

#[tokio::test]
async fn a_missing_postgres_database_says_to_create_it() {
    // Only to learn whether PostgreSQL is here (skips loudly, or fails under CI, when not).
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (base, _) = db.url.rsplit_once('/').expect("a database in the URL");
    let missing = format!("{base}/hitlhook_no_such_database");
    let Err(error) = SqlStore::open(&missing).await else {
        panic!("opened a database that does not exist");
    };
    let message = error.to_string();
    assert!(
        message.contains("does not exist") && message.contains("createdb"),
        "{message}"
    );
    assert_eq!(
        message.matches("does not exist").count(),
        1,
        "said once: {message}"
    );
}
