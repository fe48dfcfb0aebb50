//! Least privilege, tested: a migrating role that may only create the schema, a running role
//! with only what `grant-daemon` gives, and `grant-reader` honest about what it limits.

use std::sync::atomic::{AtomicUsize, Ordering};

use freedompay_recon::simulator::{Reply, Scenario};
use sqlx::PgPool;

use crate::helpers::{TestApp, TestDb, binary_env, run_binary, simulator};

/// Login roles named for this test run, dropped (with what they own) when the test ends.
pub struct Roles {
    pub names: Vec<String>,
    admin: PgPool,
}

impl Roles {
    pub async fn create(admin: &PgPool, labels: &[&str]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let mut names = Vec::new();
        for label in labels {
            let name = format!("fpr_{label}_{}_{n}", std::process::id());
            let quoted = name.replace('"', "\"\"");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "create role \"{quoted}\" login"
            )))
            .execute(admin)
            .await
            .unwrap();
            names.push(name);
        }
        Self {
            names,
            admin: admin.clone(),
        }
    }

    pub async fn drop_all(self, database: &TestDb) {
        let server = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(crate::helpers::server_url())
            .await
            .unwrap();
        self.admin.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop database if exists \"{}\" with (force)",
            database.name()
        )))
        .execute(&server)
        .await
        .unwrap();
        for name in &self.names {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "drop role if exists \"{}\"",
                name.replace('"', "\"\"")
            )))
            .execute(&server)
            .await
            .unwrap();
        }
    }
}

/// `grant-reader ROLE` against the test's database.
async fn grant_reader(app: &TestApp, role: String) -> std::process::Output {
    app.run(&["grant-reader", &role]).await
}

