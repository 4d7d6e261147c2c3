//! Delivery settings: Slack, SMTP, the retry schedule, timeouts and the SSRF allow-list. A
//! flattened part of [`crate::Config`], so each also has a flag and an environment variable.

use std::time::Duration;

use hitlhook_domain::delivery::retry::{self, RetryPolicy};
use hitlhook_domain::delivery::{DeliveryPlan, check_email};

use crate::config::Secret;

/// How to secure the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (default port 587).
    Starttls,
    /// TLS from the first byte (default port 465).
    Tls,
    /// No TLS at all: only for a relay on the same host or a test server (default port 25).
    None,
}

/// Settings of the delivery engine and its channels.
#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryConfig {
    /// Slack incoming webhook URL (as in the seed). Messages posted this way cannot be edited
    /// after a decision made elsewhere; set SLACK_BOT_TOKEN for that.
    #[arg(long, env = "SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub slack_webhook_url: Option<Secret>,

    /// Slack bot token (xoxb-...): posts with chat.postMessage, edits with chat.update and opens
    /// the Revise modal with views.open. Needs SLACK_CHANNEL.
    #[arg(long, env = "SLACK_BOT_TOKEN", hide_env_values = true)]
    pub slack_bot_token: Option<Secret>,

    /// The Slack channel id (C...) the bot posts to.
    #[arg(long, env = "SLACK_CHANNEL")]
    pub slack_channel: Option<String>,

    /// Slack app signing secret: verifies POST /slack/interactions (button clicks, modals).
    /// Without it, interactions are refused.
    #[arg(long, env = "SLACK_SIGNING_SECRET", hide_env_values = true)]
    pub slack_signing_secret: Option<Secret>,

    /// Slack Web API base URL (for tests and proxies).
    #[arg(long, env = "SLACK_API_URL", default_value = "https://slack.com/api")]
    pub slack_api_url: String,

    /// Slack user ids (U...) allowed to decide, comma-separated. Default: anyone in the channel.
    #[arg(long, env = "SLACK_ALLOWED_USERS", value_delimiter = ',')]
    pub slack_allowed_users: Vec<String>,

    /// SMTP server for email notifications. Email is off without it.
    #[arg(long, env = "SMTP_HOST")]
    pub smtp_host: Option<String>,

    /// SMTP port. Default: 587 for starttls, 465 for tls, 25 for none.
    #[arg(long, env = "SMTP_PORT")]
    pub smtp_port: Option<u16>,

    /// SMTP user name (with SMTP_PASSWORD).
    #[arg(long, env = "SMTP_USER")]
    pub smtp_user: Option<String>,

    #[arg(long, env = "SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<Secret>,

    /// starttls (required upgrade), tls (implicit TLS) or none (local relay or test server only).
    #[arg(long, env = "SMTP_TLS", value_enum, default_value = "starttls")]
    pub smtp_tls: SmtpTls,

    /// The From address of notification emails, e.g. "hitlhook <hitl@example.com>".
    #[arg(long, env = "SMTP_FROM")]
    pub smtp_from: Option<String>,

    /// Recipients for checkpoints that name none (comma-separated). A checkpoint.required event
    /// may name its own in "recipients".
    #[arg(long, env = "EMAIL_RECIPIENTS", value_delimiter = ',')]
    pub email_recipients: Vec<String>,

    /// How long an email decision link stays valid, in seconds (never past the checkpoint's
    /// own expiry).
    #[arg(long, env = "HITLHOOK_EMAIL_LINK_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    pub email_link_ttl_secs: u64,

    /// Attempts per delivery in total, the first included, before it becomes a dead letter.
    #[arg(long = "delivery-max-attempts", env = "HITLHOOK_DELIVERY_MAX_ATTEMPTS", default_value_t = retry::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,

    /// Waits between attempts (after the 1st, 2nd, ...; the last repeats), each with ±20 %
    /// jitter. Units: ms, s, m, h, d.
    #[arg(long = "delivery-schedule", env = "HITLHOOK_DELIVERY_SCHEDULE", default_value = retry::DEFAULT_SCHEDULE)]
    pub schedule: String,

    /// The longest Retry-After (429/503) honoured, in seconds.
    #[arg(
        long = "delivery-retry-after-max-secs",
        env = "HITLHOOK_DELIVERY_RETRY_AFTER_MAX_SECS",
        default_value_t = 3600
    )]
    pub retry_after_max_secs: u64,

    /// Connect timeout of outbound requests, in milliseconds.
    #[arg(
        long = "delivery-connect-timeout-ms",
        env = "HITLHOOK_DELIVERY_CONNECT_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub connect_timeout_ms: u64,

    /// Total timeout of one outbound request or email, in milliseconds.
    #[arg(
        long = "delivery-timeout-ms",
        env = "HITLHOOK_DELIVERY_TIMEOUT_MS",
        default_value_t = 15_000
    )]
    pub timeout_ms: u64,

    /// Deliveries sent at the same time by this node.
    #[arg(
        long = "delivery-concurrency",
        env = "HITLHOOK_DELIVERY_CONCURRENCY",
        default_value_t = 16
    )]
    pub concurrency: u32,

    /// How often an idle worker looks for deliveries written by other nodes or the CLI, in ms.
    #[arg(
        long = "delivery-poll-ms",
        env = "HITLHOOK_DELIVERY_POLL_MS",
        default_value_t = 1000
    )]
    pub poll_ms: u64,

    /// Addresses outbound requests may reach although they are not public (loopback, private,
    /// ...): comma-separated IPs or CIDRs, e.g. 10.0.0.0/8. Default: public addresses only.
    #[arg(
        long = "outbound-allow",
        env = "HITLHOOK_OUTBOUND_ALLOW",
        value_delimiter = ','
    )]
    pub outbound_allow: Vec<String>,

    /// Run the delivery worker on this node (turn off on API-only nodes).
    #[arg(long = "delivery-worker", env = "HITLHOOK_DELIVERY_WORKER", default_value_t = true, action = clap::ArgAction::Set)]
    pub worker_enabled: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            slack_webhook_url: None,
            slack_bot_token: None,
            slack_channel: None,
            slack_signing_secret: None,
            slack_api_url: "https://slack.com/api".to_owned(),
            slack_allowed_users: Vec::new(),
            smtp_host: None,
            smtp_port: None,
            smtp_user: None,
            smtp_password: None,
            smtp_tls: SmtpTls::Starttls,
            smtp_from: None,
            email_recipients: Vec::new(),
            email_link_ttl_secs: 7 * 24 * 3600,
            max_attempts: retry::DEFAULT_MAX_ATTEMPTS,
            schedule: retry::DEFAULT_SCHEDULE.to_owned(),
            retry_after_max_secs: 3600,
            connect_timeout_ms: 5000,
            timeout_ms: 15_000,
            concurrency: 16,
            poll_ms: 1000,
            outbound_allow: Vec::new(),
            worker_enabled: true,
        }
    }
}

