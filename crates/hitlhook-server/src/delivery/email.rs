//! The email channel: one multipart (text + HTML) message per recipient, with the checkpoint's
//! context and that recipient's own signed, expiring decision links (one per allowed action).
//! A link opens a confirmation page; only the POST from that page decides (see `http::email`).
//! The `Message-ID` is derived from the delivery id, so every attempt carries the same one.

use std::time::Duration;

use hitlhook_domain::delivery::summary::{self, shorten};
use hitlhook_domain::{Action, Checkpoint, CheckpointStatus, Timestamp};
use hitlhook_store::{Delivery, Store};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::delivery::SendOutcome;
use crate::delivery::config::{DeliveryConfig, SmtpTls};
use crate::html::{escape, inbox_link, query_value};
use crate::security::links::{LinkClaims, LinkSigner};

/// The path of the confirmation page.
pub const DECISION_PATH: &str = "/email/decision";

/// The email channel.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    pub links: LinkSigner,
    pub base_url: String,
    link_ttl: Duration,
}

impl Mailer {
    /// Builds the SMTP transport from the settings; `None` when SMTP is not configured.
    pub fn from_config(
        cfg: &DeliveryConfig,
        links: LinkSigner,
        base_url: String,
    ) -> anyhow::Result<Option<Self>> {
        let (Some(host), Some(from)) = (&cfg.smtp_host, &cfg.smtp_from) else {
            return Ok(None);
        };
        crate::delivery::http::install_crypto();
        let mut builder = match cfg.smtp_tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .tls(Tls::Required(TlsParameters::new(host.clone())?)),
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .tls(Tls::Wrapper(TlsParameters::new(host.clone())?)),
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        }
        .port(cfg.smtp_port())
        .timeout(Some(cfg.timeout()));
        if let (Some(user), Some(password)) = (&cfg.smtp_user, &cfg.smtp_password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Some(Mailer {
            transport: builder.build(),
            from: from.parse()?,
            links,
            base_url,
            link_ttl: Duration::from_secs(cfg.email_link_ttl_secs),
        }))
    }

    pub async fn send(&self, store: &dyn Store, d: &Delivery) -> SendOutcome {
        let Some(id) = &d.checkpoint_id else {
            return SendOutcome::permanent("the delivery names no checkpoint");
        };
        let cp = match store.get_checkpoint(id).await {
            Ok(Some(cp)) => cp,
            Ok(None) => return SendOutcome::permanent(format!("checkpoint {id:?} does not exist")),
            Err(e) => return SendOutcome::retry(format!("reading the checkpoint failed: {e}")),
        };
        if cp.status != CheckpointStatus::Pending {
            // Nobody needs links to a closed checkpoint.
            return SendOutcome::Skipped(format!(
                "the checkpoint is already {}",
                cp.status.as_str()
            ));
        }
        let to: Mailbox = match d.target.parse() {
            Ok(m) => m,
            Err(e) => {
                return SendOutcome::permanent(format!("invalid recipient {:?}: {e}", d.target));
            }
        };
        let now = Timestamp::now();
        let links = self.links_for(&cp, d, now);
        let (text, html) = render(&cp, &links, &self.base_url);
        let domain = self.from.email.domain().to_owned();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(shorten(&format!("Review needed: {}", cp.name), 150))
            .message_id(Some(format!("<{}@{domain}>", d.id)))
            .multipart(MultiPart::alternative_plain_html(text, html));
        let message = match message {
            Ok(m) => m,
            Err(e) => return SendOutcome::permanent(format!("building the email failed: {e}")),
        };
        match self.transport.send(message).await {
            Ok(response) => SendOutcome::Delivered {
                status: Some(u16::from(response.code())),
                result: None,
            },
            Err(e) => {
                let status = e.status().map(u16::from);
                let error = format!("SMTP: {e}");
                if e.is_permanent() {
                    SendOutcome::Permanent { status, error }
                } else {
                    SendOutcome::Retry {
                        status,
                        error,
                        retry_after: None,
                    }
                }
            }
        }
    }

    /// One signed link per allowed action, valid until the checkpoint expires or the link TTL
    /// ends, whichever is first.
    fn links_for(&self, cp: &Checkpoint, d: &Delivery, now: Timestamp) -> Vec<(Action, String)> {
        let ttl_ms = i64::try_from(self.link_ttl.as_millis()).unwrap_or(i64::MAX);
        let mut expires_at = now.millis().saturating_add(ttl_ms);
        if let Some(at) = cp.expires_at {
            expires_at = expires_at.min(at.millis());
        }
        [Action::Continue, Action::Revise, Action::Skip, Action::Stop]
            .into_iter()
            .filter(|a| cp.allowed_actions.contains(a))
            .map(|action| {
                let token = self.links.sign(&LinkClaims {
                    checkpoint_id: cp.id.clone(),
                    recipient: d.target.clone(),
                    action,
                    expires_at,
                    delivery_id: d.id.clone(),
                });
                let url = format!(
                    "{}{DECISION_PATH}?token={}",
                    self.base_url.trim_end_matches('/'),
                    query_value(&token)
                );
                (action, url)
            })
            .collect()
    }
}

