//! `digest`: a human summary of a period, printed or posted to a chat channel.

use std::process::ExitCode;

use clap::Args;
use secrecy::{ExposeSecret as _, SecretString};

use crate::reporting::digest::{Digest, DigestFormat, post};
use crate::settings::Settings;
use crate::store;

#[derive(Debug, Args)]
pub struct DigestArgs {
    /// First reporting day, inclusive (YYYY-MM-DD) [default: yesterday in recon.timezone].
    #[arg(long, value_parser = crate::reporting::parse_date)]
    pub from: Option<chrono::NaiveDate>,
    /// Last reporting day, inclusive (YYYY-MM-DD) [default: --from].
    #[arg(long, value_parser = crate::reporting::parse_date)]
    pub to: Option<chrono::NaiveDate>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: DigestFormat,
    /// Post the digest to a chat incoming webhook as {"text": ...} (Slack, Mattermost,
    /// Rocket.Chat) instead of printing it. Use --format markdown for chat formatting. The URL
    /// is a secret: give `--post` alone and the URL in the environment variable
    /// FREEDOMPAY_RECON_DIGEST_POST rather than on the command line. Only --post posts: the
    /// variable alone changes nothing.
    #[arg(
        long,
        value_name = "URL",
        num_args = 0..=1,
        default_missing_value = "",
        value_parser = secret
    )]
    pub post: Option<SecretString>,
}

/// Where `--post` alone takes the URL from.
pub const POST_URL_VARIABLE: &str = "FREEDOMPAY_RECON_DIGEST_POST";

fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw))
}

pub async fn digest(settings: &Settings, args: DigestArgs) -> anyhow::Result<ExitCode> {
    if let (Some(from), Some(to)) = (args.from, args.to) {
        anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
    }
    if args.post.is_some() && args.format == DigestFormat::Json {
        anyhow::bail!("--post sends text for people: use --format text or markdown");
    }
    // `--post` alone: the URL from the environment (kept out of `ps` and shell history).
    let post_to = match args.post {
        Some(url) if url.expose_secret().is_empty() => Some(
            std::env::var(POST_URL_VARIABLE)
                .ok()
                .filter(|url| !url.trim().is_empty())
                .map(SecretString::from)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--post without a URL takes it from {POST_URL_VARIABLE}, which is not \
                         set; set it (systemd: in the EnvironmentFile) or give --post URL"
                    )
                })?,
        ),
        other => other,
    };
    let pool = store::connect_to_schema(&settings.database).await?;
    let digest = Digest::read(&pool, args.from, args.to).await?;
    anyhow::ensure!(
        digest.from <= digest.to,
        "--from {} is after --to {}",
        digest.from,
        digest.to
    );
    let rendered = digest.render(args.format);
    match &post_to {
        Some(url) => {
            post(url.expose_secret(), &rendered).await?;
            eprintln!("digest for {} posted", digest.from);
        }
        None => outln!("{}", rendered.trim_end())?,
    }
    Ok(ExitCode::SUCCESS)
}