fn assert_ok(output: &std::process::Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_run_import_and_report_work_under_least_privilege_roles() {
    let db = TestDb::unmigrated().await;
    let roles = Roles::create(&db.pool, &["migrator", "daemon"]).await;
    let (migrator, daemon) = (roles.names[0].clone(), roles.names[1].clone());
    // The database owner's part (docs/operations.md, "Database roles"): nothing for anyone
    // by default; the migrating role may create a schema, the running role may connect and
    // make temporary tables.
    for statement in [
        format!("revoke all on database \"{}\" from public", db.name()),
        format!(
            "grant connect, create on database \"{}\" to \"{migrator}\"",
            db.name()
        ),
        format!(
            "grant connect, temporary on database \"{}\" to \"{daemon}\"",
            db.name()
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let as_migrator = db.url_as(&migrator);
    let as_daemon = db.url_as(&daemon);

    let migrated = run_binary(&["migrate"], &[("DATABASE_URL", &as_migrator)]).await;
    assert_ok(&migrated, "migrate as the migrating role");
    let granted = run_binary(
        &["grant-daemon", &daemon],
        &[("DATABASE_URL", &as_migrator)],
    )
    .await;
    let statements = assert_ok(&granted, "grant-daemon as the migrating role");
    assert!(statements.contains("grant select, insert, update on recon.payments to"));

    // Paid: the role books what was received and starts the refund watch too.
    let sim = simulator(Scenario::new().fallback([Reply::invoice("success", "10", "KZT")])).await;
    // The running role's environment, with a rate limit: the deployment's shared request
    // budget is kept in the database, so its writes run under the role too.
    let mut daemon_env = binary_env(&as_daemon, &sim.base_url());
    daemon_env.retain(|(key, _)| *key != "FREEDOMPAY_RECON__POLL__RATE_PER_SECOND");
    daemon_env.push(("FREEDOMPAY_RECON__POLL__RATE_PER_SECOND", "100".to_owned()));
    let daemon_env: Vec<(&str, &str)> = daemon_env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    assert_ok(
        &run_binary(
            &["enqueue", "lp-1", "--amount", "10", "--currency", "KZT"],
            &daemon_env,
        )
        .await,
        "enqueue",
    );
    let csv = tempfile::NamedTempFile::with_suffix(".csv").unwrap();
    std::fs::write(csv.path(), "payment_id,expected_amount\nlp-2,10\nlp-3,11\n").unwrap();
    assert_ok(
        &run_binary(&["import", csv.path().to_str().unwrap()], &daemon_env).await,
        "import",
    );
    // With a webhook that answers nothing (a closed port): every delivery column is written
    // (the attempt, its failure, the lease), and events of other types are skipped.
    let mut webhook_env = daemon_env.clone();
    webhook_env.extend([
        ("FREEDOMPAY_RECON__WEBHOOK__URL", "http://127.0.0.1:9/hooks"),
        (
            "FREEDOMPAY_RECON__WEBHOOK__SECRET",
            "whsec_cHJpdmlsZWdlLXRlc3Qtd2ViaG9vay1r",
        ),
        ("FREEDOMPAY_RECON__WEBHOOK__TYPES", "flag_opened"),
    ]);
    let swept = assert_ok(
        &run_binary(&["run", "--once"], &webhook_env).await,
        "run --once",
    );
    assert!(swept.starts_with("claimed 3, recorded 3"), "{swept}");
    assert!(swept.contains("webhook: delivered 0, failed 1"), "{swept}");
    for (table, expected) in [("money_events", 3), ("refund_watch", 3)] {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select count(*) from recon.{table}"
        )))
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(rows, expected, "recon.{table}");
    }
    let report = assert_ok(
        &run_binary(&["report", "--detail", "--format", "csv"], &daemon_env).await,
        "report",
    );
    assert_eq!(report.lines().count(), 4, "{report}");
    assert_ok(
        &run_binary(&["recheck", "lp-3"], &daemon_env).await,
        "recheck",
    );
    assert_ok(
        &run_binary(
            &[
                "resolve",
                "lp-3",
                "--kind",
                "amount_mismatch",
                "--note",
                "refunded 1",
            ],
            &daemon_env,
        )
        .await,
        "resolve",
    );
    assert_ok(
        &run_binary(&["report", "--flags", "--format", "csv"], &daemon_env).await,
        "report --flags",
    );
    assert_ok(
        &run_binary(
            &[
                "resolve",
                "--all",
                "--kind",
                "not_found",
                "--note",
                "none",
                "--by",
                "ops",
            ],
            &daemon_env,
        )
        .await,
        "resolve --all",
    );

    // The running role cannot change the schema.
    let refused = run_binary(&["migrate"], &daemon_env).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    roles.drop_all(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_reader_refuses_roles_that_read_everything_and_quotes_names() {
    let app = TestApp::new(Scenario::new()).await;
    let roles = Roles::create(app.pool(), &["all_data", "fin\"ance"]).await;
    let (all_data, odd) = (roles.names[0].clone(), roles.names[1].clone());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "grant pg_read_all_data to \"{all_data}\""
    )))
    .execute(app.pool())
    .await
    .unwrap();
    let grant = |role: String| grant_reader(&app, role);

    for (role, why) in [
        ("postgres".to_owned(), "is a superuser"),
        (all_data.clone(), "is a member of pg_read_all_data"),
    ] {
        let refused = grant(role.clone()).await;
        assert_eq!(refused.status.code(), Some(1), "{role}");
        let message = String::from_utf8_lossy(&refused.stderr);
        assert!(
            message.contains(why) && message.contains("nothing was granted"),
            "{role}: {message}"
        );
    }
    let granted = grant(odd.clone()).await;
    let out = assert_ok(&granted, "grant-reader to an odd name");
    let quoted = format!("\"{}\"", odd.replace('"', "\"\""));
    assert!(
        out.starts_with(&format!("role {quoted} may now read")),
        "{out}"
    );
    assert!(out.contains("and no table"), "{out}");

    // A role name that carries a terminal escape sequence is shown escaped, never run.
    let missing = grant("esc\u{1b}]0;pwned\u{7}".to_owned()).await;
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !message.contains('\u{1b}') && message.contains("esc\\u{1b}]0;pwned\\u{7}"),
        "{message:?}"
    );

    let missing = grant("no\"such".to_owned()).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("create role \"no\"\"such\" login password"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let TestApp { db, .. } = app;
    roles.drop_all(&db).await;
}

