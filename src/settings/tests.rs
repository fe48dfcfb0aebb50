//! The settings: defaults, layers, bounds and every error a person sees.

use std::io::Write;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn the_default_script_name_is_the_paths_last_segment() {
    assert_eq!(default_script_name("/freedompay/result"), "result");
    assert_eq!(default_script_name("result"), "result");
}

#[test]
fn defaults_alone_are_valid() {
    let s = Settings::load_from(None, env(&[])).unwrap();
    assert_eq!(s.poll.recheck.len(), 5);
    assert_eq!(s.poll.recheck[4], Duration::from_secs(24 * 3600));
    assert_eq!(s.poll.first_poll_after, Duration::from_secs(120));
    assert_eq!(s.poll.lease, Duration::from_secs(300));
    assert_eq!(s.provider.params, ParamsMode::Query);
    assert_eq!(s.reconcile.amount_tolerance, Decimal::ZERO);
    assert_eq!(s.http.listen, None, "no listener unless asked");
}

#[test]
fn auto_close_rules_are_named_and_an_empty_list_keeps_every_flag_open() {
    use crate::domain::AutoClose;
    let s = Settings::load_from(None, env(&[])).unwrap();
    assert_eq!(s.policy().auto_close, [AutoClose::ExpiredUnpaid]);
    let f = file("[flags]\nauto_close = []\n");
    let s = Settings::load_from(Some(f.path()), env(&[])).unwrap();
    assert!(s.policy().auto_close.is_empty());
    let f = file("[flags]\nauto_close = [\"expired\"]\n");
    let e = Settings::load_from(Some(f.path()), env(&[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "configuration: flags.auto_close: unknown rule \"expired\"; the rules are expired_unpaid"
    );
}

#[test]
fn file_then_database_url_then_prefixed_environment() {
    let f = file(
        r#"
        [database]
        url = "postgres://file-host/db"
        [provider]
        auth_id = "007"
        [poll]
        rate_per_second = 50
        recheck = ["10s", "2m"]
        [reconcile]
        amount_tolerance = "0.01"
        "#,
    );
    let s = Settings::load_from(Some(f.path()), env(&[])).unwrap();
    assert_eq!(s.database.describe(), "file-host:5432/db");
    assert_eq!(s.provider.auth_id, "007", "leading zeros kept");
    assert_eq!(s.poll.rate_per_second, 50);
    assert_eq!(
        s.poll.recheck,
        [Duration::from_secs(10), Duration::from_secs(120)]
    );
    assert_eq!(s.reconcile.amount_tolerance.to_string(), "0.01");

    let s = Settings::load_from(
        Some(f.path()),
        env(&[
            ("DATABASE_URL", "postgres://env-host/envdb"),
            ("FREEDOMPAY_RECON__POLL__RATE_PER_SECOND", "7"),
            ("FREEDOMPAY_RECON__POLL__RECHECK", "1s,2s,3s"),
            ("FREEDOMPAY_RECON__PROVIDER__SECRET", "s3cr3t"),
        ]),
    )
    .unwrap();
    assert_eq!(s.database.describe(), "env-host:5432/envdb");
    assert_eq!(s.poll.rate_per_second, 7);
    assert_eq!(s.poll.recheck.len(), 3);
    assert_eq!(s.provider.secret.expose_secret(), "s3cr3t");

    let s = Settings::load_from(
        None,
        env(&[
            ("DATABASE_URL", "postgres://env-host/envdb"),
            ("FREEDOMPAY_RECON__DATABASE__URL", "postgres://prefixed/db2"),
        ]),
    )
    .unwrap();
    assert_eq!(s.database.describe(), "prefixed:5432/db2");
}

#[test]
fn no_tls_is_negotiated_on_loopback_unless_asked_for() {
    use sqlx::postgres::PgSslMode;
    let mode = |url: &str| {
        let s = Settings::load_from(None, env(&[("DATABASE_URL", url)])).unwrap();
        s.database.connect_options().unwrap().get_ssl_mode()
    };
    assert!(matches!(
        mode("postgres://u@127.0.0.1/d"),
        PgSslMode::Disable
    ));
    assert!(matches!(
        mode("postgres://u@localhost:5433/d"),
        PgSslMode::Disable
    ));
    assert!(matches!(mode("postgres://u@[::1]/d"), PgSslMode::Disable));
    assert!(matches!(
        mode("postgres://u@db.example/d"),
        PgSslMode::Prefer
    ));
    assert!(matches!(
        mode("postgres://u@127.0.0.1/d?sslmode=require"),
        PgSslMode::Require
    ));
    assert!(matches!(
        mode("postgres://u@127.0.0.1/d?ssl-mode=verify-full"),
        PgSslMode::VerifyFull
    ));
}

#[test]
fn an_empty_variable_does_not_override_a_configured_value() {
    let f = file("[database]\nurl = \"postgres://file-host/db\"\n");
    for empty in [
        ("DATABASE_URL", ""),
        ("FREEDOMPAY_RECON__DATABASE__URL", ""),
        ("FREEDOMPAY_RECON__POLL__RATE_PER_SECOND", ""),
    ] {
        let s = Settings::load_from(Some(f.path()), env(&[empty])).unwrap();
        assert_eq!(s.database.describe(), "file-host:5432/db", "{empty:?}");
        assert_eq!(s.poll.rate_per_second, 20, "{empty:?}");
    }
}

#[test]
fn secrets_never_show_in_debug_output() {
    let s = Settings::load_from(
        None,
        env(&[
            ("FREEDOMPAY_RECON__PROVIDER__SECRET", "top-secret-value"),
            ("DATABASE_URL", "postgres://u:db-password@h/d"),
            (
                "FREEDOMPAY_RECON__WEBHOOK__URL",
                "https://erp.example/hooks?token=webhook-url-token",
            ),
            // whsec_ and the base64 of "webhook-signing-secret-24".
            (
                "FREEDOMPAY_RECON__WEBHOOK__SECRET",
                "whsec_d2ViaG9vay1zaWduaW5nLXNlY3JldC0yNA==",
            ),
        ]),
    )
    .unwrap();
    let dump = format!("{s:?} {:?}", s.webhook.signing_key().unwrap());
    assert!(!dump.contains("top-secret-value"), "{dump}");
    assert!(!dump.contains("db-password"), "{dump}");
    assert!(!dump.contains("webhook-url-token"), "{dump}");
    assert!(
        !dump.contains("d2ViaG9vay1zaWduaW5nLXNlY3JldC0yNA"),
        "{dump}"
    );
    assert!(!dump.contains("webhook-signing-secret"), "{dump}");
    // Nor the key's bytes, as Debug would print a byte slice.
    assert!(!dump.contains("119, 101, 98"), "{dump}");
}

#[test]
fn bad_values_name_the_setting() {
    let cases = [
        (
            "FREEDOMPAY_RECON__POLL__CONCURRENCY",
            "0",
            "poll.concurrency",
        ),
        ("FREEDOMPAY_RECON__POLL__CONCURRENCY", "many", "concurrency"),
        (
            "FREEDOMPAY_RECON__POLL__RECHECK",
            "soon",
            "\"soon\" is not a duration",
        ),
        ("FREEDOMPAY_RECON__POLL__LEASE", "5s", "poll.lease"),
        ("FREEDOMPAY_RECON__POLL__WRITERS", "0", "poll.writers"),
        ("FREEDOMPAY_RECON__POLL__WRITERS", "9", "poll.writers"),
        (
            "FREEDOMPAY_RECON__PROVIDER__NAIVE_UTC_OFFSET",
            "Almaty",
            "naive_utc_offset",
        ),
        ("FREEDOMPAY_RECON__PROVIDER__PARAMS", "body", "params"),
        (
            "FREEDOMPAY_RECON__RECONCILE__AMOUNT_TOLERANCE",
            "1,5",
            "amount_tolerance",
        ),
        (
            "FREEDOMPAY_RECON__POLL__RATE_PER_SECOUND",
            "5",
            "environment variable FREEDOMPAY_RECON__POLL__RATE_PER_SECOUND (did you mean \
             FREEDOMPAY_RECON__POLL__RATE_PER_SECOND?)",
        ),
        ("DATABASE_URL", "mysql://x:pw@y/z", "database.url"),
        (
            "FREEDOMPAY_RECON__HTTP__LISTEN",
            "localhost",
            "is not an address",
        ),
        // These were accepted and broke the daemon (a panic, or every poll timing out).
        (
            "FREEDOMPAY_RECON__DATABASE__MAX_CONNECTIONS",
            "0",
            "database.max_connections: must be between 1 and 1000",
        ),
        (
            "FREEDOMPAY_RECON__PROVIDER__TIMEOUT",
            "0s",
            "provider.timeout: must be between 1ms and 10m",
        ),
        (
            "FREEDOMPAY_RECON__PROVIDER__CONNECT_TIMEOUT",
            "0s",
            "provider.connect_timeout: must be between 1ms and 10m",
        ),
    ];
    for (key, value, named) in cases {
        let err = Settings::load_from(None, env(&[(key, value)]))
            .err()
            .unwrap_or_else(|| panic!("{key}={value} accepted"));
        let message = err.to_string();
        assert!(message.contains(named), "{key}={value}: {message}");
        assert!(!message.contains("pw@"), "{message}");
    }
}

#[test]
fn an_environment_variable_that_names_no_setting_is_refused_by_its_name() {
    let f = file("[poll]\nrate_per_second = 5\n");
    let e = Settings::load_from(
        Some(f.path()),
        env(&[("FREEDOMPAY_RECON__POLL__SCHEDUEL", "*/5 * * * * *")]),
    )
    .unwrap_err()
    .to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(
        e.starts_with(
            "configuration: environment variable FREEDOMPAY_RECON__POLL__SCHEDUEL (did you \
             mean FREEDOMPAY_RECON__POLL__SCHEDULE?): not a setting; fix the name or unset it"
        ),
        "{e}"
    );
    assert!(
        !e.contains(&f.path().display().to_string()),
        "not the file's: {e}"
    );
    // Every one at once, as the environment source reads them: any case, none empty.
    let e = Settings::load_from(
        None,
        env(&[
            ("freedompay_recon__poll__schedueL", "*/5 * * * * *"),
            ("FREEDOMPAY_RECON__NOTHING_LIKE_IT", "1"),
            ("FREEDOMPAY_RECON__POLL__LEESE", ""),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(
            "configuration: environment variables FREEDOMPAY_RECON__NOTHING_LIKE_IT, \
             freedompay_recon__poll__schedueL (did you mean FREEDOMPAY_RECON__POLL__SCHEDULE?): \
             not a setting"
        ),
        "{e}"
    );
    let s = Settings::load_from(
        None,
        env(&[
            ("freedompay_recon__poll__rate_per_second", "7"),
            ("FREEDOMPAY_RECON_CONFIG", "/elsewhere.toml"),
            ("FREEDOMPAY_RECON_DIGEST_POST", "https://chat.example/hook"),
        ]),
    )
    .unwrap();
    assert_eq!(s.poll.rate_per_second, 7);
}

#[test]
fn a_bad_value_names_the_variable_it_came_from_rather_than_the_file() {
    let f = file("[poll]\nlease = \"5m\"\n");
    let e = Settings::load_from(
        Some(f.path()),
        env(&[("FREEDOMPAY_RECON__POLL__LEASE", "5 minutes please")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(
            "configuration: environment variable FREEDOMPAY_RECON__POLL__LEASE: poll.lease: \
             \"5 minutes please\" is not a duration"
        ),
        "{e}"
    );
    let bad = file("[poll]\nlease = \"5 minutes please\"\n");
    let e = Settings::load_from(Some(bad.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "config file {}: poll.lease: \"5 minutes please\" is not a duration",
            bad.path().display()
        )),
        "{e}"
    );
}

#[test]
fn a_bad_duration_is_answered_with_examples_of_good_ones() {
    let examples = r#"write a number and a unit, e.g. "30s", "5m" or "1h 30m""#;
    for (text, problem) in [
        (
            "[poll]\nlease = \"5 minutes please\"\n",
            "poll.lease: \"5 minutes please\" is not a duration",
        ),
        ("[poll]\nlease = 300\n", "poll.lease: 300 has no unit"),
        (
            "[poll]\nrecheck = [\"1m\", \"soon\"]\n",
            "poll.recheck: \"soon\" is not a duration",
        ),
        (
            "[webhook]\ntimeout = \"ten seconds\"\n",
            "webhook.timeout: \"ten seconds\" is not a duration",
        ),
    ] {
        let f = file(text);
        let e = Settings::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(problem) && e.contains(examples), "{text}: {e}");
    }
    let s = Settings::load_from(None, env(&[("FREEDOMPAY_RECON__POLL__LEASE", "1h 30m")])).unwrap();
    assert_eq!(s.poll.lease, Duration::from_secs(5400));
}

#[test]
fn every_credential_not_set_is_named_in_one_message() {
    let e = Settings::load_from(
        None,
        env(&[
            ("FREEDOMPAY_RECON__CALLBACKS__LISTEN", "127.0.0.1:9188"),
            (
                "FREEDOMPAY_RECON__WEBHOOK__URL",
                "https://erp.example/hooks",
            ),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(
        e.starts_with(
            "configuration: provider.auth_id, provider.secret, merchant.secret and \
             webhook.secret are not set: set FREEDOMPAY_RECON__PROVIDER__AUTH_ID (the \
             partner id"
        ),
        "{e}"
    );
    for variable in [
        "FREEDOMPAY_RECON__PROVIDER__SECRET (the partner secret)",
        "FREEDOMPAY_RECON__MERCHANT__SECRET",
        "FREEDOMPAY_RECON__WEBHOOK__SECRET",
        "systemd: in the EnvironmentFile",
    ] {
        assert!(e.contains(variable), "{variable} in {e}");
    }
    // Without callbacks or a webhook, `run` and `check` name the partner's two together.
    let s = Settings::load_from(None, env(&[])).unwrap();
    let e = crate::provider::ProviderClient::new(&s.provider)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "provider.auth_id and provider.secret are not set: set \
             FREEDOMPAY_RECON__PROVIDER__AUTH_ID (the partner id; it may also go in the \
             config file) and FREEDOMPAY_RECON__PROVIDER__SECRET (the partner secret)"
        ),
        "{e}"
    );
}

#[test]
fn a_schedule_that_never_fires_is_refused() {
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let now = at("2026-12-01T00:00:00Z");
    assert!(check_schedule("*/10 * * * * *", now).is_ok());
    // The 29th of February: over a year away from this December, not from next March.
    assert!(check_schedule("0 0 9 29 2 *", now).is_err());
    assert!(check_schedule("0 0 9 29 2 *", at("2027-03-01T00:00:00Z")).is_ok());
    let never = check_schedule("0 0 0 31 2 *", now).unwrap_err().to_string();
    assert!(
        never.contains("poll.schedule: \"0 0 0 31 2 *\" never fires within a year"),
        "{never}"
    );
    let e = Settings::load_from(
        None,
        env(&[("FREEDOMPAY_RECON__POLL__SCHEDULE", "0 0 0 31 2 *")]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("never fires"), "{e}");
    let e = check_schedule("every minute", now).unwrap_err().to_string();
    assert!(e.contains("is not a cron expression with seconds"), "{e}");
}

/// Settings with a webhook to `https://erp.example/hooks`, signed with `secret` in
/// `format` (none: the default).
fn webhook(secret: &str, format: Option<&str>) -> Result<Settings, SettingsError> {
    let mut vars = vec![
        (
            "FREEDOMPAY_RECON__WEBHOOK__URL",
            "https://erp.example/hooks",
        ),
        ("FREEDOMPAY_RECON__WEBHOOK__SECRET", secret),
        ("FREEDOMPAY_RECON__PROVIDER__AUTH_ID", "1"),
        ("FREEDOMPAY_RECON__PROVIDER__SECRET", "partner-secret"),
    ];
    vars.extend(format.map(|f| ("FREEDOMPAY_RECON__WEBHOOK__FORMAT", f)));
    Settings::load_from(None, env(&vars))
}

/// `whsec_` and the base64 of `n` bytes.
fn whsec(n: usize) -> String {
    let key: Vec<u8> = (0..n as u8).collect();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

#[test]
fn a_webhook_secret_of_spaces_is_no_secret() {
    let e = webhook(&" ".repeat(16), Some("github"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("webhook.secret: must be set, at least 16"),
        "{e}"
    );
    let e = webhook(&" ".repeat(16), None).unwrap_err().to_string();
    assert!(
        e.contains("webhook.secret: must be set when webhook.url is"),
        "{e}"
    );
}

#[test]
fn the_github_format_keeps_the_sixteen_character_rule_and_the_secrets_own_bytes() {
    let s = webhook("0123456789abcdef", Some("github")).unwrap();
    assert_eq!(s.webhook.format, WebhookFormat::Github);
    assert_eq!(
        s.webhook.signing_key().unwrap().expose_secret(),
        b"0123456789abcdef"
    );
    let e = webhook("0123456789abcde", Some("github"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 16 characters"), "{e}");
    // A whsec_ secret is, to the GitHub shape, just characters.
    let s = webhook(&whsec(24), Some("github")).unwrap();
    assert_eq!(
        s.webhook.signing_key().unwrap().expose_secret(),
        whsec(24).as_bytes()
    );
}

#[test]
fn the_webhook_format_is_standard_or_github_and_nothing_else() {
    let defaults = Settings::load_from(None, env(&[])).unwrap();
    assert_eq!(defaults.webhook.format, WebhookFormat::Standard);
    let e = webhook(&whsec(24), Some("svix")).unwrap_err().to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(
        e.starts_with(
            r#"configuration: webhook.format: "svix" is not a format; use "standard" (Standard Webhooks) or "github""#
        ),
        "{e}"
    );
    let f = file("[webhook]\nformat = \"GitHub\"\n");
    let e = Settings::load_from(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("webhook.format"), "{e}");
}

/// A configuration written before `webhook.format` existed (a plain secret, no format)
/// must not switch to the new shape silently: it is refused, with both ways on.
#[test]
fn a_plain_secret_under_the_standard_format_is_refused_with_both_ways_on() {
    let old = "an-old-plain-secret-0123";
    for format in [None, Some("standard")] {
        let e = webhook(old, format).unwrap_err().to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(
            e.starts_with("configuration: webhook.secret: is not a Standard Webhooks secret"),
            "{e}"
        );
        assert!(e.contains(r#"set webhook.format = "github""#), "{e}");
        assert!(
            e.contains(r#"echo "whsec_$(openssl rand -base64 32)""#),
            "{e}"
        );
        assert!(!e.contains(old), "the secret is never quoted: {e}");
    }
    assert!(webhook(old, Some("github")).is_ok());
}

#[test]
fn a_whsec_secret_is_base64_of_at_least_sixteen_bytes() {
    let s = webhook(&whsec(24), None).unwrap();
    let key: Vec<u8> = (0..24).collect();
    assert_eq!(s.webhook.signing_key().unwrap().expose_secret(), &key[..]);
    assert!(webhook(&whsec(16), None).is_ok());
    assert!(webhook(&whsec(64), None).is_ok());
    // Surrounding spaces are no part of base64: a trailing newline is forgiven.
    assert!(webhook(&format!(" {}\n", whsec(32)), None).is_ok());

    let short = whsec(15);
    let e = webhook(&short, None).unwrap_err().to_string();
    assert!(
        e.contains("webhook.secret: holds 15 key bytes; at least 16 are needed"),
        "{e}"
    );
    assert!(!e.contains(&short[6..]), "{e}");
    for bad in [
        "whsec_not base64 at all!!",
        // Unpadded: some receivers' libraries refuse it, so it is refused here first.
        "whsec_AAECAwQFBgcICQoLDA0ODxA",
    ] {
        let e = webhook(bad, None).unwrap_err().to_string();
        assert!(
            e.contains("webhook.secret: the part after whsec_ is not base64"),
            "{bad}: {e}"
        );
        assert!(!e.contains(&bad[6..]), "{bad}: {e}");
    }
    let e = webhook("whsec_", None).unwrap_err().to_string();
    assert!(e.contains("webhook.secret: holds 0 key bytes"), "{e}");
}

#[test]
fn a_broken_config_file_never_echoes_its_secrets() {
    let broken = file("[provider]\nauth_id = \"1\"\nsecret = \"hunter2-secret\n");
    let err = Settings::load_from(Some(broken.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not valid TOML at line 3 (`secret = …`)"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    let duplicate = file("[provider]\nsecret = \"a-secret\"\nsecret = \"b-secret\"\n");
    let err = Settings::load_from(Some(duplicate.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not valid TOML at line 3 (`secret = …`)") && err.contains("duplicate"),
        "{err}"
    );
    assert!(!err.contains("-secret"), "{err}");
}

#[test]
fn a_missing_or_broken_config_file_is_named() {
    let missing = Path::new("/nonexistent/freedompay.toml");
    let err = Settings::load_from(Some(missing), env(&[])).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/freedompay.toml"));

    let broken = file("[poll\nrate = ");
    let err = Settings::load_from(Some(broken.path()), env(&[])).unwrap_err();
    assert!(
        err.to_string()
            .contains(&broken.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn only_a_default_config_file_that_is_not_there_means_no_file() {
    let missing = Path::new("/nonexistent/freedompay-recon/config.toml");
    let s = Settings::load_with_default(None, missing, env(&[])).unwrap();
    assert_eq!(s.poll.rate_per_second, 20, "the defaults");

    // There, but not a file to read: an error naming it, never the defaults.
    let dir = tempfile::tempdir().unwrap();
    let e = Settings::load_with_default(None, dir.path(), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "config file {}: is a directory, not a file; the default config file is read \
             whenever it exists: fix it, or name another with --config",
            dir.path().display()
        )),
        "{e}"
    );
    let latin1 = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(latin1.path(), b"[poll]\n# r\xe9sum\xe9\n").unwrap();
    let e = Settings::load_with_default(None, latin1.path(), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not UTF-8 text"), "{e}");
    // And read when it is there.
    let typo = file("[poll]\nschedueL = \"* * * * * *\"\n");
    let e = Settings::load_with_default(None, typo.path(), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `schedueL`"), "{e}");
    // A file given with --config must be there.
    let e = Settings::load_with_default(Some(missing), missing, env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("no such file; pass a readable TOML file to --config"),
        "{e}"
    );
}

#[test]
fn callbacks_are_off_by_default_and_checked_when_on() {
    let defaults = Settings::load_from(None, env(&[])).unwrap();
    assert_eq!(defaults.callbacks.listen, None);
    assert_eq!(defaults.callbacks.script_name(), "result");
    assert!(!format!("{:?}", defaults.callbacks).contains("secret: \"\""));

    let on = |extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("FREEDOMPAY_RECON__CALLBACKS__LISTEN", "127.0.0.1:9188"),
            ("FREEDOMPAY_RECON__MERCHANT__SECRET", "merchant-key-0123456"),
        ];
        pairs.extend_from_slice(extra);
        Settings::load_from(None, env(&pairs))
    };
    let settings = on(&[]).unwrap();
    assert!(!format!("{settings:?}").contains("merchant-key"));
    assert_eq!(
        on(&[(
            "FREEDOMPAY_RECON__CALLBACKS__SCRIPT_NAME",
            "payment_result.php"
        )])
        .unwrap()
        .callbacks
        .script_name(),
        "payment_result.php"
    );
    for (key, value, named) in [
        ("FREEDOMPAY_RECON__MERCHANT__SECRET", " ", "merchant.secret"),
        (
            "FREEDOMPAY_RECON__HTTP__LISTEN",
            "127.0.0.1:9188",
            "callbacks.listen",
        ),
        (
            "FREEDOMPAY_RECON__CALLBACKS__PATH",
            "result?x=1",
            "callbacks.path",
        ),
        (
            "FREEDOMPAY_RECON__CALLBACKS__SCRIPT_NAME",
            "a;b",
            "callbacks.script_name",
        ),
    ] {
        let err = on(&[(key, value)]).unwrap_err().to_string();
        assert!(err.contains(named), "{key}={value}: {err}");
        assert!(!err.contains("merchant-key"), "{err}");
    }
}

#[test]
fn a_merchant_secret_shorter_than_sixteen_characters_is_refused_unless_allowed() {
    let load = |secret: &str, allow: Option<&str>| {
        let mut pairs = vec![
            ("FREEDOMPAY_RECON__CALLBACKS__LISTEN", "127.0.0.1:9188"),
            ("FREEDOMPAY_RECON__MERCHANT__SECRET", secret),
            ("FREEDOMPAY_RECON__PROVIDER__AUTH_ID", "1"),
            ("FREEDOMPAY_RECON__PROVIDER__SECRET", "partner-secret"),
        ];
        pairs.extend(allow.map(|a| ("FREEDOMPAY_RECON__MERCHANT__ALLOW_SHORT_SECRET", a)));
        Settings::load_from(None, env(&pairs))
    };
    for short in ["Q7", "0123456789abcde", "  0123456789abcd  "] {
        let e = load(short, None).unwrap_err().to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(
            e.starts_with("configuration: merchant.secret: is shorter than 16 characters"),
            "{e}"
        );
        assert!(e.contains("merchant.allow_short_secret = true"), "{e}");
        assert!(!e.contains(short.trim()), "the secret is never quoted: {e}");
        let allowed = load(short, Some("true")).unwrap();
        assert!(allowed.merchant.allow_short_secret);
    }
    assert!(load("0123456789abcdef", None).is_ok());
    // Allowing a short key never allows none.
    let e = load(" ", Some("true")).unwrap_err().to_string();
    assert!(e.contains("merchant.secret: must be set"), "{e}");
    // Off, a short or empty secret is nobody's concern.
    let f = file("[merchant]\nsecret = \"k\"\n");
    assert!(Settings::load_from(Some(f.path()), env(&[])).is_ok());
}

#[test]
fn merchant_fields_and_the_untracked_cap_are_read_and_bounded() {
    let defaults = Settings::load_from(None, env(&[])).unwrap();
    assert!(defaults.callbacks.merchant_fields.is_empty());
    assert_eq!(defaults.callbacks.max_untracked_per_hour, 100);
    let set = Settings::load_from(
        None,
        env(&[
            (
                "FREEDOMPAY_RECON__CALLBACKS__MERCHANT_FIELDS",
                "basket_id, items[0][sku]",
            ),
            ("FREEDOMPAY_RECON__CALLBACKS__MAX_UNTRACKED_PER_HOUR", "0"),
        ]),
    )
    .unwrap();
    assert_eq!(
        set.callbacks.merchant_fields,
        ["basket_id", "items[0][sku]"]
    );
    assert_eq!(set.callbacks.max_untracked_per_hour, 0);
    let long = "f".repeat(65);
    let many = vec!["f"; 101].join(",");
    for (key, value) in [
        ("FREEDOMPAY_RECON__CALLBACKS__MERCHANT_FIELDS", "a b"),
        ("FREEDOMPAY_RECON__CALLBACKS__MERCHANT_FIELDS", "x=1"),
        ("FREEDOMPAY_RECON__CALLBACKS__MERCHANT_FIELDS", "\u{1b}[2J"),
        (
            "FREEDOMPAY_RECON__CALLBACKS__MERCHANT_FIELDS",
            long.as_str(),
        ),
        (
            "FREEDOMPAY_RECON__CALLBACKS__MERCHANT_FIELDS",
            many.as_str(),
        ),
        (
            "FREEDOMPAY_RECON__CALLBACKS__MAX_UNTRACKED_PER_HOUR",
            "1000001",
        ),
    ] {
        let err = Settings::load_from(None, env(&[(key, value)]))
            .unwrap_err()
            .to_string();
        let dotted = key
            .trim_start_matches("FREEDOMPAY_RECON__")
            .to_lowercase()
            .replacen("__", ".", 1);
        assert!(err.contains(&dotted), "{key}={value}: {err}");
        assert!(!err.contains('\u{1b}'), "escaped: {err}");
    }
}

#[test]
fn the_schedule_with_callbacks_is_the_daemons_when_callbacks_are_on_and_bounded_like_the_other() {
    let off = Settings::load_from(None, env(&[])).unwrap();
    assert_eq!(off.policy().recheck, off.poll.recheck);
    assert_eq!(off.policy().first_poll_after, off.poll.first_poll_after);
    let with = off.policy_for(true);
    assert_eq!(with.recheck, off.poll.recheck_with_callbacks);
    assert_eq!(
        with.first_poll_after,
        off.poll.first_poll_after_with_callbacks
    );
    assert_ne!(off.poll.recheck, off.poll.recheck_with_callbacks);
    assert_ne!(
        off.poll.first_poll_after,
        off.poll.first_poll_after_with_callbacks
    );
    let on = Settings::load_from(
        None,
        env(&[
            ("FREEDOMPAY_RECON__CALLBACKS__LISTEN", "127.0.0.1:9188"),
            ("FREEDOMPAY_RECON__MERCHANT__SECRET", "merchant-key-0123456"),
            ("FREEDOMPAY_RECON__POLL__RECHECK_WITH_CALLBACKS", "5m,1h"),
            (
                "FREEDOMPAY_RECON__POLL__FIRST_POLL_AFTER_WITH_CALLBACKS",
                "3m",
            ),
        ]),
    )
    .unwrap();
    let minutes = |m: u64| Duration::from_secs(60 * m);
    assert_eq!(on.policy().recheck, [minutes(5), minutes(60)]);
    assert_eq!(on.policy().first_poll_after, minutes(3));
    assert_eq!(on.policy_for(false).recheck, off.poll.recheck);
    // Everything but the first poll and the ladder is the same either way.
    let (with, without) = (on.policy_for(true), on.policy_for(false));
    assert_eq!(
        (with.confirm_after, with.lifetime_grace, with.max_age),
        (
            without.confirm_after,
            without.lifetime_grace,
            without.max_age
        )
    );

    for (text, named) in [
        (
            "[poll]\nrecheck_with_callbacks = [\"10m\", \"0s\"]\n",
            "poll.recheck_with_callbacks: must be between 1s and",
        ),
        (
            "[poll]\nrecheck_with_callbacks = [\"400days\"]\n",
            "poll.recheck_with_callbacks: must be between 1s and",
        ),
        (
            "[poll]\nrecheck_with_callbacks = []\n",
            "poll.recheck_with_callbacks: give at least one",
        ),
        (
            "[poll]\nrecheck_with_callbacks = [\"soon\"]\n",
            "\"soon\" is not a duration",
        ),
        (
            "[poll]\nfirst_poll_after_with_callbacks = \"400days\"\n",
            "poll.first_poll_after_with_callbacks: must be between 0s and",
        ),
    ] {
        let f = file(text);
        let err = Settings::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(named), "{text}: {err}");
    }
}

#[test]
fn the_example_config_is_valid_and_matches_the_defaults() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"));
    let example = Settings::load_from(Some(path), env(&[])).unwrap();
    let defaults = Settings::load_from(None, env(&[])).unwrap();
    assert_eq!(
        format!("{:?}", example.poll),
        format!("{:?}", defaults.poll)
    );
    assert_eq!(
        format!("{:?}", example.reconcile),
        format!("{:?}", defaults.reconcile)
    );
    assert_eq!(example.provider.base_url, defaults.provider.base_url);
    assert_eq!(example.webhook.format, defaults.webhook.format);
    assert_eq!(
        format!("{:?}", example.callbacks),
        format!("{:?}", defaults.callbacks)
    );
    assert_eq!(example.events.retention, defaults.events.retention);
    assert_eq!(
        format!("{:?}", example.refunds),
        format!("{:?}", defaults.refunds)
    );
    assert_eq!(
        format!("{:?}", example.merchant),
        format!("{:?}", defaults.merchant)
    );
    assert_eq!(example.http.limits(), defaults.http.limits());
    assert_eq!(
        (
            &example.callbacks.merchant_fields,
            example.callbacks.max_untracked_per_hour
        ),
        (
            &defaults.callbacks.merchant_fields,
            defaults.callbacks.max_untracked_per_hour
        )
    );
    assert_eq!(
        defaults.http.limits(),
        Limits::default(),
        "the listener's own defaults are the daemon's"
    );
    assert_eq!(defaults.events.retention, Duration::from_secs(30 * 86_400));
}

/// Every count and duration, at zero, negative, its largest value and beyond: each is
/// refused at load with one line naming the key, or it builds everything `run` and `plan`
/// build from it. Never a panic.
#[tokio::test]
async fn no_count_or_duration_can_panic_the_daemon() {
    const COUNTS: &[&str] = &[
        "DATABASE__MAX_CONNECTIONS",
        "PROVIDER__MAX_BODY_BYTES",
        "POLL__RATE_PER_SECOND",
        "POLL__BURST",
        "POLL__CONCURRENCY",
        "POLL__BATCH_SIZE",
        "POLL__WRITERS",
        "HTTP__MAX_CONNECTIONS",
        "HTTP__BODY_MIN_RATE",
        "CALLBACKS__MAX_UNTRACKED_PER_HOUR",
    ];
    const DURATIONS: &[&str] = &[
        "DATABASE__CONNECT_TIMEOUT",
        "DATABASE__STATEMENT_TIMEOUT",
        "DATABASE__LOCK_TIMEOUT",
        "PROVIDER__TIMEOUT",
        "PROVIDER__CONNECT_TIMEOUT",
        "PROVIDER__DEFAULT_RETRY_AFTER",
        "PROVIDER__MAX_RETRY_AFTER",
        "POLL__FIRST_POLL_AFTER",
        "POLL__FIRST_POLL_AFTER_WITH_CALLBACKS",
        "POLL__RECHECK",
        "POLL__RECHECK_WITH_CALLBACKS",
        "POLL__LEASE",
        "POLL__CONFIRM_AFTER",
        "POLL__LIFETIME_GRACE",
        "POLL__NOT_FOUND_GRACE",
        "POLL__MAX_AGE",
        "POLL__LAST_LOOK_AFTER",
        "POLL__RETRY_MIN",
        "POLL__RETRY_MAX",
        "POLL__DRAIN_TIMEOUT",
        "HTTP__UNREADY_AFTER",
        "HTTP__HEADER_TIMEOUT",
        "HTTP__BODY_TIMEOUT",
        "WEBHOOK__TIMEOUT",
        "WEBHOOK__MAX_AGE",
    ];
    let counts = [
        "0",
        "-1",
        "1",
        "4294967295",
        "18446744073709551615",
        "1e999",
    ];
    let durations = [
        "0s",
        "-1s",
        "1ms",
        "365days",
        "18446744073709551615s",
        "584542046090years",
    ];
    let cases = COUNTS
        .iter()
        .flat_map(|key| counts.iter().map(move |v| (*key, *v)))
        .chain(
            DURATIONS
                .iter()
                .flat_map(|key| durations.iter().map(move |v| (*key, *v))),
        );
    let (mut refused, mut working) = (0, 0);
    for (key, value) in cases {
        let name = format!("{ENV_PREFIX}__{key}");
        let mut vars = env(&[
            (name.as_str(), value),
            ("FREEDOMPAY_RECON__WEBHOOK__URL", "http://127.0.0.1:9/hooks"),
            (
                "FREEDOMPAY_RECON__WEBHOOK__SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            ("FREEDOMPAY_RECON__PROVIDER__AUTH_ID", "1"),
            ("FREEDOMPAY_RECON__PROVIDER__SECRET", "s"),
        ]);
        vars.insert("DATABASE_URL".into(), "postgres://u@127.0.0.1:1/db".into());
        let loaded = std::panic::catch_unwind(|| Settings::load_from(None, vars))
            .unwrap_or_else(|_| panic!("{key}={value} panicked at load"));
        match loaded {
            Err(e) => {
                let message = e.to_string();
                let dotted = key.to_lowercase().replacen("__", ".", 1);
                assert!(
                    message.contains(&dotted) && !message.contains('\n'),
                    "{key}={value}: one line naming the key: {message}"
                );
                refused += 1;
            }
            Ok(settings) => {
                let started = std::time::Instant::now();
                let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    everything_run_and_plan_build(&settings)
                }));
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(5),
                    "{key}={value}: {:?}",
                    started.elapsed()
                );
                assert!(built.is_ok(), "{key}={value} was accepted, then panicked");
                working += 1;
            }
        }
    }
    assert!(
        refused > 0 && working > 0,
        "{refused} refused, {working} working"
    );
}

/// What `run` and `plan` build from settings, short of connecting.
fn everything_run_and_plan_build(settings: &Settings) {
    let options = settings.database.connect_options().expect("a URL");
    let pool = crate::store::pool_options(&settings.database).connect_lazy_with(options);
    let provider = crate::provider::ProviderClient::new(&settings.provider).expect("client");
    let engine = crate::engine::Engine::new(pool.clone(), provider, settings);
    crate::webhook::Deliverer::new(pool, &settings.webhook, engine.instance()).expect("deliverer");
    let _ = settings.http.limits();
    check_schedule(&settings.poll.schedule, chrono::Utc::now()).expect("schedule");
    // `plan` refuses a policy it cannot simulate in reasonable time, in one line; with
    // callbacks or without.
    for callbacks in [false, true] {
        let policy = settings.policy_for(callbacks);
        if crate::capacity::simulable(&policy).is_ok() {
            let plan = crate::capacity::run(&crate::capacity::PlanInput {
                payments_per_day: 50,
                rate_per_second: settings.poll.rate_per_second,
                policy,
                mix: crate::capacity::Mix::default(),
                sweeps: settings.poll.sweeps(),
                claim_ahead: settings.poll.claim_ahead(),
                callbacks,
                created_over: crate::capacity::DAY,
            });
            assert!(plan.payments > 0);
        }
    }
}

#[test]
fn the_merchant_section_reads_its_account_and_refuses_what_it_cannot_use() {
    let defaults = Settings::load_from(None, env(&[])).unwrap();
    assert_eq!(defaults.merchant.status_script_name(), "get_status3.php");
    assert_eq!(defaults.merchant.lookup, MerchantLookup::PaymentId);
    assert!(!defaults.merchant.watches_refunds());
    let on = |pairs: &[(&'static str, &'static str)]| Settings::load_from(None, env(pairs));
    let gateway = on(&[
        ("FREEDOMPAY_RECON__MERCHANT__ID", "0545443"),
        ("FREEDOMPAY_RECON__MERCHANT__SECRET", "merchant-key-of-16+"),
        ("FREEDOMPAY_RECON__MERCHANT__STATUS_SCRIPT", "g2g/status_v2"),
        ("FREEDOMPAY_RECON__MERCHANT__LOOKUP", "order_id"),
    ])
    .unwrap();
    assert!(gateway.merchant.watches_refunds());
    assert_eq!(gateway.merchant.id, "0545443", "leading zeros kept");
    assert_eq!(gateway.merchant.status_script_name(), "status_v2");
    assert_eq!(gateway.merchant.lookup, MerchantLookup::OrderId);
    assert!(!format!("{gateway:?}").contains("merchant-key"));
    for (pairs, named) in [
        (
            vec![("FREEDOMPAY_RECON__MERCHANT__ID", "545443")],
            "merchant.secret: must be set when merchant.id is",
        ),
        (
            vec![
                ("FREEDOMPAY_RECON__MERCHANT__ID", "545443"),
                ("FREEDOMPAY_RECON__MERCHANT__SECRET", "short"),
            ],
            "merchant.secret: is shorter than 16 characters",
        ),
        (
            vec![("FREEDOMPAY_RECON__MERCHANT__ID", "m-545443")],
            "merchant.id: \"m-545443\" is not a merchant id",
        ),
        (
            vec![(
                "FREEDOMPAY_RECON__MERCHANT__STATUS_SCRIPT",
                "/get_status3.php",
            )],
            "merchant.status_script:",
        ),
        (
            vec![("FREEDOMPAY_RECON__MERCHANT__LOOKUP", "invoice_id")],
            "merchant.lookup",
        ),
    ] {
        let e = on(&pairs).unwrap_err().to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(e.contains(named), "{pairs:?}: {e}");
    }
}

#[test]
fn a_callback_secret_where_it_used_to_be_is_refused_with_where_it_goes_now() {
    let e = Settings::load_from(
        None,
        env(&[("FREEDOMPAY_RECON__CALLBACKS__SECRET", "merchant-key-of-16+")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(
            "configuration: environment variable FREEDOMPAY_RECON__CALLBACKS__SECRET: \
             callbacks.secret has moved to merchant.secret"
        ),
        "{e}"
    );
    assert!(e.contains("FREEDOMPAY_RECON__MERCHANT__SECRET"), "{e}");
    assert!(
        !e.contains("merchant-key"),
        "the secret is never quoted: {e}"
    );
    let f = file("[callbacks]\nallow_short_secret = true\n");
    let e = Settings::load_from(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "callbacks.allow_short_secret: has moved to merchant.allow_short_secret (one secret \
             key signs callbacks and status requests): set \
             FREEDOMPAY_RECON__MERCHANT__ALLOW_SHORT_SECRET instead, or move the line to \
             [merchant] as allow_short_secret"
        ),
        "{e}"
    );
    let f = file("[callbacks]\nsecret = \"merchant-key-of-16+\"\n");
    let e = Settings::load_from(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("callbacks.secret: has moved to merchant.secret"),
        "{e}"
    );
    assert!(
        !e.contains("merchant-key"),
        "the secret is never quoted: {e}"
    );
}
