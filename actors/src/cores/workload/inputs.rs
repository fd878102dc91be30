//! A workload's inputs on the node: where they go, and the SHA-256 a digest names (the name of
//! the node's cached copy). Their paths and digests are checked by [`herd_bus::inputs_problem`].

use base64::Engine;

/// Inside a workload's working directory: where its inputs are materialized (HERD_INPUT_DIR).
pub const INPUT_SUBDIR: &str = "inputs";

/// The SHA-256 of a digest in the object store's form (`SHA-256=<base64url>`), as lowercase hex.
pub fn digest_hex(digest: &str) -> Option<String> {
    let b64 = digest.strip_prefix("SHA-256=")?;
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(b64)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64))
        .ok()?;
    (bytes.len() == 32).then(|| crate::cores::results::hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_name_their_sha256() {
        assert_eq!(
            digest_hex("SHA-256=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0=").as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            digest_hex("SHA-256=ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0").as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        for bad in ["", "ungWv48B", "SHA-256=", "SHA-256=abc", "MD5=ungWv48Bz"] {
            assert_eq!(digest_hex(bad), None, "{bad}");
        }
    }
}
