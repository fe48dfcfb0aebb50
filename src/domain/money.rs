//! Money events: what the provider says moved for a payment, as opposed to its status
//! (`recon.money_events`, migration `money_events`). A payment received is one fact; each
//! refund, reversal, chargeback and the commission is another, signed for the merchant.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::Currency;

/// What kind of money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MoneyKind {
    /// The payment received (+).
    Payment,
    /// Money returned after capture (−).
    Refund,
    /// A hold released before capture (−).
    Reversal,
    /// Money taken back by the card's bank (−); from registries or by hand.
    Chargeback,
    /// What the provider keeps (−), where it states a net.
    Commission,
}

impl MoneyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Payment => "payment",
            Self::Refund => "refund",
            Self::Reversal => "reversal",
            Self::Chargeback => "chargeback",
            Self::Commission => "commission",
        }
    }

    /// Whether money of this kind comes in (the payment) rather than goes back.
    pub fn is_income(self) -> bool {
        self == Self::Payment
    }
}

/// Where a fact came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneySource {
    Poll,
    Callback,
    StatusApi,
    Registry,
    Manual,
}

impl MoneySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Callback => "callback",
            Self::StatusApi => "status_api",
            Self::Registry => "registry",
            Self::Manual => "manual",
        }
    }
}

/// One fact about money, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyFact {
    pub kind: MoneyKind,
    /// Signed for the merchant: + for the payment, − for everything else.
    pub amount: Decimal,
    /// As the provider stated it, sign included.
    pub provider_amount: Option<Decimal>,
    pub currency: Currency,
    /// The provider's own id for it, when it gives one.
    pub provider_ref: Option<String>,
    /// The provider's word for it (a refund's status).
    pub provider_status: Option<String>,
    /// When the provider says it happened.
    pub provider_at: Option<DateTime<Utc>>,
    pub source: MoneySource,
    /// The fact within its payment: one row per (payment, key) ([`MoneyFact::key`]).
    pub key: String,
}

impl MoneyFact {
    /// The payment received: `amount` as the provider reports it paid.
    pub fn payment(
        amount: Decimal,
        currency: Currency,
        provider_at: Option<DateTime<Utc>>,
        source: MoneySource,
    ) -> Self {
        Self {
            kind: MoneyKind::Payment,
            amount: amount.abs(),
            provider_amount: Some(amount),
            currency,
            provider_ref: None,
            provider_status: None,
            provider_at,
            source,
            key: "payment".into(),
        }
    }

    /// Money that went back (`kind` is not [`MoneyKind::Payment`]): `stated` as the provider
    /// sent it, whatever its sign, is counted negative. `provider_ref` is the provider's id
    /// for it; `parent_id`, the payment's own id at the provider: a child that repeats it (as
    /// the documentation's example does) or has none is told apart by its time and amount.
    #[allow(clippy::too_many_arguments)]
    pub fn returned(
        kind: MoneyKind,
        stated: Decimal,
        currency: Currency,
        provider_ref: Option<&str>,
        parent_id: Option<&str>,
        provider_status: Option<&str>,
        provider_at: Option<DateTime<Utc>>,
        source: MoneySource,
    ) -> Self {
        debug_assert!(!kind.is_income());
        let own_id = provider_ref.filter(|id| Some(*id) != parent_id && !id.is_empty());
        let key = match own_id {
            Some(id) => format!("child:{id}"),
            None => format!(
                "{}:{}:{}",
                kind.as_str(),
                provider_at.map_or_else(|| "undated".to_owned(), |at| at.to_rfc3339()),
                stated.abs().normalize()
            ),
        };
        Self {
            kind,
            amount: -stated.abs(),
            provider_amount: Some(stated),
            currency,
            provider_ref: provider_ref.map(str::to_owned),
            provider_status: provider_status.map(str::to_owned),
            provider_at,
            source,
            key,
        }
    }

    /// What the provider kept: `gross` less `net`, when it states a net below the gross.
    /// `None` when the net is not below the gross (nothing kept, or a net that makes no
    /// sense: left for a person, never booked as a negative commission).
    pub fn commission(
        gross: Decimal,
        net: Decimal,
        currency: Currency,
        provider_at: Option<DateTime<Utc>>,
        source: MoneySource,
    ) -> Option<Self> {
        let kept = gross - net;
        (kept > Decimal::ZERO && net >= Decimal::ZERO).then(|| Self {
            kind: MoneyKind::Commission,
            amount: -kept,
            provider_amount: Some(kept),
            currency,
            provider_ref: None,
            provider_status: None,
            provider_at,
            source,
            key: "commission".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn kzt() -> Currency {
        "KZT".parse().unwrap()
    }

    #[test]
    fn money_is_signed_for_the_merchant_whatever_sign_the_provider_sends() {
        let paid = MoneyFact::payment(d("5000"), kzt(), None, MoneySource::Poll);
        assert_eq!((paid.amount, paid.key.as_str()), (d("5000"), "payment"));
        for stated in [d("-1500"), d("1500")] {
            let refund = MoneyFact::returned(
                MoneyKind::Refund,
                stated,
                kzt(),
                Some("123456790"),
                Some("123456789"),
                Some("success"),
                None,
                MoneySource::StatusApi,
            );
            assert_eq!(refund.amount, d("-1500"), "{stated}");
            assert_eq!(refund.provider_amount, Some(stated), "kept as sent");
            assert_eq!(refund.key, "child:123456790");
        }
    }

    #[test]
    fn a_child_without_an_id_of_its_own_is_told_apart_by_its_time_and_amount() {
        let at = "2025-07-12T05:00:00Z".parse().ok();
        let child = |id: Option<&str>, amount| {
            MoneyFact::returned(
                MoneyKind::Refund,
                amount,
                kzt(),
                id,
                Some("123456789"),
                None,
                at,
                MoneySource::StatusApi,
            )
            .key
        };
        assert_eq!(
            child(Some("123456789"), d("-1500.00")),
            "refund:2025-07-12T05:00:00+00:00:1500"
        );
        assert_eq!(child(None, d("-1500")), child(Some("123456789"), d("-1500.0")));
        assert_ne!(child(None, d("-1500")), child(None, d("-1000")));
    }

    #[test]
    fn a_commission_is_booked_only_from_a_net_below_the_gross() {
        let kept = MoneyFact::commission(d("500"), d("482.5"), kzt(), None, MoneySource::Poll)
            .unwrap();
        assert_eq!((kept.amount, kept.key.as_str()), (d("-17.5"), "commission"));
        assert!(MoneyFact::commission(d("500"), d("500"), kzt(), None, MoneySource::Poll).is_none());
        assert!(MoneyFact::commission(d("500"), d("510"), kzt(), None, MoneySource::Poll).is_none());
        assert!(MoneyFact::commission(d("500"), d("-1"), kzt(), None, MoneySource::Poll).is_none());
    }
}
