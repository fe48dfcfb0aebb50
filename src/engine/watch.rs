//! Watching paid payments for refunds (issue 26, item 4). `invoice/info` never shows a
//! refund, so after each sweep's polls the watches due are claimed and each paid payment is
//! asked about through the Merchant status API, in the rate budget and the in-flight bound
//! polls use. What a verified answer states is booked (`recon.money_events`) and the next
//! look set from `refunds.watch`, in one transaction; an ask that gets no verified answer is
//! made again later, backing off ([`crate::domain::money::watch_retry_after`]).

use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::{Engine, metrics};
use crate::domain::Currency;
use crate::domain::money::{next_look, status_disagreement, watch_retry_after};
use crate::provider::merchant_status::{Lookup, MerchantAccount, StatusError, fetch_status};
use crate::settings::{MerchantLookup, Settings};
use crate::store::{self, money::Watch};

/// What the watch needs: the merchant's account and the ladder.
#[derive(Debug)]
pub(super) struct Watcher {
    account: MerchantAccount,
    lookup: MerchantLookup,
    client: reqwest::Client,
    base_url: String,
    ladder: Vec<Duration>,
    watch_for: Duration,
    /// `merchant.rate_per_second`, this instance's own limit, when set.
    own_rate: Option<super::pacing::Pacer>,
}

impl Watcher {
    /// `None` without merchant credentials: refunds are not watched.
    pub(super) fn new(settings: &Settings) -> Option<Self> {
        let account = MerchantAccount::from_settings(&settings.merchant)?;
        let client = crate::outbound::client(
            settings.provider.timeout,
            Some(settings.provider.connect_timeout),
        )
        .ok()?;
        Some(Self {
            account,
            lookup: settings.merchant.lookup,
            client,
            base_url: settings.provider.base_url.clone(),
            ladder: settings.refunds.watch.clone(),
            watch_for: settings.refunds.watch_for,
            own_rate: (settings.merchant.rate_per_second > 0).then(|| {
                super::pacing::Pacer::new(
                    settings.merchant.rate_per_second,
                    1,
                    settings.poll.concurrency.max(1),
                    None,
                )
            }),
        })
    }
}

/// What one round of the watch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WatchOutcome {
    /// Status API answers read and booked.
    pub looks: u64,
    /// Asks that got no verified answer (asked again later).
    pub failed: u64,
    /// Money events written (refunds, reversals, commissions).
    pub money_events: u64,
}

/// One look's result.
enum Looked {
    Booked(u64),
    Failed,
    LeaseLost,
}

