//! Signed checkpoints: the C2SP `tlog-checkpoint` body (`<origin>\n<size>\n<base64 root>\n`)
//! in a C2SP `signed-note`, signed with Ed25519, and the key texts Go's `note` package uses:
//!
//! - verifier key: `<name>+<key id, 8 hex>+<base64(0x01 || public key)>`
//! - signer key: `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>`
//!
//! where the key id is the first 4 bytes of SHA-256(name || "\n" || 0x01 || public key), and a
//! signature line is `— <name> <base64(key id || signature)>` (U+2014 then a space).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// Ed25519's algorithm byte in C2SP keys.
const ED25519: u8 = 0x01;

/// Why a key or a note could not be read or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key: {0}")]
    Key(String),
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    #[error("no signature by key {0} on the checkpoint")]
    NotSigned(String),
    #[error("the signature by key {0} does not verify")]
    BadSignature(String),
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains(['+', ' ', '\n', '\t']) {
        return Err(NoteError::Key(format!(
            "key name '{name}' must be non-empty, without '+' or spaces"
        )));
    }
    Ok(())
}

/// The service's signing key.
#[derive(Clone)]
pub struct CheckpointSigner {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A new random key named `name`.
    pub fn generate(name: &str) -> Result<CheckpointSigner, NoteError> {
        check_name(name)?;
        let seed: [u8; 32] = rand::random();
        Ok(CheckpointSigner {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Reads `PRIVATE+KEY+<name>+<id>+<base64>`.
    pub fn parse(text: &str) -> Result<CheckpointSigner, NoteError> {
        let text = text.trim();
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| NoteError::Key("a signer key starts with PRIVATE+KEY+".into()))?;
        let (name, id, key) = split_key(rest)?;
        if key.len() != 33 || key[0] != ED25519 {
            return Err(NoteError::Key("not an Ed25519 signer key".into()));
        }
        let seed: [u8; 32] = key[1..].try_into().expect("33 bytes");
        let signer = CheckpointSigner {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        };
        if signer.key_id() != id {
            return Err(NoteError::Key(
                "the key id does not match the key (mistyped or truncated?)".into(),
            ));
        }
        Ok(signer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, self.key.verifying_key().as_bytes())
    }

    /// The signer key text (keep it secret).
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.key_id()),
            B64.encode(bytes)
        )
    }

    /// The verifier key text auditors are given.
    pub fn verifier(&self) -> CheckpointVerifier {
        CheckpointVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// The signed note of the checkpoint `origin / size / root`.
    pub fn sign(&self, origin: &str, size: u64, root: &Hash) -> Result<String, NoteError> {
        if origin.is_empty() || origin.contains('\n') {
            return Err(NoteError::Malformed(
                "the origin must be one non-empty line".into(),
            ));
        }
        let body = format!("{origin}\n{size}\n{}\n", B64.encode(root));
        let signature = self.key.sign(body.as_bytes());
        let mut sig = self.key_id().to_vec();
        sig.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{body}\n\u{2014} {} {}\n",
            self.name,
            B64.encode(sig)
        ))
    }
}

/// An auditor's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointVerifier {
    name: String,
    key: VerifyingKey,
}

fn split_key(text: &str) -> Result<(&str, [u8; 4], Vec<u8>), NoteError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::Key("expected <name>+<key id>+<key>".into()));
    };
    check_name(name)?;
    let id: [u8; 4] = hex::decode(id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| NoteError::Key("the key id is 8 hex digits".into()))?;
    let key = B64
        .decode(key)
        .map_err(|e| NoteError::Key(format!("the key is not base64: {e}")))?;
    Ok((name, id, key))
}

