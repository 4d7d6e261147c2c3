//! Configuration from flags, the environment and a `.env` file, with the seed prototype's names
//! (`WEBHOOK_SECRET`, `WEBHOOK_API_KEY`, `WEBHOOK_BASE_URL`). Every flag's doc comment is its
//! `--help` text.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A secret value: never printed by `Debug` or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A hint that identifies the kind of secret without revealing it: the well-known prefix
    /// (`whsec_`, `hhk_`) if any, and the length.
    #[must_use]
    pub fn redacted(&self) -> String {
        match self.0.split_once('_') {
            Some((prefix, _)) if prefix.len() <= 5 => format!("{prefix}_…({} chars)", self.0.len()),
            _ => format!("…({} chars)", self.0.len()),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// Read as given (a request body's field); checking it is the reader's business.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("must not be empty".to_owned());
        }
        Ok(Secret(s.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings of the server and of every command that opens the database.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address and port to listen on. Use 0.0.0.0:8001 to accept connections from other hosts,
    /// or port 0 to pick a free port (printed at start).
    #[arg(long, env = "HITLHOOK_BIND", default_value = "127.0.0.1:8001")]
    pub bind: String,

    /// Directory for the SQLite database and the generated webhook secret.
    // `global`: `hitlhook keys create --data-dir D` works as well as `hitlhook keys --data-dir D create`.
    #[arg(
        long,
        env = "HITLHOOK_DATA_DIR",
        default_value = "hitlhook-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Database: sqlite:///abs/path.db, sqlite:relative.db or postgres://user:pass@host/db.
    /// Default: SQLite at DATA_DIR/hitlhook.db.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Webhook signing secret(s), comma-separated to rotate without downtime (the first one
    /// signs). Plain strings and Standard Webhooks `whsec_<base64>` secrets are accepted.
    /// Default: generated on first run and kept in DATA_DIR/webhook-secret.
    #[arg(
        long = "webhook-secret",
        env = "WEBHOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub webhook_secrets: Vec<Secret>,

    /// An admin API key accepted in addition to the keys in the database (as in the seed
    /// prototype). Default: none; an admin key is generated and printed once on first run.
    #[arg(long = "api-key", env = "WEBHOOK_API_KEY", hide_env_values = true)]
    pub admin_api_key: Option<Secret>,

    /// The public URL of this server, used in links sent to people (Slack, email).
    #[arg(long, env = "WEBHOOK_BASE_URL")]
    pub base_url: Option<String>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "HITLHOOK_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Seconds a client has to send a request's headers, and again its body (a late body is
    /// answered 408); an idle keep-alive connection is closed after as long. Protects against
    /// clients that open connections and trickle bytes.
    #[arg(long, env = "HITLHOOK_HEADER_READ_TIMEOUT_SECS", default_value_t = 30)]
    pub header_read_timeout_secs: u64,

    /// Most HTTP connections open at once; more wait in the kernel's accept queue. Keep it
    /// below the process's open-file limit (`ulimit -n`). WebSocket streams are not counted.
    #[arg(long, env = "HITLHOOK_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// How far a signature timestamp may be from this server's clock, in seconds, either way.
    #[arg(long, env = "HITLHOOK_SIGNATURE_TOLERANCE_SECS", default_value_t = 300)]
    pub signature_tolerance_secs: u64,

    /// Longest long-poll wait a client may ask for with ?wait=SECONDS.
    #[arg(long, env = "HITLHOOK_MAX_WAIT_SECS", default_value_t = 300)]
    pub max_wait_secs: u64,

    /// How often expired checkpoints are looked for, in milliseconds.
    #[arg(long, env = "HITLHOOK_SWEEP_INTERVAL_MS", default_value_t = 1000)]
    pub sweep_interval_ms: u64,

    /// How often CrewAI AMP runs started here and still running are checked on AMP's
    /// `/status` (a lost crew webhook then still ends the run), in seconds; 0 turns it off.
    #[arg(long, env = "HITLHOOK_AMP_RECONCILE_SECS", default_value_t = 300)]
    pub amp_reconcile_secs: u64,

    /// Do not run database migrations at start (run `hitlhook migrate` as a deploy step instead).
    #[arg(long, env = "HITLHOOK_SKIP_MIGRATIONS")]
    pub skip_migrations: bool,

    /// Log format on stderr: text for people, json for log pipelines. Filter with RUST_LOG.
    #[arg(long, env = "HITLHOOK_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Live stream (/ws, /v1/stream): milliseconds between heartbeats on an idle connection.
    #[arg(long, env = "HITLHOOK_STREAM_HEARTBEAT_MS", default_value_t = 15_000)]
    pub stream_heartbeat_ms: u64,

    /// Live stream: messages one client may have waiting to be sent. A client that lets more
    /// pile up is cut off with a `resync` message naming the sequence number to resume from.
    #[arg(long, env = "HITLHOOK_STREAM_QUEUE", default_value_t = 1024)]
    pub stream_queue: usize,

    /// Live stream: longest a single write to a client may take, in milliseconds, before the
    /// connection is dropped (the client resumes with ?after=).
    #[arg(
        long,
        env = "HITLHOOK_STREAM_SEND_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub stream_send_timeout_ms: u64,

    /// Live stream: lifetime in seconds of the browser tokens from POST /v1/stream-tokens.
    #[arg(long, env = "HITLHOOK_STREAM_TOKEN_TTL_SECS", default_value_t = 60)]
    pub stream_token_ttl_secs: u64,

    /// Key that signs browser stream tokens. Set the same value on every node behind one load
    /// balancer; default: a random key per process (tokens then work on the node that made them).
    #[arg(long, env = "HITLHOOK_STREAM_TOKEN_SECRET", hide_env_values = true)]
    pub stream_token_secret: Option<Secret>,

    /// Slack, email, outbound webhooks: channels, retries, timeouts, SSRF allow-list.
    #[command(flatten)]
    pub delivery: crate::delivery::config::DeliveryConfig,
}

/// Fewest characters a configured secret or key should have; shorter ones are warned about.
pub const SHORT_CREDENTIAL: usize = 16;

impl Config {
    /// Refuses credentials that are set but empty: an empty `WEBHOOK_SECRET` entry would accept
    /// signatures made with an empty key, an empty `WEBHOOK_API_KEY` would let an empty
    /// `X-API-Key` header in as admin. Usually a deployment template whose variable was not set.
    /// Returns warnings for short ones (they work: the seed's examples are short).
    pub fn check_credentials(&self) -> Result<Vec<String>, String> {
        let mut warnings = Vec::new();
        for (i, secret) in self.webhook_secrets.iter().enumerate() {
            let n = i + 1;
            if secret.expose().trim().is_empty() {
                return Err(format!(
                    "WEBHOOK_SECRET entry #{n} is empty: set a secret (comma-separated entries, \
                     none empty), or unset WEBHOOK_SECRET to have one generated and kept in \
                     DATA_DIR/webhook-secret"
                ));
            }
            if secret.expose().len() < SHORT_CREDENTIAL {
                warnings.push(format!(
                    "WEBHOOK_SECRET entry #{n} has only {} characters: whoever guesses it can \
                     sign webhooks; use 32 or more random characters",
                    secret.expose().len()
                ));
            }
        }
        if let Some(key) = &self.admin_api_key {
            if key.expose().trim().is_empty() {
                return Err(
                    "WEBHOOK_API_KEY is set but empty: set a key, or unset it to have an \
                     admin key generated and printed once on first run"
                        .to_owned(),
                );
            }
            if key.expose().len() < SHORT_CREDENTIAL {
                warnings.push(format!(
                    "WEBHOOK_API_KEY has only {} characters: whoever guesses it is an admin; \
                     use 32 or more random characters",
                    key.expose().len()
                ));
            }
        }
        Ok(warnings)
    }

    /// The database URL in effect.
    #[must_use]
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| hitlhook_store::sqlite_file_url(&self.data_dir.join("hitlhook.db")))
    }

    #[must_use]
    pub fn signature_tolerance(&self) -> Duration {
        Duration::from_secs(self.signature_tolerance_secs)
    }

    #[must_use]
    pub fn max_wait(&self) -> Duration {
        Duration::from_secs(self.max_wait_secs)
    }

    #[must_use]
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_millis(self.sweep_interval_ms.max(10))
    }

    /// The live stream's heartbeat period (at least 10 ms).
    #[must_use]
    pub fn stream_heartbeat(&self) -> Duration {
        Duration::from_millis(self.stream_heartbeat_ms.max(10))
    }

    /// The live stream's per-write timeout (at least 10 ms).
    #[must_use]
    pub fn stream_send_timeout(&self) -> Duration {
        Duration::from_millis(self.stream_send_timeout_ms.max(10))
    }

    /// Defaults for tests and embedding: everything as documented, on the given data dir.
    #[must_use]
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Config {
            bind: "127.0.0.1:0".to_owned(),
            data_dir,
            database_url: None,
            webhook_secrets: Vec::new(),
            admin_api_key: None,
            base_url: None,
            max_body_bytes: 1024 * 1024,
            header_read_timeout_secs: 30,
            max_connections: 10_000,
            signature_tolerance_secs: 300,
            max_wait_secs: 300,
            sweep_interval_ms: 1000,
            amp_reconcile_secs: 300,
            skip_migrations: false,
            log_format: LogFormat::Text,
            stream_heartbeat_ms: 15_000,
            stream_queue: 1024,
            stream_send_timeout_ms: 10_000,
            stream_token_ttl_secs: 60,
            stream_token_secret: None,
            delivery: crate::delivery::config::DeliveryConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let s = Secret("whsec_abcdefghijklmnop".into());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.redacted(), "whsec_…(22 chars)");
        assert_eq!(
            Secret("plain-secret-value".into()).redacted(),
            "…(18 chars)"
        );
        assert_eq!(Secret("longprefix_value".into()).redacted(), "…(16 chars)");
    }

    #[test]
    fn empty_credentials_are_refused_and_short_ones_warned_about() {
        let with = |secrets: &[&str], key: Option<&str>| {
            let mut c = Config::for_data_dir(PathBuf::from("/nonexistent"));
            c.webhook_secrets = secrets.iter().map(|s| Secret((*s).to_owned())).collect();
            c.admin_api_key = key.map(|k| Secret(k.to_owned()));
            c.check_credentials()
        };
        for (secrets, key, refused) in [
            (&[""][..], None, "WEBHOOK_SECRET entry #1 is empty"),
            (
                &["a-long-enough-secret-value", " "][..],
                None,
                "entry #2 is empty",
            ),
            (&[][..], Some(""), "WEBHOOK_API_KEY is set but empty"),
            (&[][..], Some("  "), "WEBHOOK_API_KEY is set but empty"),
        ] {
            let error = with(secrets, key).expect_err("refused");
            assert!(error.contains(refused), "{error}");
        }
        let warnings = with(&["short"], Some("your-api-key")).expect("accepted");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings
                .iter()
                .all(|w| !w.contains("short") && !w.contains("your-api-key"))
        );
        let quiet = with(
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            Some("hhk_0123456789abcdef"),
        );
        assert_eq!(quiet, Ok(Vec::new()));
    }
}
