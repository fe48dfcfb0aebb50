//! The Freedom Pay Partner API client: the `X-JWS-Signature` signer, the request, a tolerant
//! parser for what comes back, and the one place that classifies every failure.

mod client;
mod jws;
pub mod merchant_status;
mod parse;

pub use client::{
    Classified, Fetched, Limits, ProviderClient, ProviderSettingsError, ResponseHead, classify,
};
pub use jws::{Signer, VerifyError, protected_header, sign_detached, verify_detached};
pub use parse::{ApiError, Body, ParseError, parse_body};

/// The one endpoint the daemon polls.
pub const INVOICE_INFO_PATH: &str = "/v5/partner/invoice/info";

/// Which `params` the signature covers: a setting, re-exported where the protocol uses it.
pub use crate::settings::ParamsMode;
