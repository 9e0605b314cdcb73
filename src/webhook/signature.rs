//! Standard Webhooks signatures: `v1,` and the base64 HMAC-SHA256 of
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, one per configured secret, so
//! that a receiver still holding the old secret during a rotation verifies
//! as well as one that has the new one.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;

use crate::config::webhook_key;

/// A configured secret that is not `whsec_` followed by base64.
#[derive(Debug, thiserror::Error)]
#[error("webhook.secret #{0} is not \"whsec_\" followed by base64")]
pub struct InvalidSecret(usize);

/// Signs attempts with every configured key.
pub struct Signer {
    /// The decoded keys, in configuration order; never printed.
    keys: Vec<SecretSlice<u8>>,
}

impl Signer {
    /// Decodes each `whsec_` secret into its key.
    ///
    /// # Errors
    /// The first secret that does not decode (counted from 1).
    pub fn new(secrets: &[SecretString]) -> Result<Signer, InvalidSecret> {
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(index, secret)| {
                webhook_key(secret)
                    .map(SecretSlice::from)
                    .ok_or(InvalidSecret(index + 1))
            })
            .collect::<Result<_, _>>()?;
        Ok(Signer { keys })
    }

    /// The `webhook-signature` value for one attempt: space-separated
    /// `v1,<base64>` entries, one per key.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &str) -> String {
        let signed = format!("{webhook_id}.{timestamp}.{body}");
        self.keys
            .iter()
            .map(|key| {
                let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret())
                    .expect("HMAC accepts keys of any length");
                mac.update(signed.as_bytes());
                format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(secrets: &[&str]) -> Signer {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| s.to_string().into()).collect();
        Signer::new(&secrets).unwrap()
    }

    #[test]
    fn the_signature_matches_the_standard_webhooks_example() {
        // The example published with the Standard Webhooks specification,
        // checked independently with `openssl dgst -hmac`.
        let signer = signer(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        let signature = signer.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn each_secret_adds_one_space_separated_signature_in_order() {
        let one = signer(&["whsec_c2VjcmV0"]).sign("msg_1", 10, "{}");
        let two = signer(&["whsec_b3RoZXI="]).sign("msg_1", 10, "{}");
        let both = signer(&["whsec_c2VjcmV0", "whsec_b3RoZXI="]).sign("msg_1", 10, "{}");
        assert_ne!(one, two);
        assert_eq!(both, format!("{one} {two}"));
    }

    #[test]
    fn the_timestamp_and_id_are_part_of_what_is_signed() {
        let signer = signer(&["whsec_c2VjcmV0"]);
        let base = signer.sign("msg_1", 10, "{}");
        assert_ne!(base, signer.sign("msg_1", 11, "{}"));
        assert_ne!(base, signer.sign("msg_2", 10, "{}"));
        assert_ne!(base, signer.sign("msg_1", 10, "{ }"));
    }

    #[test]
    fn a_malformed_secret_is_named_by_its_position() {
        let secrets: Vec<SecretString> = vec![
            "whsec_c2VjcmV0".to_string().into(),
            "not-a-secret".to_string().into(),
        ];
        let error = Signer::new(&secrets).unwrap_err();
        assert!(error.to_string().contains("#2"), "{error}");
    }

    #[test]
    fn debug_output_shows_no_key() {
        let shown = format!("{:?}", signer(&["whsec_c2VjcmV0"]));
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("secret"),
            "{shown}"
        );
    }
}
