//! Scenarios: which replies each payment id gets, in order, the last one repeating.
//!
//! A scenario is built in code (tests), read from a TOML or JSON file, or one of the
//! built-in mixes. See docs/simulator.md for the file format.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

use super::Reply;

/// The built-in mixes, for ids no rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    /// A realistic mix: most payments go process → success; some fail, some expire unpaid,
    /// a few are paid a different amount or currency, some are invisible at first, and a
    /// few answers are a 5xx or a 429.
    Realistic,
    /// Every payment is paid on the first answer, for the expected amount.
    Paid,
    /// The provider knows no payment.
    NotFound,
}

#[derive(Debug, Clone)]
enum Fallback {
    Replies(Vec<Reply>),
    Builtin(Builtin),
}

/// Which replies each payment id gets.
#[derive(Debug, Clone)]
pub struct Scenario {
    exact: HashMap<String, Vec<Reply>>,
    /// `(prefix, replies)`, longest prefix first.
    prefixes: Vec<(String, Vec<Reply>)>,
    fallback: Fallback,
}

impl Default for Scenario {
    fn default() -> Self {
        Self::builtin(Builtin::NotFound)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario file {path}: {reason}")]
    File { path: String, reason: String },
}

/// The file format: rules for exact ids or id prefixes, and a default for every other id.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    payments: Vec<Rule>,
    #[serde(default)]
    default: Option<DefaultRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    id: Option<String>,
    prefix: Option<String>,
    replies: Vec<Reply>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DefaultRule {
    Builtin(Builtin),
    Replies(Vec<Reply>),
}

impl Scenario {
    /// Every id not otherwise scripted is "not found".
    pub fn new() -> Self {
        Self::default()
    }

    pub fn builtin(builtin: Builtin) -> Self {
        Self {
            exact: HashMap::new(),
            prefixes: Vec::new(),
            fallback: Fallback::Builtin(builtin),
        }
    }

    /// Replies for one id, in order; the last repeats.
    pub fn payment(mut self, id: &str, replies: impl IntoIterator<Item = Reply>) -> Self {
        self.exact
            .insert(id.to_owned(), replies.into_iter().collect());
        self
    }

    /// Replies for every id that starts with `prefix` (the longest matching prefix wins).
    pub fn prefix(mut self, prefix: &str, replies: impl IntoIterator<Item = Reply>) -> Self {
        self.prefixes
            .push((prefix.to_owned(), replies.into_iter().collect()));
        self.prefixes
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        self
    }

    /// Replies for ids no rule matches.
    pub fn fallback(mut self, replies: impl IntoIterator<Item = Reply>) -> Self {
        self.fallback = Fallback::Replies(replies.into_iter().collect());
        self
    }

    /// Reads a scenario file: TOML, or JSON when the name ends in `.json`.
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let fail = |reason: String| ScenarioError::File {
            path: path.display().to_string(),
            reason,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        let file: ScenarioFile = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?
        } else {
            toml::from_str(&text).map_err(|e| fail(e.to_string()))?
        };
        let mut scenario = match file.default {
            None => Self::builtin(Builtin::NotFound),
            Some(DefaultRule::Builtin(builtin)) => Self::builtin(builtin),
            Some(DefaultRule::Replies(replies)) => Self::new().fallback(replies),
        };
        for (n, rule) in file.payments.into_iter().enumerate() {
            if rule.replies.is_empty() {
                return Err(fail(format!("payments[{n}]: replies is empty")));
            }
            scenario = match (rule.id, rule.prefix) {
                (Some(id), None) => scenario.payment(&id, rule.replies),
                (None, Some(prefix)) => scenario.prefix(&prefix, rule.replies),
                _ => {
                    return Err(fail(format!(
                        "payments[{n}]: give exactly one of id or prefix"
                    )));
                }
            };
        }
        Ok(scenario)
    }

    /// The reply to the `n`-th request (from 0) for `id`.
    pub fn reply(&self, id: &str, n: usize) -> Reply {
        let scripted = self.exact.get(id).or_else(|| {
            self.prefixes
                .iter()
                .find(|(prefix, _)| id.starts_with(prefix.as_str()))
                .map(|(_, replies)| replies)
        });
        let replies = match (scripted, &self.fallback) {
            (Some(replies), _) | (None, Fallback::Replies(replies)) => replies,
            (None, Fallback::Builtin(builtin)) => return builtin_reply(*builtin, id, n),
        };
        replies
            .get(n)
            .or(replies.last())
            .cloned()
            .unwrap_or_else(Reply::not_found)
    }
}