impl Engine {
    /// Asks about every watch due now (a chunk at a time, as polls are claimed) until none is
    /// left or `stop` fires. Without merchant credentials it does nothing.
    pub(super) async fn watch_refunds(&self, stop: &CancellationToken) -> WatchOutcome {
        let mut outcome = WatchOutcome::default();
        let Some(watcher) = self.inner.watcher.as_ref() else {
            return outcome;
        };
        let inner = &self.inner;
        while !stop.is_cancelled() {
            let due = match store::money::claim_watches(
                &inner.pool,
                &inner.instance,
                inner.poll.lease,
                self.claim_chunk() as i64,
            )
            .await
            {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming refund watches failed; tried again after the next sweep");
                    break;
                }
            };
            if due.is_empty() {
                break;
            }
            let looked: Vec<Looked> = futures_util::stream::iter(due)
                .map(|watch| self.look(watcher, watch, stop))
                .buffer_unordered(inner.poll.concurrency.max(1))
                .collect()
                .await;
            for result in looked {
                match result {
                    Looked::Booked(written) => {
                        outcome.looks += 1;
                        outcome.money_events += written;
                    }
                    Looked::Failed => outcome.failed += 1,
                    Looked::LeaseLost => {}
                }
            }
        }
        ::metrics::counter!(metrics::MONEY_EVENTS).increment(outcome.money_events);
        if outcome != WatchOutcome::default() {
            tracing::info!(
                looks = outcome.looks,
                failed = outcome.failed,
                money_events = outcome.money_events,
                "refund watch finished"
            );
        }
        outcome
    }

    async fn look(&self, watcher: &Watcher, watch: Watch, stop: &CancellationToken) -> Looked {
        let inner = &self.inner;
        let lookup = match watcher.lookup {
            MerchantLookup::PaymentId => Some(Lookup::PaymentId(watch.payment_id.clone())),
            MerchantLookup::OrderId => watch.order_id.clone().map(Lookup::OrderId),
        };
        let answer = match lookup {
            None => {
                Err("the payment has no order_id to ask by (merchant.lookup = order_id)".to_owned())
            }
            Some(lookup) => {
                let own = match &watcher.own_rate {
                    Some(own) => match own.ticket(stop).await {
                        Some(ticket) => Some(ticket),
                        None => return Looked::LeaseLost,
                    },
                    None => None,
                };
                let Some(_ticket) = inner.pacer.ticket(stop).await else {
                    // Stopping: the lease runs out and the look is made later.
                    return Looked::LeaseLost;
                };
                let answer = fetch_status(
                    &watcher.client,
                    &watcher.base_url,
                    &watcher.account,
                    &lookup,
                    self.naive_offset(),
                )
                .await
                .map_err(|e| describe(&e));
                drop(own);
                answer
            }
        };
        let answer = answer.and_then(|answer| match (answer.ok, &answer.error) {
            (true, _) => Ok(answer),
            (false, Some((code, description))) => Err(format!(
                "the status API answered error {}: {}",
                code.as_deref().unwrap_or("(no code)"),
                description.as_deref().unwrap_or("(no description)")
            )),
            (false, None) => Err("the status API answered error".to_owned()),
        });
        let now = Utc::now();
        match answer {
            Ok(answer) => {
                let fallback = watch
                    .currency
                    .as_deref()
                    .and_then(|c| c.parse::<Currency>().ok());
                let facts = answer.money_facts(fallback);
                let next = next_look(&watcher.ladder, watcher.watch_for, watch.since, now);
                let disagreement = status_disagreement(
                    (
                        watch.invoice_amount,
                        watch.invoice_currency.as_deref(),
                        watch.invoice_order.as_deref(),
                    ),
                    (
                        answer.amount,
                        answer.currency.as_deref(),
                        answer.order_id.as_deref(),
                    ),
                );
                match store::money::finish_look(
                    &inner.pool,
                    &watch.payment_id,
                    &inner.instance,
                    &facts,
                    next,
                    disagreement,
                )
                .await
                {
                    Ok(Some(written)) => Looked::Booked(written),
                    Ok(None) => Looked::LeaseLost,
                    Err(e) => {
                        tracing::warn!(payment_id = %watch.payment_id, error = %e, "booking a status answer failed; asked again when its lease runs out");
                        Looked::Failed
                    }
                }
            }
            Err(reason) => {
                let attempts = u32::try_from(watch.attempts).unwrap_or(0).saturating_add(1);
                let retry_at = now
                    + chrono::Duration::from_std(watch_retry_after(attempts))
                        .unwrap_or_else(|_| chrono::Duration::days(1));
                tracing::warn!(payment_id = %watch.payment_id, %reason, attempts, "refund watch: no verified status answer; asked again later");
                if let Err(e) = store::money::fail_look(
                    &inner.pool,
                    &watch.payment_id,
                    &inner.instance,
                    retry_at,
                    &reason,
                )
                .await
                {
                    tracing::warn!(payment_id = %watch.payment_id, error = %e, "recording a failed look failed");
                }
                Looked::Failed
            }
        }
    }
}

/// A status error in words, for the log and `recon.refund_watch.last_error`.
fn describe(error: &StatusError) -> String {
    crate::text::clean(&error.to_string(), 300)
}
