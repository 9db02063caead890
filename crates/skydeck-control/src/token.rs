//! Secrets the control plane compares: admin keys and per-node agent tokens.
//!
//! Agent tokens are 256 random bits, shown once (in the task's `secrets:`) and stored only as
//! their sha256. Admin keys are compared by their digests in constant time, so neither a key's
//! content nor its length leaks through response timing.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new agent token: `sdn_` and 64 hex digits.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    format!("sdn_{}", hex(&bytes))
}

/// sha256 of `token`, hex.
pub fn hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// sha256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The admin keys a request may present (several, so keys can be rotated without downtime).
#[derive(Clone)]
pub struct AdminKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for AdminKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminKeys({} keys, redacted)", self.digests.len())
    }
}

impl AdminKeys {
    /// Keys from a secret's text: one per line or comma-separated; blanks ignored.
    pub fn parse(text: &str) -> AdminKeys {
        let digests = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| Sha256::digest(k.as_bytes()).into())
            .collect();
        AdminKeys { digests }
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `presented` is one of the keys. Every key is compared, whatever matches.
    pub fn accepts(&self, presented: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut ok = subtle::Choice::from(0);
        for k in &self.digests {
            ok |= k.ct_eq(&d);
        }
        ok.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_tokens() {
        let keys = AdminKeys::parse("alpha, beta\n\n");
        assert_eq!(keys.len(), 2);
        assert!(keys.accepts("alpha") && keys.accepts("beta"));
        assert!(!keys.accepts("alph") && !keys.accepts(""));
        assert!(!format!("{keys:?}").contains("alpha"));
        let t = generate();
        assert_eq!(t.len(), 68);
        assert_ne!(t, generate());
        assert_eq!(hash(&t).len(), 64);
    }
}
