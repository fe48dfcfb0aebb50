//! How setting values are read: durations, lists, addresses.

use super::*;

/// An empty string is "none".
pub(super) fn optional_address<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let raw = String::deserialize(deserializer)?;
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{raw:?} is not an address like 127.0.0.1:9187 (empty turns the listener off)"
        ))
    })
}

/// `["30s", "1m"]` in a file; `30s,1m` in an environment variable.
/// A list, or a comma-separated string (as environment variables give it).
pub(super) fn strings<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Form::deserialize(deserializer)? {
        Form::List(items) => items,
        Form::Csv(csv) => csv
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    })
}

/// How a duration is written, for messages: `humantime_serde`'s own ("expected a duration")
/// shows no form that would do.
pub(super) const DURATION_EXAMPLES: &str =
    "write a number and a unit, e.g. \"30s\", \"5m\" or \"1h 30m\"";

/// `raw` as a duration in humantime's forms, or a message quoting it with examples.
pub(super) fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw.trim()).map_err(|e| {
        format!(
            "{} is not a duration ({e}); {DURATION_EXAMPLES}",
            crate::text::excerpt(raw)
        )
    })
}

/// A duration setting: a string in humantime's forms (`"30s"`, `"1h 30m"`). A bare number is
/// refused with the forms shown: seconds or minutes, nobody could tell.
pub(super) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a duration such as \"30s\"")
        }
        fn visit_str<E: serde::de::Error>(self, raw: &str) -> Result<Duration, E> {
            parse_duration(raw).map_err(E::custom)
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "{n} has no unit; {DURATION_EXAMPLES}, as a string"
            )))
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "{n} has no unit; {DURATION_EXAMPLES}, as a string"
            )))
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "{n} has no unit; {DURATION_EXAMPLES}, as a string"
            )))
        }
    }
    deserializer.deserialize_any(Visitor)
}

pub(super) fn durations<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Csv(String),
    }
    let items = match Form::deserialize(deserializer)? {
        Form::List(items) => items,
        Form::Csv(csv) => csv.split(',').map(|s| s.trim().to_owned()).collect(),
    };
    items
        .iter()
        .map(|item| parse_duration(item).map_err(serde::de::Error::custom))
        .collect()
}
