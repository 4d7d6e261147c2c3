//! First run with nothing configured: generate a webhook secret and an admin API key, persist
//! them (the secret in DATA_DIR/webhook-secret with mode 0600, the key only as a hash), and print
//! them once with how to use them. The server never runs unauthenticated.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hitlhook_domain::Scope;
use hitlhook_store::Store;
use rand::RngCore;

use crate::config::{Config, Secret};
use crate::security::api_key;

pub const SECRET_FILE: &str = "webhook-secret";

/// Credentials generated on this start, to be shown once.
#[derive(Debug, Default)]
pub struct FirstRun {
    pub generated_secret: Option<Secret>,
    pub generated_admin_key: Option<Secret>,
}

fn secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SECRET_FILE)
}

/// The webhook secrets in effect: configured ones, else the persisted one, else `None`.
pub fn stored_secrets(config: &Config) -> anyhow::Result<Vec<Secret>> {
    if !config.webhook_secrets.is_empty() {
        return Ok(config.webhook_secrets.clone());
    }
    let path = secret_path(&config.data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(vec![Secret(text.trim().to_owned())]),
        Ok(_) => Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Makes sure a secret exists, generating and persisting one if needed.
pub fn ensure_secrets(config: &Config, first_run: &mut FirstRun) -> anyhow::Result<Vec<Secret>> {
    let existing = stored_secrets(config)?;
    if !existing.is_empty() {
        return Ok(existing);
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = Secret(format!("whsec_{}", STANDARD.encode(bytes)));
    hitlhook_store::create_private_dir(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let path = secret_path(&config.data_dir);
    write_private(&path, secret.expose()).with_context(|| format!("writing {}", path.display()))?;
    first_run.generated_secret = Some(secret.clone());
    Ok(vec![secret])
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{text}")
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    writeln!(file, "{text}")
}

/// Creates an admin key when there is none (neither WEBHOOK_API_KEY nor an active stored one).
pub async fn ensure_admin_key(
    config: &Config,
    store: &dyn Store,
    first_run: &mut FirstRun,
) -> anyhow::Result<()> {
    if config.admin_api_key.is_some() || store.count_admin_keys().await? > 0 {
        return Ok(());
    }
    let (_, secret) = api_key::create(store, "first-run-admin", Scope::Admin).await?;
    first_run.generated_admin_key = Some(Secret(secret));
    Ok(())
}

impl FirstRun {
    /// The one-time banner, or `None` when nothing was generated.
    #[must_use]
    pub fn banner(&self, config: &Config, base_url: &str) -> Option<String> {
        if self.generated_secret.is_none() && self.generated_admin_key.is_none() {
            return None;
        }
        let mut out = String::from("\n================ hitlhook first run ================\n");
        out += "These credentials are shown ONCE. Store them in your secret manager now.\n\n";
        if let Some(secret) = &self.generated_secret {
            out += &format!(
                "Webhook signing secret (kept in {}):\n  WEBHOOK_SECRET={}\n\
                 Senders sign each body with it; `hitlhook sign FILE` prints the headers.\n\n",
                secret_path(&config.data_dir).display(),
                secret.expose()
            );
        }
        if let Some(key) = &self.generated_admin_key {
            out += &format!(
                "Admin API key (stored only as a hash; it cannot be shown again):\n  {}\n\
                 Use it as:  curl -H 'Authorization: Bearer {}' {base_url}/v1/checkpoints\n\
                 Create narrower keys with:  hitlhook keys create --name NAME --scope reviewer\n",
                key.expose(),
                key.expose()
            );
        }
        out += "=====================================================\n";
        Some(out)
    }
}