fn label(action: Action) -> &'static str {
    match action {
        Action::Continue => "Continue",
        Action::Revise => "Revise…",
        Action::Skip => "Skip",
        Action::Stop => "Stop",
    }
}

/// The text and HTML bodies.
#[must_use]
pub fn render(cp: &Checkpoint, links: &[(Action, String)], base_url: &str) -> (String, String) {
    let fields = summary::summarize(&cp.context_json, 20, 500);
    let inbox = inbox_link(base_url, &cp.id);
    let mut text = format!(
        "Review needed: {}\n\nExecution: {}\nCheckpoint: {}\n",
        cp.name,
        cp.kickoff_id.as_deref().unwrap_or("-"),
        cp.id
    );
    if let Some(at) = cp.expires_at {
        text.push_str(&format!("Expires: {at}\n"));
    }
    text.push_str("\nContext:\n");
    for f in &fields {
        text.push_str(&format!("  {}: {}\n", f.label, f.value));
    }
    text.push_str("\nDecide (each link asks you to confirm; it works only for you):\n");
    for (action, url) in links {
        text.push_str(&format!("  {}: {url}\n", label(*action)));
    }
    text.push_str(&format!("\nOr open the inbox: {inbox}\n"));

    let rows: String = fields
        .iter()
        .map(|f| {
            format!(
                "<tr><th style=\"text-align:left;padding:4px 12px 4px 0;vertical-align:top\">{}</th><td style=\"padding:4px 0;white-space:pre-wrap\">{}</td></tr>",
                escape(&f.label),
                escape(&f.value)
            )
        })
        .collect();
    let buttons: String = links
        .iter()
        .map(|(action, url)| {
            let color = match action {
                Action::Continue => "#1a7f37",
                Action::Stop => "#cf222e",
                _ => "#57606a",
            };
            format!(
                "<a href=\"{}\" style=\"display:inline-block;margin:0 8px 8px 0;padding:10px 18px;border-radius:6px;background:{color};color:#fff;text-decoration:none;font-weight:600\">{}</a>",
                escape(url),
                escape(label(*action))
            )
        })
        .collect();
    let expires = cp
        .expires_at
        .map(|at| {
            format!(
                "<p style=\"color:#57606a\">Expires {}</p>",
                escape(&at.to_string())
            )
        })
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html><body style=\"font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2328;max-width:640px\">\
         <h2 style=\"margin-bottom:4px\">Review needed: {name}</h2>\
         <p style=\"color:#57606a;margin-top:0\">Execution <code>{kickoff}</code> · checkpoint <code>{id}</code></p>{expires}\
         <table style=\"border-collapse:collapse;margin:16px 0\">{rows}</table>\
         <p>{buttons}</p>\
         <p style=\"color:#57606a;font-size:13px\">Each button opens a page that asks you to confirm; nothing is decided until you do. These links are yours alone: forwarding them lets others decide as you.</p>\
         <p><a href=\"{inbox}\">Open in the hitlhook inbox</a></p></body></html>",
        name = escape(&cp.name),
        kickoff = escape(cp.kickoff_id.as_deref().unwrap_or("-")),
        id = escape(&cp.id),
        inbox = escape(&inbox),
    );
    (text, html)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitlhook_domain::CheckpointSpec;

    #[test]
    fn bodies_carry_context_and_links_escaped() {
        let cp = CheckpointSpec {
            id: Some("cp-1".into()),
            name: "<b>plan</b>".into(),
            kickoff_id: Some("k-1".into()),
            context_json: r#"{"draft": "x < y & z"}"#.into(),
            ..CheckpointSpec::default()
        }
        .into_checkpoint("x".into(), Timestamp(1_700_000_000_000), 1)
        .expect("valid");
        let links = vec![(
            Action::Continue,
            "https://h/email/decision?token=a.b&x=1".to_owned(),
        )];
        let (text, html) = render(&cp, &links, "https://h");
        assert!(text.contains("draft: x < y & z"));
        assert!(text.contains("Continue: https://h/email/decision?token=a.b&x=1"));
        assert!(html.contains("&lt;b&gt;plan&lt;/b&gt;") && !html.contains("<b>plan"));
        assert!(html.contains("x &lt; y &amp; z"));
        assert!(html.contains("href=\"https://h/email/decision?token=a.b&amp;x=1\""));
        assert!(html.contains("https://h/#/pending/cp-1"));
    }
}