fn id_hash(id: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

/// The amount the built-in mixes charge for `id`: between 500.00 and 20499.99 KZT, fixed
/// per id, so a demo or benchmark can enqueue the amount the simulator will report.
pub fn expected_amount(id: &str) -> Decimal {
    let cents = 50_000 + (id_hash(id) >> 8) % 2_000_000;
    Decimal::new(cents as i64, 2)
}

fn builtin_reply(builtin: Builtin, id: &str, n: usize) -> Reply {
    let amount = expected_amount(id).to_string();
    // A 1.5 % acquiring fee on paid payments, rounded to the tiyn.
    let fee = (expected_amount(id) * Decimal::new(15, 3))
        .round_dp(2)
        .to_string();
    let invoice = |status: &str| {
        let reply = Reply::invoice(status, &amount, "KZT");
        match status {
            "success" => reply.with("fee", super::exact_number(&fee)),
            _ => reply,
        }
    };
    let sequence: Vec<Reply> = match builtin {
        Builtin::NotFound => vec![Reply::not_found()],
        Builtin::Paid => vec![invoice("success")],
        Builtin::Realistic => match id_hash(id) % 100 {
            0..=61 => vec![invoice("process"), invoice("success")],
            62..=71 => vec![invoice("waiting"), invoice("process"), invoice("success")],
            72..=79 => vec![invoice("process"), invoice("error")],
            // Expired unpaid: a one-second lifetime counted from creation.
            80..=86 => vec![
                invoice("waiting").with("lifetime", json!(1)),
                invoice("incomplete").with("lifetime", json!(1)),
            ],
            87..=90 => {
                let less = (expected_amount(id) - Decimal::new(10_000, 2)).to_string();
                vec![invoice("process"), Reply::invoice("success", &less, "KZT")]
            }
            91..=92 => vec![
                invoice("process"),
                Reply::invoice("success", &amount, "USD"),
            ],
            93..=94 => vec![
                Reply::not_found(),
                Reply::not_found(),
                invoice("process"),
                invoice("success"),
            ],
            95..=96 => vec![
                Reply::status(502, None),
                invoice("process"),
                invoice("success"),
            ],
            97..=98 => vec![Reply::status(429, Some("1")), invoice("success")],
            _ => vec![
                invoice("refunded").delayed(Duration::from_millis(20)),
                invoice("success"),
            ],
        },
    };
    let last = sequence.len() - 1;
    sequence[n.min(last)].clone()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn status_of(reply: &Reply) -> Option<String> {
        match reply {
            Reply::Json { body, .. } => body["paymentStatus"].as_str().map(str::to_owned),
            Reply::Delay { then, .. } => status_of(then),
            _ => None,
        }
    }

    #[test]
    fn sequences_repeat_their_last_reply_and_rules_take_precedence() {
        let scenario = Scenario::new()
            .payment(
                "1",
                [
                    Reply::invoice("process", "1", "KZT"),
                    Reply::invoice("success", "1", "KZT"),
                ],
            )
            .prefix("a", [Reply::invoice("error", "1", "KZT")])
            .prefix("ab", [Reply::invoice("waiting", "1", "KZT")]);
        let statuses: Vec<_> = (0..4).map(|n| status_of(&scenario.reply("1", n))).collect();
        assert_eq!(
            statuses,
            [
                Some("process"),
                Some("success"),
                Some("success"),
                Some("success")
            ]
            .map(|s| s.map(str::to_owned))
        );
        assert_eq!(
            status_of(&scenario.reply("abc", 0)).as_deref(),
            Some("waiting")
        );
        assert_eq!(
            status_of(&scenario.reply("axe", 0)).as_deref(),
            Some("error")
        );
        let Reply::Json { body, .. } = scenario.reply("zzz", 0) else {
            panic!("not found is a partner error body")
        };
        assert_eq!(body["error_code"], "404");
    }

    #[test]
    fn the_realistic_mix_is_mostly_paid_and_has_every_kind_of_trouble() {
        let scenario = Scenario::builtin(Builtin::Realistic);
        let mut finals: HashMap<String, usize> = HashMap::new();
        let mut troubles = 0;
        for i in 0..2000 {
            let id = format!("p-{i}");
            let first = scenario.reply(&id, 0);
            if matches!(first, Reply::Text { .. }) {
                troubles += 1;
            }
            let last = status_of(&scenario.reply(&id, 10)).unwrap_or_else(|| "not_found".into());
            *finals.entry(last).or_default() += 1;
        }
        assert!(finals["success"] > 1500, "{finals:?}");
        assert!(finals["error"] > 100, "{finals:?}");
        assert!(finals["incomplete"] > 100, "{finals:?}");
        assert!(troubles > 40, "5xx and 429 answers appear: {troubles}");
        // The same id always gets the same story.
        assert_eq!(
            status_of(&scenario.reply("p-7", 0)),
            status_of(&Scenario::builtin(Builtin::Realistic).reply("p-7", 0))
        );
    }

    #[test]
    fn expected_amounts_are_exact_cents_in_range() {
        for i in 0..1000 {
            let amount = expected_amount(&format!("x{i}"));
            assert_eq!(amount.scale(), 2);
            assert!(amount >= Decimal::new(50_000, 2) && amount < Decimal::new(2_050_000, 2));
        }
    }

    #[test]
    fn scenario_files_in_toml_and_json() {
        let mut toml_file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        write!(
            toml_file,
            r#"
            default = "paid"

            [[payments]]
            id = "1001"
            replies = [
              {{ kind = "json", body = {{ paymentStatus = "process", amount = "5000", currency = "KZT" }} }},
              {{ kind = "text", http_status = 429, retry_after = "2" }},
              {{ kind = "delay", delay = "50ms", then = {{ kind = "drop" }} }},
            ]

            [[payments]]
            prefix = "late-"
            replies = [{{ kind = "json", body = {{ status = "error", error_code = "404", error_description = "Payment not found" }} }}]
            "#
        )
        .unwrap();
        let scenario = Scenario::from_file(toml_file.path()).unwrap();
        assert_eq!(
            status_of(&scenario.reply("1001", 0)).as_deref(),
            Some("process")
        );
        assert_eq!(scenario.reply("1001", 1), Reply::status(429, Some("2")));
        assert!(matches!(scenario.reply("1001", 5), Reply::Delay { .. }));
        assert!(matches!(
            scenario.reply("late-1", 0),
            Reply::Json {
                http_status: 200,
                ..
            }
        ));
        assert_eq!(
            status_of(&scenario.reply("other", 0)).as_deref(),
            Some("success")
        );

        let mut json_file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
        write!(
            json_file,
            r#"{{"payments":[{{"id":"7","replies":[{{"kind":"json","body":{{"paymentStatus":"error","amount":12.5}}}}]}}],
               "default":[{{"kind":"text","http_status":502,"body":"<html>bad gateway</html>"}}]}}"#
        )
        .unwrap();
        let scenario = Scenario::from_file(json_file.path()).unwrap();
        assert_eq!(status_of(&scenario.reply("7", 0)).as_deref(), Some("error"));
        assert!(matches!(
            scenario.reply("8", 0),
            Reply::Text {
                http_status: 502,
                ..
            }
        ));
    }

    #[test]
    fn the_documented_example_scenario_loads() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/scenario.toml"
        ));
        let scenario = Scenario::from_file(path).unwrap();
        assert_eq!(
            status_of(&scenario.reply("1001", 1)).as_deref(),
            Some("success")
        );
        assert!(matches!(
            scenario.reply("1003", 1),
            Reply::Text {
                http_status: 502,
                ..
            }
        ));
        assert!(matches!(scenario.reply("slow-9", 0), Reply::Delay { .. }));
        assert_eq!(scenario.reply("slow-9", 1), Reply::status(429, Some("3")));
        assert_eq!(scenario.reply("flaky-1", 0), Reply::Drop);
        assert!(status_of(&scenario.reply("anything-else", 5)).is_some());
    }

    #[test]
    fn bad_scenario_files_are_named() {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        write!(
            file,
            "[[payments]]\nid = \"1\"\nprefix = \"2\"\nreplies = [{{ kind = \"drop\" }}]\n"
        )
        .unwrap();
        let err = Scenario::from_file(file.path()).unwrap_err().to_string();
        assert!(err.contains("exactly one of id or prefix"), "{err}");

        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        write!(
            file,
            "[[payments]]\nid = \"1\"\nreplies = [{{ kind = \"teleport\" }}]\n"
        )
        .unwrap();
        let err = Scenario::from_file(file.path()).unwrap_err().to_string();
        assert!(err.contains("scenario file"), "{err}");
    }
}
