//! `hitlhook deliveries` and `hitlhook subscriptions`: inspect and revive the delivery outbox,
//! manage webhook subscribers. They work on the database directly (like `keys`), so they also
//! work while the server is down; a running server's worker picks revived deliveries up at its
//! next poll.

use anyhow::bail;
use clap::Subcommand;
use hitlhook_domain::{DeliveryKind, DeliveryState, Timestamp};
use hitlhook_server::delivery::ssrf::Guard;
use hitlhook_server::delivery::webhook::validate_subscription;
use hitlhook_store::{DeliveryQuery, NewSubscription, RetryOutcome, Store};

#[derive(Debug, Subcommand)]
pub enum DeliveriesAction {
    /// List deliveries, newest first.
    List {
        /// pending, delivered, dead, skipped, resolved_elsewhere (default: all).
        #[arg(long)]
        state: Option<String>,
        /// Only this checkpoint's deliveries.
        #[arg(long)]
        checkpoint: Option<String>,
        /// slack.message, slack.update, slack.respond, slack.modal, email, webhook, amp.resume,
        /// amp.stop or amp.feedback.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Make a dead (or delivered, skipped) delivery due now with a fresh set of attempts. It
    /// keeps its idempotency key, so receivers can tell a redelivery.
    Retry {
        /// The delivery id (see `deliveries list`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionsAction {
    /// Add a subscriber; prints its id and, once, its signing secret.
    Add {
        /// Where to POST events (http or https). Private addresses need HITLHOOK_OUTBOUND_ALLOW.
        #[arg(long)]
        url: String,
        /// Event types, comma-separated: checkpoint.created, checkpoint.escalated,
        /// checkpoint.decided, checkpoint.expired, checkpoint.cancelled, execution.updated,
        /// checkpoint.*, * (default).
        #[arg(long = "events", value_delimiter = ',')]
        events: Vec<String>,
        /// A Standard Webhooks secret (whsec_<base64>); generated when absent.
        #[arg(long, env = "HITLHOOK_SUBSCRIPTION_SECRET", hide_env_values = true)]
        secret: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List subscribers (never their secrets).
    List,
    /// Remove a subscriber; its pending deliveries are skipped.
    Remove { id: String },
}

pub async fn deliveries(store: &dyn Store, action: DeliveriesAction) -> anyhow::Result<()> {
    match action {
        DeliveriesAction::List {
            state,
            checkpoint,
            kind,
            limit,
        } => {
            let state = match state.as_deref() {
                None | Some("all") => None,
                Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
                    anyhow::anyhow!("--state must be pending, delivered, dead, skipped, resolved_elsewhere or all")
                })?),
            };
            let kind = kind
                .as_deref()
                .map(|k| {
                    DeliveryKind::parse(k).ok_or_else(|| anyhow::anyhow!("unknown --kind {k:?}"))
                })
                .transpose()?;
            let page = store
                .list_deliveries(&DeliveryQuery {
                    state,
                    checkpoint_id: checkpoint,
                    kind,
                    limit,
                    cursor: None,
                })
                .await?;
            println!(
                "{:<38} {:<14} {:<10} {:<9} {:<24} {:<20} last error",
                "id", "kind", "state", "attempts", "target", "checkpoint"
            );
            for d in page.items {
                let target = if d.kind == DeliveryKind::SlackRespond {
                    "response_url".to_owned()
                } else {
                    d.target.clone()
                };
                println!(
                    "{:<38} {:<14} {:<10} {:<9} {:<24} {:<20} {}",
                    d.id,
                    d.kind.as_str(),
                    d.state.as_str(),
                    format!("{}/{}", d.attempts, d.max_attempts),
                    target,
                    d.checkpoint_id.as_deref().unwrap_or("-"),
                    d.last_error.as_deref().unwrap_or("-")
                );
            }
        }
        DeliveriesAction::Retry { id } => {
            match store.retry_delivery(&id, Timestamp::now()).await? {
                RetryOutcome::Revived(d) => {
                    eprintln!(
                        "delivery {} ({} to {}) is due again now",
                        d.id,
                        d.kind.as_str(),
                        d.target
                    );
                }
                RetryOutcome::Pending(d) => bail!(
                    "delivery {} is still pending (attempt {} of {}); it is retried on its own",
                    d.id,
                    d.attempts,
                    d.max_attempts
                ),
                RetryOutcome::NotFound => {
                    bail!("no delivery {id:?} (see `hitlhook deliveries list`)")
                }
            }
        }
    }
    Ok(())
}

pub async fn subscriptions(
    store: &dyn Store,
    allow: &[String],
    action: SubscriptionsAction,
) -> anyhow::Result<()> {
    match action {
        SubscriptionsAction::Add {
            url,
            events,
            secret,
            description,
        } => {
            let guard = Guard::new(allow).map_err(anyhow::Error::msg)?;
            let events = (!events.is_empty()).then_some(events);
            let spec = validate_subscription(&guard, &url, events, secret)
                .map_err(|(field, problem)| anyhow::anyhow!("{field}: {problem}"))?;
            let created = store
                .create_subscription(NewSubscription {
                    id: format!("sub_{}", uuid::Uuid::now_v7().simple()),
                    url: spec.url,
                    secret: spec.secret,
                    event_types: spec.event_types,
                    description,
                    created_at: Timestamp::now(),
                })
                .await?;
            eprintln!(
                "Added subscriber {} for {} ({}). Its signing secret is shown only now:",
                created.id,
                created.url,
                created.event_types.join(",")
            );
            println!("{}", created.id);
            println!("{}", created.secret);
        }
        SubscriptionsAction::List => {
            println!("{:<38} {:<40} {:<30} created", "id", "url", "events");
            for s in store.list_subscriptions().await? {
                println!(
                    "{:<38} {:<40} {:<30} {}",
                    s.id,
                    s.url,
                    s.event_types.join(","),
                    s.created_at.to_rfc3339()
                );
            }
        }
        SubscriptionsAction::Remove { id } => {
            if store.remove_subscription(&id, Timestamp::now()).await? {
                eprintln!("removed {id}");
            } else {
                bail!("no subscriber {id:?} (see `hitlhook subscriptions list`)");
            }
        }
    }
    Ok(())
}
