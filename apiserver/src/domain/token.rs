//! Tokens: how they are made, hashed and compared. Only hashes are ever stored.

use std::fmt;

use microdash_model::Scope;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A freshly generated token. Shown once; its `Debug` never prints the secret.
pub struct Token(String);

/// The SHA-256 of a token. Tokens carry 256 random bits, so a fast hash is enough: there is
/// nothing to brute-force, unlike a password.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

const TOKEN_PREFIX: &str = "mdt_";

impl Token {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Token(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
    }

    /// A token chosen by the operator (e.g. `default_tenant_token` of a Compose file): at least
    /// 32 characters and no whitespace, so it carries enough entropy for a plain SHA-256.
    pub fn from_secret(secret: &str) -> Result<Self, &'static str> {
        if secret.chars().count() < 32 {
            return Err("must be at least 32 characters long (e.g. `openssl rand -hex 32`)");
        }
        if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain whitespace or control characters");
        }
        Ok(Token(secret.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }

    /// The first characters, safe to show in lists and logs to tell tokens apart.
    pub fn display_prefix(&self) -> String {
        self.0.chars().take(TOKEN_PREFIX.len() + 6).collect()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}…)", self.display_prefix())
    }
}

impl TokenHash {
    pub fn of(secret: &str) -> Self {
        TokenHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Compares in constant time, so a mismatch does not tell how many bytes matched.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", hex::encode(&self.0[..4]))
    }
}

/// Who is calling: a tenant token with scopes, or the global admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `expires_at`: Unix ms when the token stops working; `None` = never.
    Tenant {
        tenant_id: i64,
        tenant: String,
        token_id: i64,
        scopes: Vec<Scope>,
        expires_at: Option<i64>,
    },
    Admin,
}

impl Principal {
    pub fn has_scope(&self, scope: Scope) -> bool {
        match self {
            Principal::Tenant { scopes, .. } => scopes.contains(&scope),
            Principal::Admin => false,
        }
    }
}

/// Parses `ingest,read` into scopes, sorted and without repeats.
pub fn parse_scopes(text: &str) -> Result<Vec<Scope>, microdash_model::UnknownScope> {
    let mut scopes =
        text.split(',').filter(|s| !s.trim().is_empty()).map(str::parse).collect::<Result<Vec<Scope>, _>>()?;
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

pub fn format_scopes(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_consistently() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with("mdt_"));
        assert_eq!(a.expose().len(), 4 + 64);
        assert!(a.hash().matches(&TokenHash::of(a.expose())));
        assert!(!a.hash().matches(&b.hash()));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let t = Token::generate();
        let shown = format!("{t:?} {:?}", t.hash());
        assert!(!shown.contains(&t.expose()[10..]));
    }

    #[test]
    fn scopes_parse_sorted_and_unique() {
        assert_eq!(parse_scopes("read,ingest,read").unwrap(), vec![Scope::Ingest, Scope::Read]);
        assert!(parse_scopes("read,root").is_err());
        assert_eq!(format_scopes(&[Scope::Ingest, Scope::Admin]), "ingest,admin");
    }
}