impl DeliveryConfig {
    /// The retry policy, or what is wrong with the settings.
    pub fn retry_policy(&self) -> Result<RetryPolicy, String> {
        let schedule = retry::parse_schedule(&self.schedule)
            .map_err(|e| format!("HITLHOOK_DELIVERY_SCHEDULE: {e}"))?;
        if self.max_attempts == 0 {
            return Err("HITLHOOK_DELIVERY_MAX_ATTEMPTS must be at least 1".into());
        }
        Ok(RetryPolicy {
            schedule,
            max_attempts: self.max_attempts,
            jitter: retry::DEFAULT_JITTER,
            retry_after_max: Duration::from_secs(self.retry_after_max_secs),
        })
    }

    /// Checks everything that can be checked before start, so a typo fails loudly at boot.
    pub fn validate(&self) -> Result<(), String> {
        self.retry_policy()?;
        if self.slack_bot_token.is_some() && self.slack_channel.is_none() {
            return Err("SLACK_BOT_TOKEN needs SLACK_CHANNEL (the channel id to post to)".into());
        }
        crate::delivery::http::parse_target(&self.slack_api_url)
            .map_err(|e| format!("SLACK_API_URL: {e}"))?;
        if let Some(url) = &self.slack_webhook_url {
            crate::delivery::http::parse_target(url.expose())
                .map_err(|e| format!("SLACK_WEBHOOK_URL: {e}"))?;
        }
        if self.smtp_host.is_some() && self.smtp_from.is_none() {
            return Err("SMTP_HOST needs SMTP_FROM (the sender address)".into());
        }
        if let Some(from) = &self.smtp_from {
            from.parse::<lettre::message::Mailbox>()
                .map_err(|e| format!("SMTP_FROM {from:?}: {e}"))?;
        }
        if self.smtp_user.is_some() != self.smtp_password.is_some() {
            return Err("SMTP_USER and SMTP_PASSWORD go together".into());
        }
        for address in &self.email_recipients {
            check_email(address).map_err(|e| format!("EMAIL_RECIPIENTS: {e}"))?;
        }
        crate::delivery::ssrf::Guard::new(&self.outbound_allow)?;
        if self.concurrency == 0 {
            return Err("HITLHOOK_DELIVERY_CONCURRENCY must be at least 1".into());
        }
        Ok(())
    }