/// What grant-reader says about raw bodies is what the role can really reach: a membership
/// without INHERIT still lets it SET ROLE, and CREATEROLE lets it grant itself anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_reader_counts_every_role_a_login_can_become() {
    let app = TestApp::new(Scenario::new()).await;
    let roles = Roles::create(
        app.pool(),
        &["owner_like", "noinherit", "creator", "indirect"],
    )
    .await;
    let [reads, noinherit, creator, indirect] = [0, 1, 2, 3].map(|i| roles.names[i].clone());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "grant usage on schema recon to \"{reads}\";
         grant select on recon.payments to \"{reads}\";
         alter role \"{noinherit}\" noinherit;
         grant \"{reads}\" to \"{noinherit}\";
         alter role \"{creator}\" createrole;
         alter role \"{indirect}\" noinherit;
         grant \"{noinherit}\" to \"{indirect}\";"
    )))
    .execute(app.pool())
    .await
    .unwrap();
    let grant = |role: String| grant_reader(&app, role);
    for role in [noinherit.clone(), indirect.clone()] {
        let output = grant(role.clone()).await;
        let out = assert_ok(&output, "grant-reader");
        assert!(!out.contains("no table"), "{role}: {out}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(
                "can already read the tables of schema recon (it, or a role it can become"
            ),
            "{role}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let refused = grant(creator.clone()).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("has CREATEROLE (it can grant itself pg_read_all_data)"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let TestApp { db, .. } = app;
    roles.drop_all(&db).await;
}

