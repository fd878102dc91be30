//! The `[nats]` table of herd.toml.

use crate::NatsError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Servers to try, in order; reconnection goes on forever with backoff.
    pub urls: Vec<String>,
    /// Subject prefix (`herd` → `herd.v1.…`).
    pub prefix: String,
    pub creds_file: Option<PathBuf>,
    pub nkey_seed_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_required: bool,
    /// Replicas of every stream and bucket herd creates: 1 on a single server, 3 on a
    /// three-server cluster. Streams that exist keep theirs (herd warns when they have fewer).
    pub replicas: usize,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            urls: vec![DEFAULT_NATS_URL.to_string()],
            prefix: herd_bus::DEFAULT_PREFIX.to_string(),
            creds_file: None,
            nkey_seed_file: None,
            user: None,
            password: None,
            token: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
            replicas: 1,
        }
    }
}

impl NatsConfig {
    pub fn has_credentials(&self) -> bool {
        self.creds_file.is_some()
            || self.nkey_seed_file.is_some()
            || self.user.is_some()
            || self.token.is_some()
            || self.tls_cert.is_some()
    }

    pub fn validate(&self) -> Result<(), NatsError> {
        if self.urls.is_empty() {
            return Err(NatsError::NoServers);
        }
        let methods = [
            self.creds_file.is_some(),
            self.nkey_seed_file.is_some(),
            self.user.is_some(),
            self.token.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(NatsError::SeveralAuthMethods);
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(NatsError::UserWithoutPassword);
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(NatsError::CertWithoutKey);
        }
        herd_bus::Subjects::new(&self.prefix).map_err(NatsError::Prefix)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_points_at_a_local_server() {
        let c = NatsConfig::default();
        c.validate().unwrap();
        assert_eq!(c.urls, vec![DEFAULT_NATS_URL]);
        assert!(!c.has_credentials());
    }

    #[test]
    fn contradictory_settings_are_refused() {
        let base = NatsConfig::default();
        let no_urls = NatsConfig {
            urls: vec![],
            ..base.clone()
        };
        assert!(matches!(no_urls.validate(), Err(NatsError::NoServers)));
        let two_methods = NatsConfig {
            token: Some("t".into()),
            creds_file: Some("/x.creds".into()),
            ..base.clone()
        };
        assert!(matches!(
            two_methods.validate(),
            Err(NatsError::SeveralAuthMethods)
        ));
        let user_only = NatsConfig {
            user: Some("u".into()),
            ..base.clone()
        };
        assert!(matches!(
            user_only.validate(),
            Err(NatsError::UserWithoutPassword)
        ));
        let cert_only = NatsConfig {
            tls_cert: Some("/c.pem".into()),
            ..base.clone()
        };
        assert!(matches!(
            cert_only.validate(),
            Err(NatsError::CertWithoutKey)
        ));
        let bad_prefix = NatsConfig {
            prefix: "a b".into(),
            ..base
        };
        let err = bad_prefix.validate().unwrap_err();
        assert!(err.to_string().starts_with("nats.prefix: "), "{err}");
    }
}