    /// What the store plans deliveries for.
    #[must_use]
    pub fn plan(&self) -> DeliveryPlan {
        let bot = self.slack_bot_token.is_some() && self.slack_channel.is_some();
        DeliveryPlan {
            slack_post: bot || self.slack_webhook_url.is_some(),
            slack_edit: bot,
            email: self.smtp_host.is_some() && self.smtp_from.is_some(),
            default_recipients: self.email_recipients.clone(),
        }
    }

    #[must_use]
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(1))
    }

    #[must_use]
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    /// A claim's lease: longer than any send can take, so a live worker never loses its rows.
    #[must_use]
    pub fn lease(&self) -> Duration {
        self.timeout() + self.connect_timeout() + Duration::from_secs(30)
    }

    #[must_use]
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms.max(10))
    }

    /// The SMTP port in effect.
    #[must_use]
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port.unwrap_or(match self.smtp_tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        let ok = DeliveryConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        let cases: Vec<(&str, DeliveryConfig, &str)> = vec![
            (
                "schedule",
                DeliveryConfig {
                    schedule: "soon".into(),
                    ..ok.clone()
                },
                "SCHEDULE",
            ),
            (
                "zero attempts",
                DeliveryConfig {
                    max_attempts: 0,
                    ..ok.clone()
                },
                "MAX_ATTEMPTS",
            ),
            (
                "bot without channel",
                DeliveryConfig {
                    slack_bot_token: Some(Secret("xoxb-1".into())),
                    ..ok.clone()
                },
                "SLACK_CHANNEL",
            ),
            (
                "smtp without from",
                DeliveryConfig {
                    smtp_host: Some("mail".into()),
                    ..ok.clone()
                },
                "SMTP_FROM",
            ),
            (
                "bad from",
                DeliveryConfig {
                    smtp_from: Some("not an address".into()),
                    ..ok.clone()
                },
                "SMTP_FROM",
            ),
            (
                "user without password",
                DeliveryConfig {
                    smtp_user: Some("u".into()),
                    ..ok.clone()
                },
                "SMTP_PASSWORD",
            ),
            (
                "bad recipient",
                DeliveryConfig {
                    email_recipients: vec!["x".into()],
                    ..ok.clone()
                },
                "EMAIL_RECIPIENTS",
            ),
            (
                "bad allow",
                DeliveryConfig {
                    outbound_allow: vec!["intranet".into()],
                    ..ok.clone()
                },
                "OUTBOUND_ALLOW",
            ),
            (
                "bad api url",
                DeliveryConfig {
                    slack_api_url: "ftp://x".into(),
                    ..ok.clone()
                },
                "SLACK_API_URL",
            ),
            (
                "bad webhook",
                DeliveryConfig {
                    slack_webhook_url: Some(Secret("hooks".into())),
                    ..ok
                },
                "SLACK_WEBHOOK_URL",
            ),
        ];
        for (name, cfg, want) in cases {
            let err = cfg.validate().expect_err(name);
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn the_plan_follows_the_channels() {
        let mut cfg = DeliveryConfig::default();
        assert!(cfg.plan().is_empty());
        cfg.slack_webhook_url = Some(Secret("https://hooks.slack.com/services/x".into()));
        assert_eq!(
            (cfg.plan().slack_post, cfg.plan().slack_edit),
            (true, false)
        );
        cfg.slack_bot_token = Some(Secret("xoxb-1".into()));
        cfg.slack_channel = Some("C1".into());
        assert_eq!((cfg.plan().slack_post, cfg.plan().slack_edit), (true, true));
        cfg.smtp_host = Some("mail".into());
        cfg.smtp_from = Some("hitl@example.com".into());
        assert!(cfg.plan().email);
        assert_eq!(cfg.smtp_port(), 587);
        assert!(cfg.lease() > cfg.timeout());
    }
}
