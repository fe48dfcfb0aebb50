//! The Merchant status API against the simulator, which speaks its protocol: a signed form
//! out, a signed XML answer back, refunds listed in the order they were made.

use std::time::Duration;

use chrono::{FixedOffset, TimeZone as _, Utc};
use freedompay_recon::outbound;
use freedompay_recon::provider::merchant_status::{
    AnswerError, Lookup, MerchantAccount, StatusError, fetch_status,
};
use freedompay_recon::simulator::{Refund, Reply, Scenario};
use rust_decimal::Decimal;
use secrecy::SecretString;

use crate::helpers::simulator;

fn almaty() -> FixedOffset {
    FixedOffset::east_opt(5 * 3600).unwrap()
}

fn account(secret: &str) -> MerchantAccount {
    MerchantAccount {
        id: "555555".into(),
        secret: SecretString::from(secret.to_owned()),
        script: "get_status3.php".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_is_asked_signed_and_read_only_once_its_signature_verifies() {
    let sim =
        simulator(Scenario::new().payment("123456789", [Reply::invoice("success", "5000", "KZT")]))
            .await;
    let client = outbound::client(Duration::from_secs(5), None).unwrap();
    let ask = |account: MerchantAccount, id: &'static str| {
        let (client, url) = (client.clone(), sim.base_url());
        async move {
            fetch_status(
                &client,
                &url,
                &account,
                &Lookup::PaymentId(id.into()),
                almaty(),
            )
            .await
        }
    };
    // No merchant configured: the endpoint is not there.
    assert!(matches!(
        ask(account("the-merchant-key"), "123456789").await,
        Err(StatusError::Http(404))
    ));

    sim.merchant_account(account("the-merchant-key"));
    sim.refund(
        "123456789",
        Refund {
            payment_id: "123456790".into(),
            amount: "1500".into(),
            date: "2025-07-12 10:00:00".into(),
        },
    );
    sim.refund(
        "123456789",
        Refund {
            payment_id: "123456791".into(),
            amount: "250.50".into(),
            date: "2025-07-13 09:30:00".into(),
        },
    );
    let answer = ask(account("the-merchant-key"), "123456789")
        .await
        .expect("a verified answer");
    assert!(answer.ok);
    assert_eq!(answer.payment_status.as_deref(), Some("success"));
    assert_eq!(answer.amount, Some(Decimal::new(5000, 0)));
    assert_eq!(answer.currency.as_deref(), Some("KZT"));
    assert_eq!(answer.refund_amount, Some(Decimal::new(-175050, 2)));
    assert_eq!(
        answer
            .children
            .iter()
            .map(|c| (
                c.payment_id.as_deref().unwrap(),
                c.amount.unwrap(),
                c.date.unwrap()
            ))
            .collect::<Vec<_>>(),
        [
            (
                "123456790",
                Decimal::new(-1500, 0),
                Utc.with_ymd_and_hms(2025, 7, 12, 5, 0, 0).unwrap()
            ),
            (
                "123456791",
                Decimal::new(-25050, 2),
                Utc.with_ymd_and_hms(2025, 7, 13, 4, 30, 0).unwrap()
            ),
        ]
    );

    // A payment the provider does not know: a signed error answer.
    let unknown = ask(account("the-merchant-key"), "404404")
        .await
        .expect("verified");
    assert!(!unknown.ok);
    assert_eq!(unknown.error.unwrap().0.as_deref(), Some("340"));

    // Another key: the request is refused and its answer is not ours to believe.
    assert!(matches!(
        ask(account("not-the-merchant-key"), "123456789").await,
        Err(StatusError::Answer(AnswerError::BadSignature))
    ));
    // Another merchant: an unsigned refusal, never read.
    let stranger = MerchantAccount {
        id: "1".into(),
        ..account("the-merchant-key")
    };
    assert!(matches!(
        ask(stranger, "123456789").await,
        Err(StatusError::Answer(AnswerError::Unsigned))
    ));
}