/// Write access to payments never goes to a role many logins share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_daemon_refuses_built_in_roles_superusers_and_shared_roles_unless_forced() {
    let app = TestApp::new(Scenario::new()).await;
    let roles = Roles::create(app.pool(), &["shared", "bi_login"]).await;
    let (shared, bi_login) = (roles.names[0].clone(), roles.names[1].clone());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "grant \"{shared}\" to \"{bi_login}\""
    )))
    .execute(app.pool())
    .await
    .unwrap();
    let grant = |args: Vec<String>| {
        let app = &app;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut all = vec!["grant-daemon"];
            all.extend(args);
            app.run(&all).await
        }
    };
    for (role, why) in [
        ("pg_read_all_data", "one of PostgreSQL's built-in roles"),
        ("postgres", "is a superuser"),
    ] {
        let refused = grant(vec![role.to_owned()]).await;
        assert_eq!(refused.status.code(), Some(1), "{role}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains(why),
            "{role}: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }
    let can_insert = |role: String| {
        let pool = app.pool().clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "select has_table_privilege($1, 'recon.payments', 'insert')",
            )
            .bind(role)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert!(!can_insert("pg_read_all_data".into()).await);

    let refused = grant(vec![shared.clone()]).await;
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains(&format!("has login roles as members (\"{bi_login}\")")),
        "{message}"
    );
    assert!(!can_insert(shared.clone()).await, "nothing was granted");

    let forced = grant(vec![
        shared.clone(),
        "--force".into(),
        "the ETL logins share it on purpose".into(),
    ])
    .await;
    assert_ok(&forced, "grant-daemon --force");
    assert!(
        String::from_utf8_lossy(&forced.stderr).contains("the ETL logins share it on purpose"),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert!(can_insert(shared.clone()).await);
    let TestApp { db, .. } = app;
    roles.drop_all(&db).await;
}

/// Issue 24, item 3: `grant-finance` lets one person's role report and resolve flags, and
/// nothing else; what it resolves records that role whatever `--by` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finance_role_reports_and_resolves_recording_its_role_and_cannot_change_payments() {
    let app = TestApp::new(Scenario::new()).await;
    let roles = Roles::create(&app.db.pool, &["anna", "shared", "member"]).await;
    let (anna, shared, member) = (
        roles.names[0].clone(),
        roles.names[1].clone(),
        roles.names[2].clone(),
    );
    app.insert(
        "('fin-1', 100, 'KZT', 'A-1', now(), null), ('fin-2', 100, 'KZT', 'A-2', now(), null), \
         ('fin-3', 100, 'KZT', 'A-3', now(), null)",
    )
    .await;
    sqlx::query(
        "insert into recon.discrepancies (payment_id, kind, expected, actual, detected_at)
         select payment_id, 'amount_mismatch', '100 KZT', '90 KZT', now()
         from recon.payments where payment_id like 'fin-%'",
    )
    .execute(app.pool())
    .await
    .unwrap();

    let granted = app.run(&["grant-finance", &anna]).await;
    let statements = assert_ok(&granted, "grant-finance as the owner");
    assert!(statements.contains("grant update (resolved_at, resolved_by, resolution)"));
    // A role others log in through is no one person's.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "grant \"{shared}\" to \"{member}\""
    )))
    .execute(app.pool())
    .await
    .unwrap();
    let refused = app.run(&["grant-finance", &shared]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("login roles as members"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let refused = app.run(&["grant-finance", "postgres"]).await;
    assert_eq!(refused.status.code(), Some(1));

    let as_anna = app.db.url_as(&anna);
    let env = [("DATABASE_URL", as_anna.as_str())];
    for args in [
        &["report"][..],
        &["report", "--detail", "--format", "csv"],
        &["report", "--flags", "--format", "csv"],
        &["report", "--month", "2026-11"],
    ] {
        assert_ok(&run_binary(args, &env).await, &args.join(" "));
    }
    let today = chrono::Utc::now().date_naive().to_string();
    let as_of = ["report", "--flags", "--as-of", today.as_str()];
    assert_ok(&run_binary(&as_of, &env).await, "report --flags --as-of");
    let resolve = [
        "resolve",
        "fin-1",
        "--kind",
        "amount_mismatch",
        "--note",
        "customer paid the rest in cash",
        "--by",
        "b.sadykova",
    ];
    assert_ok(&run_binary(&resolve, &env).await, "resolve as anna");
    let all = [
        "resolve",
        "--all",
        "--kind",
        "amount_mismatch",
        "--note",
        "agreed discount",
    ];
    assert_ok(&run_binary(&all, &env).await, "resolve --all as anna");

    let recorded: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "select payment_id, resolved_by, resolved_role from recon.discrepancies
         where payment_id like 'fin-%' order by payment_id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(recorded.len(), 3);
    assert_eq!(
        (recorded[0].1.as_str(), recorded[0].2.as_deref()),
        ("b.sadykova", Some(anna.as_str())),
        "the name given, on behalf of, beside the role that wrote it"
    );
    assert!(
        recorded
            .iter()
            .all(|r| r.2.as_deref() == Some(anna.as_str()))
    );

    // The period's resolutions, for an auditor: the role beside the name.
    let today: String = sqlx::query_scalar("select recon.report_day(now())::text")
        .fetch_one(app.pool())
        .await
        .unwrap();
    let export = assert_ok(
        &run_binary(
            &[
                "report",
                "--resolutions",
                "--from",
                &today,
                "--to",
                &today,
                "--format",
                "csv",
            ],
            &env,
        )
        .await,
        "report --resolutions as anna",
    );
    let mut reader = csv::Reader::from_reader(export.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "flag_id",
            "payment_id",
            "payment_day",
            "kind",
            "class",
            "opened_at",
            "resolved_at",
            "resolved_day",
            "resolved_role",
            "resolved_by",
            "resolution",
            "expected",
            "actual"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3, "{export}");
    assert_eq!(
        (&rows[0][1], &rows[0][8], &rows[0][9], &rows[0][10]),
        (
            "fin-1",
            anna.as_str(),
            "b.sadykova",
            "customer paid the rest in cash"
        )
    );
    // Closing a month: the role closes, and the close records it beside the name given.
    let close = [
        "close",
        "--month",
        "2020-01",
        "--note",
        "nothing that month",
        "--by",
        "b.sadykova",
    ];
    assert_ok(&run_binary(&close, &env).await, "close as anna");
    let (role, by): (String, String) =
        sqlx::query_as("select db_role, on_behalf_of from recon.period_closes")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!((role.as_str(), by.as_str()), (anna.as_str(), "b.sadykova"));
    let none = run_binary(&["report", "--resolutions", "--to", "2020-01-01"], &env).await;
    let none = assert_ok(&none, "report --resolutions, none");
    assert!(
        none.contains("no flags resolved until 2020-01-01"),
        "{none}"
    );

    // Nothing else: no payment written, no event forged, no flag rewritten.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&as_anna)
        .await
        .unwrap();
    for statement in [
        "insert into recon.payments (payment_id) values ('forged')",
        "update recon.payments set expected_amount = 1 where payment_id = 'fin-1'",
        "insert into recon.events (type, payment_id, occurred_at, payload) values ('flag_opened', 'fin-1', now(), '{}')",
        "update recon.discrepancies set actual = 'x' where payment_id = 'fin-2'",
        "insert into recon.period_closes (month, action, on_behalf_of, note, zone) values ('2020-02-01', 'reopen', 'x', 'x', 'UTC')",
        "select last_error_body from recon.payments limit 1",
    ] {
        let error = sqlx::query(statement).execute(&pool).await.unwrap_err();
        assert!(
            error.to_string().contains("permission denied"),
            "{statement}: {error}"
        );
    }
    pool.close().await;
    let app_db = app.db;
    roles.drop_all(&app_db).await;
}
