//! Who is asking: password hashing (argon2), random tokens (stored as SHA-256), the signed
//! session cookie (HMAC-SHA256 over the session id), login throttling, and resolving a
//! request's identity from its cookie or `Authorization: Bearer` header. Every comparison of
//! a secret is constant-time (`Mac::verify_slice`, `subtle`, argon2's own verify).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::store::{Session, Store, StoreError, User};

/// The session cookie's name.
pub const COOKIE: &str = "sx_session";

/// Failed logins for one name allowed within `THROTTLE_WINDOW` before it is locked out.
pub const MAX_FAILURES: u32 = 5;
const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
const FIRST_LOCKOUT: Duration = Duration::from_secs(30);
/// Names with recent failures remembered at most.
const MAX_TRACKED_NAMES: usize = 100_000;

/// `bytes` random bytes from the OS, as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random number generator");
    hex(&buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("random salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A new API token (shown once) and the hash the store keeps.
pub fn new_token() -> (String, String) {
    let token = format!("sxt_{}", random_hex(32));
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Constant-time equality of two secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

struct Failures {
    count: u32,
    last: Instant,
}

/// Session signing and login throttling, shared by every worker.
pub struct Auth {
    key: Vec<u8>,
    /// Adds `Secure` to the cookie (the site is served over https).
    pub secure: bool,
    /// How long a session lives, in milliseconds.
    pub ttl_ms: i64,
    failures: Mutex<HashMap<String, Failures>>,
}

/// Who made a request.
pub enum Identity {
    Anonymous,
    /// A browser session: its id (the cookie's payload) and record.
    Session {
        id: String,
        session: Session,
        user: User,
    },
    /// An API client with a Bearer token: no ambient credentials, so no CSRF token needed.
    Bearer {
        user: User,
    },
}

impl Identity {
    pub fn user(&self) -> Option<&User> {
        match self {
            Identity::Anonymous => None,
            Identity::Session { user, .. } | Identity::Bearer { user } => Some(user),
        }
    }
}

impl Auth {
    pub fn new(key: &[u8], secure: bool, ttl_ms: i64) -> Auth {
        Auth {
            key: key.to_vec(),
            secure,
            ttl_ms,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length")
    }

    /// `id.signature`.
    pub fn sign(&self, id: &str) -> String {
        let mut mac = self.mac();
        mac.update(id.as_bytes());
        format!("{id}.{}", hex(&mac.finalize().into_bytes()))
    }

    /// The session id in a signed cookie value, if the signature is right.
    pub fn verify<'a>(&self, value: &'a str) -> Option<&'a str> {
        let (id, signature) = value.rsplit_once('.')?;
        let signature = unhex(signature)?;
        let mut mac = self.mac();
        mac.update(id.as_bytes());
        mac.verify_slice(&signature).ok()?;
        Some(id)
    }

    pub fn session_cookie(&self, id: &str) -> String {
        format!(
            "{COOKIE}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
            self.sign(id),
            self.ttl_ms / 1000,
            if self.secure { "; Secure" } else { "" }
        )
    }

    pub fn clear_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// Seconds until `name` may try to log in again, when it is locked out.
    pub fn locked_out(&self, name: &str, now: Instant) -> Option<u64> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let entry = failures.get(&name.to_lowercase())?;
        if entry.count < MAX_FAILURES || now.duration_since(entry.last) > THROTTLE_WINDOW {
            return None;
        }
        // 30 s after the fifth failure, doubling with each further one, at most the window.
        let lockout = FIRST_LOCKOUT
            .saturating_mul(1 << (entry.count - MAX_FAILURES).min(10))
            .min(THROTTLE_WINDOW);
        let until = entry.last + lockout;
        (until > now).then(|| (until - now).as_secs().max(1))
    }

    pub fn login_failed(&self, name: &str, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Made-up names must not grow this without bound: forget what is past the window.
        if failures.len() >= MAX_TRACKED_NAMES {
            failures.retain(|_, f| now.duration_since(f.last) <= THROTTLE_WINDOW);
            if failures.len() >= MAX_TRACKED_NAMES {
                failures.clear();
            }
        }
        let entry = failures.entry(name.to_lowercase()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) > THROTTLE_WINDOW {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
    }

    pub fn login_succeeded(&self, name: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&name.to_lowercase());
    }

    /// Resolves a request's identity: a Bearer token, else a signed session cookie. A bad
    /// token, a forged cookie or an expired or deleted session is no identity.
    pub fn identify(
        &self,
        store: &Store,
        authorization: Option<&str>,
        cookie: Option<&str>,
        now: i64,
    ) -> Result<Identity, StoreError> {
        if let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) {
            return Ok(match store.token_user(&token_hash(token.trim()))? {
                Some(user) => Identity::Bearer { user },
                None => Identity::Anonymous,
            });
        }
        let Some(value) = cookie.and_then(cookie_value) else {
            return Ok(Identity::Anonymous);
        };
        let Some(id) = self.verify(value) else {
            return Ok(Identity::Anonymous);
        };
        Ok(match store.session(id, now)? {
            Some((session, user)) => Identity::Session {
                id: id.to_string(),
                session,
                user,
            },
            None => Identity::Anonymous,
        })
    }
}

