//! Every acknowledged event survives a crash: the real binary is killed with SIGKILL while
//! clients are sending, restarted on the same database, and every event that got a 2xx is
//! there. Runs on SQLite and, when reachable, PostgreSQL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hitlhook_domain::Timestamp;
use hitlhook_server::config::Secret;
use hitlhook_server::security::signature::sign_headers;
use hitlhook_store::testing::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_hitlhook");
const SECRET: &str = "durability-secret";
const KEY: &str = "durability-key";

fn start(db: &TestDb, data_dir: &std::path::Path, bind: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--bind", bind, "--data-dir"])
        .arg(data_dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("WEBHOOK_SECRET", SECRET)
        .env("WEBHOOK_API_KEY", KEY)
        .current_dir(data_dir.parent().unwrap_or(data_dir))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let stdout = child.stdout.take().expect("stdout");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("listening on "))
        .expect("listening line");
    (child, line.trim_start_matches("listening on ").to_owned())
}

async fn kill_under_load_and_recover(db: TestDb) {
    let data_dir = std::env::temp_dir().join(format!("hitlhook-kill-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&data_dir).expect("dir");
    let (mut server, base) = start(&db, &data_dir, "127.0.0.1:0");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    // reqwest is built without a TLS provider of its own: the server installs ring (as sqlx).
    hitlhook_server::delivery::http::install_crypto();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let stop_at = Instant::now() + Duration::from_secs(3);
    let senders: Vec<_> = (0..16)
        .map(|worker| {
            let (client, base, acked) = (client.clone(), base.clone(), Arc::clone(&acked));
            tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < stop_at {
                    n += 1;
                    let id = format!("kill-{worker}-{n}");
                    let body = format!(
                        r#"{{"event_type":"checkpoint.required","checkpoint_id":"{id}","checkpoint_name":"n","kickoff_id":"k-{worker}","context":{{}}}}"#
                    );
                    let mut request = client.post(format!("{base}/webhook/crewai")).header("content-type", "application/json");
                    for (k, v) in sign_headers(&Secret(SECRET.into()), body.as_bytes(), &format!("msg_{id}"), Timestamp::now().unix_seconds()) {
                        request = request.header(k, v);
                    }
                    match request.body(body).send().await {
                        Ok(r) if r.status().is_success() => acked.lock().expect("lock").push(id),
                        Ok(_) => {}
                        // The server is gone: this request may or may not have been stored.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
    for s in senders {
        s.await.expect("sender");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 50,
        "the load really ran ({} acknowledged)",
        acked.len()
    );

    let bind = base.trim_start_matches("http://").to_owned();
    let (mut again, base) = start(&db, &data_dir, &bind);
    let mut missing = Vec::new();
    for id in &acked {
        let r = client
            .get(format!("{base}/webhook/checkpoint/{id}"))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("get");
        if r.status() != 200 {
            missing.push(id.clone());
        }
    }
    let _ = again.kill();
    let _ = again.wait();
    let _ = std::fs::remove_dir_all(&data_dir);
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "{}: all {} acknowledged events survived SIGKILL",
        db.name,
        acked.len()
    );
}

#[tokio::test]
async fn sqlite_keeps_every_acknowledged_event_across_sigkill() {
    kill_under_load_and_recover(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_keeps_every_acknowledged_event_across_sigkill() {
    if let Some(db) = TestDb::postgres().await {
        kill_under_load_and_recover(db).await;
    }
}