impl CheckpointVerifier {
    /// Reads `<name>+<id>+<base64(0x01 || key)>`.
    pub fn parse(text: &str) -> Result<CheckpointVerifier, NoteError> {
        let (name, id, key) = split_key(text.trim())?;
        if key.len() != 33 || key[0] != ED25519 {
            return Err(NoteError::Key("not an Ed25519 verifier key".into()));
        }
        let public: [u8; 32] = key[1..].try_into().expect("33 bytes");
        if key_id(name, &public) != id {
            return Err(NoteError::Key("the key id does not match the key".into()));
        }
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|e| NoteError::Key(format!("not an Ed25519 point: {e}")))?;
        Ok(CheckpointVerifier {
            name: name.to_string(),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn to_text(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_id(&self.name, self.key.as_bytes())),
            B64.encode(bytes)
        )
    }

    /// Reads a signed checkpoint and checks this key's signature on it.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let checkpoint = Checkpoint::parse(note)?;
        let id = key_id(&self.name, self.key.as_bytes());
        let prefix = format!("\u{2014} {} ", self.name);
        let mut found = false;
        for line in checkpoint.signatures.lines() {
            let Some(sig) = line.strip_prefix(&prefix) else {
                continue;
            };
            let Ok(bytes) = B64.decode(sig) else {
                continue;
            };
            if bytes.len() != 68 || bytes[..4] != id {
                continue;
            }
            found = true;
            let signature = Signature::from_slice(&bytes[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            if self
                .key
                .verify(checkpoint.body.as_bytes(), &signature)
                .is_ok()
            {
                return Ok(checkpoint);
            }
        }
        Err(if found {
            NoteError::BadSignature(self.name.clone())
        } else {
            NoteError::NotSigned(self.name.clone())
        })
    }
}

/// A checkpoint as read from its note (not yet trusted: [`CheckpointVerifier::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The signed text: the body lines, each ending in a newline.
    pub body: String,
    /// The signature lines.
    pub signatures: String,
}

impl Checkpoint {
    /// Reads `body \n signatures` without checking any signature.
    pub fn parse(note: &str) -> Result<Checkpoint, NoteError> {
        let (body, signatures) = note.split_once("\n\n").ok_or_else(|| {
            NoteError::Malformed("no blank line between the text and its signatures".into())
        })?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| NoteError::Malformed("no origin line".into()))?
            .to_string();
        let size = lines
            .next()
            .and_then(|s| {
                (!s.starts_with('+') && !s.starts_with('0') || s == "0")
                    .then(|| s.parse::<u64>().ok())
                    .flatten()
            })
            .ok_or_else(|| NoteError::Malformed("the second line is not a tree size".into()))?;
        let root: Hash = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                NoteError::Malformed("the third line is not a base64 SHA-256 hash".into())
            })?;
        Ok(Checkpoint {
            origin,
            size,
            root,
            body,
            signatures: signatures.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_verifies_with_its_key_only() {
        let signer = CheckpointSigner::generate("etal-test").unwrap();
        let root = [7u8; 32];
        let note = signer.sign("example.org/etal", 42, &root).unwrap();
        assert!(note.starts_with("example.org/etal\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n\u{2014} etal-test "));
        let verifier = CheckpointVerifier::parse(&signer.verifier().to_text()).unwrap();
        let cp = verifier.verify(&note).unwrap();
        assert_eq!(
            (cp.origin.as_str(), cp.size, cp.root),
            ("example.org/etal", 42, root)
        );
        // Keys round-trip through their texts.
        let again = CheckpointSigner::parse(&signer.to_text()).unwrap();
        assert_eq!(again.sign("example.org/etal", 42, &root).unwrap(), note);
        // Another key, or a changed body, does not verify.
        let other = CheckpointSigner::generate("etal-test").unwrap().verifier();
        assert!(matches!(other.verify(&note), Err(NoteError::NotSigned(_))));
        let forged = note.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(
            verifier.verify(&forged),
            Err(NoteError::BadSignature(_))
        ));
        assert!(CheckpointVerifier::parse("etal-test+00000000+AQ==").is_err());
    }
}
