//! Whether a page may act (stop a workload or a run, drain a node): never unless
//! `dashboard.allow_actions`, and then only with the token of `dashboard.token_file` in the
//! `X-Herd-Token` header (a header, so that a form on another site cannot send it), from a page
//! of this dashboard when the browser says where the request comes from.

/// The header an action carries its token in.
pub const TOKEN_HEADER: &str = "x-herd-token";

/// Why an action is refused, with the HTTP status it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

/// The actions policy of one dashboard.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `None`: actions are off.
    token: Option<String>,
}

impl Policy {
    pub fn off() -> Policy {
        Policy { token: None }
    }

    /// Actions on, with the token read from the token file (surrounding whitespace trimmed).
    pub fn with_token(token: &str) -> Result<Policy, String> {
        let token = token.trim();
        if token.len() < 16 {
            return Err(format!(
                "the dashboard token must be at least 16 characters, the file holds {}",
                token.len()
            ));
        }
        Ok(Policy {
            token: Some(token.to_string()),
        })
    }

    pub fn allowed(&self) -> bool {
        self.token.is_some()
    }

    /// Checks one action request: its token, and its `Origin` (when the browser sent one)
    /// against the `Host` it was sent to.
    pub fn check(
        &self,
        token: Option<&str>,
        origin: Option<&str>,
        host: Option<&str>,
    ) -> Result<(), Refused> {
        let Some(expected) = &self.token else {
            return Err(Refused {
                status: 403,
                message: "actions are off on this dashboard (dashboard.allow_actions = false)"
                    .into(),
            });
        };
        if let (Some(origin), Some(host)) = (origin, host) {
            let from = origin.split("://").nth(1).unwrap_or(origin);
            if from != host {
                return Err(Refused {
                    status: 403,
                    message: format!("a page of {origin} may not act on this dashboard ({host})"),
                });
            }
        }
        match token {
            None | Some("") => Err(Refused {
                status: 401,
                message: "this action needs the dashboard's token (X-Herd-Token)".into(),
            }),
            Some(t) if !same(t.as_bytes(), expected.as_bytes()) => Err(Refused {
                status: 403,
                message: "wrong token".into(),
            }),
            Some(_) => Ok(()),
        }
    }
}

/// Compares in time that does not depend on where the two differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    #[test]
    fn actions_off_refuse_everything() {
        let err = Policy::off().check(Some(TOKEN), None, None).unwrap_err();
        assert_eq!(err.status, 403);
        assert!(err.message.contains("allow_actions"));
    }

    #[test]
    fn actions_on_need_the_token() {
        let p = Policy::with_token(&format!("  {TOKEN}\n")).unwrap();
        assert_eq!(p.check(None, None, None).unwrap_err().status, 401);
        assert_eq!(p.check(Some(""), None, None).unwrap_err().status, 401);
        assert_eq!(p.check(Some("nope"), None, None).unwrap_err().status, 403);
        assert_eq!(
            p.check(Some(&TOKEN[..20]), None, None).unwrap_err().status,
            403
        );
        assert_eq!(p.check(Some(TOKEN), None, None), Ok(()));
        assert_eq!(
            p.check(
                Some(TOKEN),
                Some("http://127.0.0.1:8080"),
                Some("127.0.0.1:8080")
            ),
            Ok(())
        );
    }

    #[test]
    fn another_sites_page_cannot_act_even_with_the_token() {
        let p = Policy::with_token(TOKEN).unwrap();
        let err = p
            .check(
                Some(TOKEN),
                Some("https://evil.example"),
                Some("127.0.0.1:8080"),
            )
            .unwrap_err();
        assert_eq!(err.status, 403);
        assert!(err.message.contains("evil.example"));
    }

    #[test]
    fn a_short_token_is_refused_at_start() {
        assert!(Policy::with_token("short\n").unwrap_err().contains("16"));
    }
}