/// The admin account from `SX_ADMIN_USER` / `SX_ADMIN_PASSWORD`, created or updated (only an
/// argon2 hash is kept; an unchanged password is not hashed again) with every grant. False
/// when neither is set. Runs at server start and before the account commands, so
/// `sx token create $SX_ADMIN_USER` works before the first start.
pub fn ensure_admin(store: &Store, config: &crate::Config) -> Result<bool, String> {
    let failed = |e: StoreError| format!("the admin account: {e}");
    let (name, password) = match (&config.admin_user, &config.admin_password) {
        (Some(name), Some(password)) => (name, password),
        (None, None) => return Ok(false),
        _ => return Err("set both SX_ADMIN_USER and SX_ADMIN_PASSWORD, or neither".into()),
    };
    if !crate::accounts::valid_name(name) {
        return Err(format!(
            "SX_ADMIN_USER {name:?} is not a user name (1 to 64 letters, digits, _ - .)"
        ));
    }
    let current = store.user(name).map_err(failed)?;
    let hash = match &current {
        Some(user) if verify_password(password, &user.password_hash) => user.password_hash.clone(),
        _ => hash_password(password)?,
    };
    let mut grants = current.map(|u| u.grants).unwrap_or_default();
    if !grants.iter().any(|g| g == "*") {
        grants.push("*".into());
    }
    store
        .put_user(&User {
            name: name.clone(),
            password_hash: hash,
            grants,
        })
        .map_err(failed)?;
    Ok(true)
}

/// Sets up sessions for a server start: the signing key (`SX_SESSION_SECRET`, else one
/// generated and kept in the store) and the admin account. With no admin configured and no
/// users at all, an `admin` account is made with a random password, shown once in the log.
pub fn start(store: &Store, config: &crate::Config) -> Result<Auth, String> {
    let key = match &config.session_secret {
        Some(secret) => secret.clone(),
        None => store
            .secret("session", || random_hex(32))
            .map_err(|e| format!("the session secret: {e}"))?,
    };
    let swept = store
        .sweep_sessions(crate::handler::now_ms())
        .map_err(|e| format!("the sessions: {e}"))?;
    if swept > 0 {
        tracing::info!("deleted {swept} expired sessions");
    }
    let failed = |e: StoreError| format!("the admin account: {e}");
    match ensure_admin(store, config)? {
        true => {}
        false if store.user_count().map_err(failed)? == 0 => {
            let password = random_hex(12);
            store
                .put_user(&User {
                    name: "admin".into(),
                    password_hash: hash_password(&password)?,
                    grants: vec!["*".into()],
                })
                .map_err(failed)?;
            tracing::warn!(
                "created the user `admin` with password {password} (shown only now; set \
                 SX_ADMIN_USER and SX_ADMIN_PASSWORD to choose your own)"
            );
        }
        false => {}
    }
    Ok(Auth::new(
        key.as_bytes(),
        config.https,
        (config.session_ttl as i64).saturating_mul(1000),
    ))
}

/// The session cookie's value in a `Cookie` header.
fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_id_verifies_and_any_change_does_not() {
        let auth = Auth::new(b"key", false, 1000);
        let signed = auth.sign("abc");
        assert_eq!(auth.verify(&signed), Some("abc"));
        assert_eq!(auth.verify(&signed.replace("abc", "abd")), None);
        assert_eq!(Auth::new(b"other", false, 1000).verify(&signed), None);
        assert_eq!(auth.verify("abc"), None);
        assert_eq!(auth.verify("abc.zz"), None);
        assert_eq!(auth.verify(&format!("{signed}0")), None);
    }

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horsf", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn lockout_starts_after_the_fifth_failure_and_doubles() {
        let auth = Auth::new(b"k", false, 1000);
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            auth.login_failed("Ann", t0);
        }
        assert_eq!(auth.locked_out("ann", t0), None);
        auth.login_failed("ann", t0);
        assert_eq!(auth.locked_out("ANN", t0), Some(30));
        auth.login_failed("ann", t0);
        assert_eq!(auth.locked_out("ann", t0), Some(60));
        assert_eq!(auth.locked_out("ann", t0 + Duration::from_secs(61)), None);
        auth.login_succeeded("ann");
        assert_eq!(auth.locked_out("ann", t0), None);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(cookie_value("a=1; sx_session=x.y; b=2"), Some("x.y"));
        assert_eq!(cookie_value("a=1"), None);
    }
}
