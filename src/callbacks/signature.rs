//! `pg_sig`, the Merchant API's signature (docs/provider/RESULT_URL.md, "Signature").
//!
//! `pg_sig = md5(script ; value ; value ; … ; secret)`: the called script's name, then the
//! values of every field but `pg_sig` in alphabetical order of their names (fields that share
//! a name keep the order they came in), then the merchant's secret key, joined with `;`, as 32
//! lowercase hex characters. MD5 is what the provider uses, not a choice of ours.
//!
//! Names and values are bytes: the provider signs what it sends, which need not be UTF-8 (a
//! shop's text in windows-1251, say). Strings sign as their UTF-8 bytes.

use md5::{Digest as _, Md5};
use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;

/// The field that carries the signature; never signed itself.
pub const SIG: &str = "pg_sig";

/// The signature of `fields` (any order; `pg_sig` ignored) for `script`.
pub fn sign<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    script: &str,
    fields: &[(N, V)],
    secret: &SecretString,
) -> String {
    let mut signed: Vec<(&[u8], &[u8])> = fields
        .iter()
        .map(|(name, value)| (name.as_ref(), value.as_ref()))
        .filter(|(name, _)| *name != SIG.as_bytes())
        .collect();
    // A stable sort by the names' bytes (for UTF-8, the same order as by characters): fields
    // with the same name keep the order they came in.
    signed.sort_by(|a, b| a.0.cmp(b.0));
    sign_in_order(script, signed.into_iter().map(|(_, value)| value), secret)
}

/// The signature of `values` taken in the order given (a caller that orders nested fields
/// itself: the Merchant status API's answer).
pub fn sign_in_order<V: AsRef<[u8]>>(
    script: &str,
    values: impl IntoIterator<Item = V>,
    secret: &SecretString,
) -> String {
    let mut hasher = Md5::new();
    hasher.update(script.as_bytes());
    for value in values {
        hasher.update(b";");
        hasher.update(value.as_ref());
    }
    hasher.update(b";");
    hasher.update(secret.expose_secret().as_bytes());
    hex::encode(hasher.finalize())
}

/// Whether `given` is `expected`, compared in constant time.
pub fn same_signature(expected: &str, given: &[u8]) -> bool {
    expected.as_bytes().ct_eq(given).into()
}

/// Whether `fields` carry exactly one `pg_sig`, and it is theirs. Compared in constant time;
/// case matters (the provider sends lowercase hex).
pub fn verify<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    script: &str,
    fields: &[(N, V)],
    secret: &SecretString,
) -> bool {
    let mut given = fields
        .iter()
        .filter(|(name, _)| name.as_ref() == SIG.as_bytes());
    let (Some((_, sig)), None) = (given.next(), given.next()) else {
        return false;
    };
    same_signature(&sign(script, fields, secret), sig.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    /// RESULT_URL.md's worked example: `result;100.00;A-1;123;1;abc;k3y`.
    #[test]
    fn the_worked_example_signs_as_documented() {
        let given = fields(&[
            ("pg_salt", "abc"),
            ("pg_result", "1"),
            ("pg_payment_id", "123"),
            ("pg_order_id", "A-1"),
            ("pg_amount", "100.00"),
        ]);
        assert_eq!(
            sign("result", &given, &secret("k3y")),
            "a68b16b261548789fdc604b0086be6d6"
        );
        // The same string, hashed by hand: the order is the names', not the arrival's.
        assert_eq!(
            hex::encode(Md5::digest(b"result;100.00;A-1;123;1;abc;k3y")),
            "a68b16b261548789fdc604b0086be6d6"
        );
    }

    #[test]
    fn fields_sharing_a_name_keep_their_order_and_unknown_fields_are_signed() {
        let given = fields(&[("pg_x", "2"), ("pg_a", "z"), ("pg_x", "1"), ("custom", "c")]);
        assert_eq!(
            sign("result", &given, &secret("s")),
            hex::encode(Md5::digest(b"result;c;z;2;1;s"))
        );
    }

    #[test]
    fn only_the_right_single_signature_verifies() {
        let mut given = fields(&[("pg_payment_id", "123"), ("pg_salt", "abc")]);
        let sig = sign("result", &given, &secret("k3y"));
        given.push((SIG.to_owned(), sig.clone()));
        assert!(verify("result", &given, &secret("k3y")));
        assert!(!verify("result", &given, &secret("other")), "wrong secret");
        assert!(!verify("other", &given, &secret("k3y")), "wrong script");

        let mut tampered = given.clone();
        tampered[0].1 = "124".to_owned();
        assert!(
            !verify("result", &tampered, &secret("k3y")),
            "tampered value"
        );

        let mut added = given.clone();
        added.push(("pg_amount".to_owned(), "1.00".to_owned()));
        assert!(!verify("result", &added, &secret("k3y")), "an added field");

        let missing: Vec<_> = given.iter().filter(|(n, _)| n != SIG).cloned().collect();
        assert!(!verify("result", &missing, &secret("k3y")), "no signature");

        let mut twice = given.clone();
        twice.push((SIG.to_owned(), sig.clone()));
        assert!(!verify("result", &twice, &secret("k3y")), "two signatures");

        let mut upper = given.clone();
        upper.last_mut().unwrap().1 = sig.to_uppercase();
        assert!(!verify("result", &upper, &secret("k3y")), "not lowercase");
    }

    #[test]
    fn values_are_signed_as_the_bytes_sent_whatever_their_encoding() {
        // "Оплата" in windows-1251: not UTF-8, signed as it came.
        let cp1251: &[u8] = &[0xCE, 0xEF, 0xEB, 0xE0, 0xF2, 0xE0];
        let mut given: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"pg_description".to_vec(), cp1251.to_vec()),
            (b"pg_salt".to_vec(), b"abc".to_vec()),
        ];
        let mut by_hand = b"result;".to_vec();
        by_hand.extend_from_slice(cp1251);
        by_hand.extend_from_slice(b";abc;k3y");
        let sig = sign("result", &given, &secret("k3y"));
        assert_eq!(sig, hex::encode(Md5::digest(&by_hand)));
        given.push((SIG.as_bytes().to_vec(), sig.into_bytes()));
        assert!(verify("result", &given, &secret("k3y")));
        // Decoded lossily, the value is another one: the signature no longer holds.
        let lossy: Vec<(String, String)> = given
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        assert!(!verify("result", &lossy, &secret("k3y")));
    }
}
