//! Detached JWS (RFC 7515 appendix F) for the `X-JWS-Signature` header:
//!
//! ```text
//! X-JWS-Signature = b64url(header_json) + ".." + b64url(HMAC-SHA256(secret, signing_input))
//! signing_input   = b64url(header_json) + "." + b64url(body)
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::settings::ParamsMode;

type HmacSha256 = Hmac<Sha256>;

/// The protected header, fields in the order the provider's examples use (the order matters
/// only for reproducing known answers: we sign the exact bytes we send).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProtectedHeader {
    pub alg: String,
    pub auth_id: String,
    pub uri: String,
    pub method: String,
    pub params: String,
}

/// The exact protected-header JSON for a request.
pub fn protected_header(auth_id: &str, uri: &str, method: &str, params: &str) -> String {
    let header = ProtectedHeader {
        alg: "HS256".into(),
        auth_id: auth_id.into(),
        uri: uri.into(),
        method: method.into(),
        params: params.into(),
    };
    serde_json::to_string(&header).expect("a struct of strings always serializes")
}

fn mac(secret: &[u8], header_b64: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(header_b64.as_bytes());
    mac.update(b".");
    mac.update(B64.encode(body).as_bytes());
    mac
}

/// Signs `body` under `header_json`, returning the `X-JWS-Signature` value.
pub fn sign_detached(header_json: &str, body: &[u8], secret: &[u8]) -> String {
    let header_b64 = B64.encode(header_json);
    let signature = mac(secret, &header_b64, body).finalize().into_bytes();
    format!("{header_b64}..{}", B64.encode(signature))
}

/// Why a presented `X-JWS-Signature` was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature is not a detached JWS (header..signature)")]
    Malformed,
    #[error(
        "the protected header is not valid base64url JSON with alg, auth_id, uri, method, params"
    )]
    BadHeader,
    #[error("unsupported alg {0:?}; only HS256 is accepted")]
    UnsupportedAlg(String),
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks a detached JWS in constant time and returns its protected header.
pub fn verify_detached(
    signature: &str,
    body: &[u8],
    secret: &[u8],
) -> Result<ProtectedHeader, VerifyError> {
    let (header_b64, mac_b64) = signature.split_once("..").ok_or(VerifyError::Malformed)?;
    let header_json = B64.decode(header_b64).map_err(|_| VerifyError::BadHeader)?;
    let header: ProtectedHeader =
        serde_json::from_slice(&header_json).map_err(|_| VerifyError::BadHeader)?;
    if header.alg != "HS256" {
        return Err(VerifyError::UnsupportedAlg(header.alg));
    }
    let presented = B64.decode(mac_b64).map_err(|_| VerifyError::Malformed)?;
    mac(secret, header_b64, body)
        .verify_slice(&presented)
        .map_err(|_| VerifyError::Mismatch)?;
    Ok(header)
}

/// Signs requests for one partner account.
pub struct Signer {
    auth_id: String,
    secret: SecretString,
    params: ParamsMode,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("auth_id", &self.auth_id)
            .field("secret", &"[REDACTED]")
            .field("params", &self.params)
            .finish()
    }
}

impl Signer {
    pub fn new(auth_id: String, secret: SecretString, params: ParamsMode) -> Self {
        Self {
            auth_id,
            secret,
            params,
        }
    }

    /// The header value for a GET of `path` with `query` (without `?`).
    pub fn sign_get(&self, path: &str, query: &str) -> String {
        let params = match self.params {
            ParamsMode::Query => query,
            ParamsMode::Empty => "",
        };
        let header = protected_header(&self.auth_id, path, "GET", params);
        sign_detached(&header, b"", self.secret.expose_secret().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Vectors {
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        name: String,
        header_json: String,
        body: String,
        secret: String,
        signing_input: String,
        x_jws_signature: String,
    }

    fn vectors() -> Vec<Case> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/provider/jws-vectors.json"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {path}: {e} (see tests/fixtures/README.md)"));
        let vectors: Vectors = serde_json::from_str(&text).expect("jws-vectors.json parses");
        assert!(vectors.cases.len() >= 4, "every known answer is present");
        vectors.cases
    }

    #[test]
    fn reproduces_every_known_answer_byte_for_byte() {
        for case in vectors() {
            let header_b64 = B64.encode(&case.header_json);
            assert_eq!(
                format!("{header_b64}.{}", B64.encode(&case.body)),
                case.signing_input,
                "{}: signing input",
                case.name
            );
            let signature = sign_detached(
                &case.header_json,
                case.body.as_bytes(),
                case.secret.as_bytes(),
            );
            assert_eq!(signature, case.x_jws_signature, "{}", case.name);
            let header = verify_detached(&signature, case.body.as_bytes(), case.secret.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(header.alg, "HS256");
        }
    }

    #[test]
    fn builds_the_vector_headers_from_request_parts() {
        let cases = vectors();
        let query = cases
            .iter()
            .find(|c| c.name == "invoice_info_get_params_query")
            .unwrap();
        let signer = Signer::new(
            "123456".into(),
            SecretString::from(query.secret.clone()),
            ParamsMode::Query,
        );
        assert_eq!(
            signer.sign_get("/v5/partner/invoice/info", "payment_id=1234567890"),
            query.x_jws_signature
        );

        let empty = cases
            .iter()
            .find(|c| c.name == "invoice_info_get_params_empty")
            .unwrap();
        let signer = Signer::new(
            "123456".into(),
            SecretString::from(empty.secret.clone()),
            ParamsMode::Empty,
        );
        assert_eq!(
            signer.sign_get("/v5/partner/invoice/info", "payment_id=1234567890"),
            empty.x_jws_signature
        );

        let cyrillic = cases
            .iter()
            .find(|c| c.name == "non_ascii_secret_and_params")
            .unwrap();
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payment_id", "Счет")
            .finish();
        let signer = Signer::new(
            "42".into(),
            SecretString::from(cyrillic.secret.clone()),
            ParamsMode::Query,
        );
        assert_eq!(
            signer.sign_get("/v5/partner/invoice/info", &query),
            cyrillic.x_jws_signature
        );
    }

    #[test]
    fn rejects_a_wrong_secret_a_tampered_body_and_garbage() {
        let header = protected_header("1", "/v5/partner/invoice/info", "GET", "payment_id=1");
        let signature = sign_detached(&header, b"", b"right");
        assert_eq!(
            verify_detached(&signature, b"", b"wrong"),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_detached(&signature, b"x", b"right"),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_detached("not-a-jws", b"", b"right"),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify_detached("e30..AAAA", b"", b"right"),
            Err(VerifyError::BadHeader)
        );
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let signer = Signer::new(
            "1".into(),
            SecretString::from("hunter2-secret"),
            ParamsMode::Query,
        );
        assert!(!format!("{signer:?}").contains("hunter2"));
    }
}
