//! `grant-reader`, `grant-finance` and `grant-daemon`: give a PostgreSQL role read-only access
//! to the finance views, what a person in finance needs (report, resolve flags), or what
//! running the daemon needs.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::settings::Settings;
use crate::store;

#[derive(Debug, Args)]
pub struct GrantReaderArgs {
    /// An existing PostgreSQL role (create it first, e.g. `create role finance login password '…'`).
    pub role: String,
}

pub async fn grant_reader(settings: &Settings, args: GrantReaderArgs) -> anyhow::Result<ExitCode> {
    use store::finance::{READER_VIEWS, quote_ident, role_reach};

    let pool = store::connect_to_schema(&settings.database).await?;
    // For messages: quoted, and escaped like any outside text on a terminal.
    let role = crate::text::escape_invisible(&quote_ident(&args.role)).into_owned();
    let reach = role_reach(&pool, &args.role).await?;
    anyhow::ensure!(
        reach.exists,
        "role {role} does not exist; create it first, e.g. create role {role} login password '…'"
    );
    // Granting views to a role that reads everything anyway (or can make itself able to)
    // would suggest a limit that is not there.
    let reads_everything = if reach.superuser {
        Some("is a superuser")
    } else if reach.reads_all_data {
        Some("is a member of pg_read_all_data (inheriting or by SET ROLE)")
    } else if reach.creates_roles {
        Some("has CREATEROLE (it can grant itself pg_read_all_data)")
    } else {
        None
    };
    if let Some(why) = reads_everything {
        anyhow::bail!(
            "role {role} {why} and can read every table, raw provider bodies included; \
             nothing was granted. Give finance a role without that, e.g. \
             create role \"finance\" login password '…'"
        );
    }
    store::finance::grant_reader(&pool, &args.role).await?;
    outln!("role {role} may now read {}", READER_VIEWS.join(", "))?;
    if reach.reads_tables {
        eprintln!(
            "warning: role {role} can already read the tables of schema recon (it, or a role it \
             can become with SET ROLE, owns them or was granted them), raw provider bodies \
             included; revoke that for a read-only finance role (check its memberships: \
             \\du {})",
            crate::text::escape_invisible(&args.role)
        );
    } else {
        outln!("and no table: raw provider bodies stay out of its reach")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct GrantFinanceArgs {
    /// One person's existing login role (e.g. `create role "anna" login password '…'`): the
    /// audit trail records this role for what they resolve, so give each person their own.
    pub role: String,
}

/// Run by the migrating role: a person's role may report and resolve flags, and nothing else.
pub async fn grant_finance(
    settings: &Settings,
    args: GrantFinanceArgs,
) -> anyhow::Result<ExitCode> {
    use store::finance::{finance_grants, quote_ident, role_reach};

    let pool = store::connect_to_schema(&settings.database).await?;
    let role = crate::text::escape_invisible(&quote_ident(&args.role)).into_owned();
    let reach = role_reach(&pool, &args.role).await?;
    anyhow::ensure!(
        reach.exists,
        "role {role} does not exist; create one for the person, e.g. create role {role} login password '…'"
    );
    anyhow::ensure!(
        !reach.built_in && !reach.superuser,
        "role {role} is a superuser or one of PostgreSQL's built-in roles: it is no one person's,          and a trail naming it proves nothing; nothing was granted. Create a role for the person"
    );
    // A role others log in through records no one in particular: the trail names the role.
    if !reach.login_members.is_empty() {
        let members: Vec<String> = reach
            .login_members
            .iter()
            .map(|m| crate::text::escape_invisible(&quote_ident(m)).into_owned())
            .collect();
        anyhow::bail!(
            "role {role} has login roles as members ({}): the audit trail would record {role} for              any of them; nothing was granted. Grant to each person's own role",
            members.join(", ")
        );
    }
    store::finance::grant_finance(&pool, &args.role)
        .await
        .context(
            "could not grant; run this as the role that ran `migrate` (it owns schema recon)",
        )?;
    for statement in finance_grants(&args.role) {
        outln!("{};", crate::text::escape_invisible(&statement))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct GrantDaemonArgs {
    /// An existing PostgreSQL role that will run the daemon (and enqueue, import, report…).
    pub role: String,
    /// Grant even to a role other login roles are members of (they would all be able to
    /// change payments); the reason is printed with the grants.
    #[arg(long, value_name = "REASON")]
    pub force: Option<String>,
}

/// Run by the migrating role after `migrate`: the running role gets exactly what it needs.
pub async fn grant_daemon(settings: &Settings, args: GrantDaemonArgs) -> anyhow::Result<ExitCode> {
    use store::finance::{daemon_grants, quote_ident, role_reach};

    let pool = store::connect_to_schema(&settings.database).await?;
    // For messages: quoted, and escaped like any outside text on a terminal.
    let role = crate::text::escape_invisible(&quote_ident(&args.role)).into_owned();
    let reach = role_reach(&pool, &args.role).await?;
    anyhow::ensure!(
        reach.exists,
        "role {role} does not exist; create it first, e.g. create role {role} login password '…'"
    );
    // Write access to payments for a role many logins hold (pg_read_all_data: every BI
    // login) would let all of them change what the merchant expects.
    anyhow::ensure!(
        !reach.built_in,
        "role {role} is one of PostgreSQL's built-in roles, which other roles are members of; \
         nothing was granted. Create a role for the daemon: create role \"recon_daemon\" login"
    );
    anyhow::ensure!(
        !reach.superuser,
        "role {role} is a superuser: it needs no grants and bypasses every limit; nothing was \
         granted. Run the daemon as a role of its own: create role \"recon_daemon\" login"
    );
    if !reach.login_members.is_empty() {
        let members: Vec<String> = reach
            .login_members
            .iter()
            .map(|m| crate::text::escape_invisible(&quote_ident(m)).into_owned())
            .collect();
        match &args.force {
            None => anyhow::bail!(
                "role {role} has login roles as members ({}): each could change payments with \
                 these grants; nothing was granted. Use a role of its own, or give --force \
                 REASON if that is meant",
                members.join(", ")
            ),
            Some(reason) => eprintln!(
                "warning: granting to {role} although {} can use it: {}",
                members.join(", "),
                crate::text::escape_invisible(reason)
            ),
        }
    }
    store::finance::grant_daemon(&pool, &args.role)
        .await
        .context(
            "could not grant; run this as the role that ran `migrate` (it owns schema recon)",
        )?;
    for statement in daemon_grants(&args.role) {
        outln!("{};", crate::text::escape_invisible(&statement))?;
    }
    Ok(ExitCode::SUCCESS)
}
