//! The connection flags of herdd and herdctl.

use crate::NatsConfig;
use clap::Args;
use std::path::PathBuf;

/// Connection flags; each has an environment variable, and a flag beats its variable.
#[derive(Debug, Clone, Default, Args)]
pub struct NatsArgs {
    /// NATS server URLs, comma-separated.
    #[arg(
        long = "nats-url",
        env = "HERD_NATS_URL",
        value_delimiter = ',',
        global = true
    )]
    pub urls: Vec<String>,
    /// Subject prefix.
    #[arg(
        id = "nats_prefix",
        long = "prefix",
        env = "HERD_PREFIX",
        global = true
    )]
    pub prefix: Option<String>,
    /// NATS credentials file (JWT + nkey seed).
    #[arg(
        id = "nats_creds",
        long = "nats-creds",
        env = "HERD_NATS_CREDS",
        global = true
    )]
    pub creds_file: Option<PathBuf>,
    /// File holding an nkey seed.
    #[arg(
        id = "nats_nkey",
        long = "nats-nkey",
        env = "HERD_NATS_NKEY",
        global = true
    )]
    pub nkey_seed_file: Option<PathBuf>,
    #[arg(
        id = "nats_user",
        long = "nats-user",
        env = "HERD_NATS_USER",
        global = true
    )]
    pub user: Option<String>,
    #[arg(
        id = "nats_password",
        long = "nats-password",
        env = "HERD_NATS_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub password: Option<String>,
    #[arg(
        id = "nats_token",
        long = "nats-token",
        env = "HERD_NATS_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// CA certificate (PEM) to verify the server.
    #[arg(
        id = "nats_tls_ca",
        long = "nats-tls-ca",
        env = "HERD_NATS_TLS_CA",
        global = true
    )]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(
        id = "nats_tls_cert",
        long = "nats-tls-cert",
        env = "HERD_NATS_TLS_CERT",
        global = true
    )]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(
        id = "nats_tls_key",
        long = "nats-tls-key",
        env = "HERD_NATS_TLS_KEY",
        global = true
    )]
    pub tls_key: Option<PathBuf>,
    /// Require TLS.
    #[arg(
        id = "nats_tls",
        long = "nats-tls",
        env = "HERD_NATS_TLS",
        global = true
    )]
    pub tls_required: bool,
    /// Replicas of the streams and buckets this process creates (3 on a three-server cluster).
    #[arg(
        id = "nats_replicas",
        long = "nats-replicas",
        env = "HERD_NATS_REPLICAS",
        global = true
    )]
    pub replicas: Option<usize>,
}

impl NatsArgs {
    /// Lays what was given over `config`.
    pub fn apply(&self, config: &mut NatsConfig) {
        if !self.urls.is_empty() {
            config.urls = self
                .urls
                .iter()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect();
        }
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { config.$f = Some(v.clone()); } )* };
        }
        over!(
            creds_file,
            nkey_seed_file,
            user,
            password,
            token,
            tls_ca,
            tls_cert,
            tls_key
        );
        if let Some(p) = &self.prefix {
            config.prefix = p.clone();
        }
        config.tls_required |= self.tls_required;
        if let Some(r) = self.replicas {
            config.replicas = r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsArgs,
    }

    fn parse(args: &[&str]) -> NatsArgs {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .nats
    }

    #[test]
    fn flags_given_replace_the_configuration_and_the_rest_stays() {
        for var in [
            "HERD_NATS_URL",
            "HERD_PREFIX",
            "HERD_NATS_TOKEN",
            "HERD_NATS_TLS",
        ] {
            std::env::remove_var(var);
        }
        let mut config = NatsConfig {
            token: Some("from-file".into()),
            ..NatsConfig::default()
        };
        parse(&[
            "--nats-url",
            "nats://a:1, nats://b:2",
            "--prefix",
            "acme",
            "--nats-tls",
        ])
        .apply(&mut config);
        assert_eq!(config.urls, vec!["nats://a:1", "nats://b:2"]);
        assert_eq!(config.prefix, "acme");
        assert!(config.tls_required);
        assert_eq!(config.token.as_deref(), Some("from-file"));

        let before = config.clone();
        parse(&[]).apply(&mut config);
        assert_eq!(config, before, "no flags, no change");
    }
}
