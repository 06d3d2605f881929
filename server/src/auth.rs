//! Who is asking: password hashing (argon2), random tokens (stored as SHA-256), the signed
//! session cookie (HMAC-SHA256 over the session id), login throttling, and resolving a
//! request's identity from its cookie or `Authorization: Bearer` header. Every comparison of
//! a secret is constant-time (`Mac::verify_slice`, `subtle`, argon2's own verify).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::store::{Session, Store, StoreError, User};

/// The session cookie's name.
pub const COOKIE: &str = "sx_session";

/// Failed logins for one name from one address allowed within `THROTTLE_WINDOW` before
/// that pair is locked out.
pub const MAX_FAILURES: u32 = 5;
/// Failed logins from one address (any names) before the address is locked out.
pub const MAX_ADDRESS_FAILURES: u32 = 50;
const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
const FIRST_LOCKOUT: Duration = Duration::from_secs(30);
/// Memory the throttle may use for its entries, counted in key bytes plus a fixed cost each.
const THROTTLE_BYTES: usize = 4 << 20;
const ENTRY_COST: usize = 64;
/// The longest login name considered at all (longer ones fail before any work).
pub const MAX_NAME_BYTES: usize = 64;

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

/// Checks `password` against a stored argon2 hash (PHC string), in constant time.
///
/// Argon2 needs its whole memory cost (19 MiB by default) per hash. Allocated afresh, that
/// memory lands in the malloc arena of whichever pool thread ran the hash and stays there:
/// a login flood once held 574 MB. So the memory comes from a small pool, one block per
/// hash running at once (the [`HashGate`] bounds that).
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    let mut memory = MEMORY.take(params.block_count());
    let hashed = argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..])
        .is_ok();
    MEMORY.give_back(memory);
    use subtle::ConstantTimeEq;
    hashed && bool::from(out.ct_eq(expected.as_bytes()))
}

/// Argon2 memory blocks kept for reuse (see [`verify_password`]).
struct MemoryPool(Mutex<Vec<Vec<argon2::Block>>>);

static MEMORY: MemoryPool = MemoryPool(Mutex::new(Vec::new()));

impl MemoryPool {
    fn take(&self, blocks: usize) -> Vec<argon2::Block> {
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match pool.iter().position(|m| m.len() == blocks) {
            Some(i) => pool.swap_remove(i),
            None => vec![argon2::Block::default(); blocks],
        }
    }

    fn give_back(&self, memory: Vec<argon2::Block>) {
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // More than the hashes that may run at once is never needed.
        if pool.len() < std::thread::available_parallelism().map_or(2, |n| n.get()) * 2 {
            pool.push(memory);
        }
    }
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

/// Failed logins, counted per (name, client address) and per address, so that failures
/// from elsewhere never lock an account's owner out. Bounded in bytes: when full, the entries
/// that failed longest ago are forgotten first.
#[derive(Default)]
pub struct Throttle {
    entries: Mutex<ThrottleEntries>,
}

#[derive(Default)]
struct ThrottleEntries {
    map: HashMap<String, Failures>,
    bytes: usize,
}

fn pair_key(name: &str, address: &str) -> String {
    format!("n {address} {}", name.to_lowercase())
}

fn address_key(address: &str) -> String {
    format!("a {address}")
}

impl Throttle {
    /// Seconds until `name` may try again from `address`, when either is locked out.
    pub fn locked_out(&self, name: &str, address: &str, now: Instant) -> Option<u64> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let wait = |key: String, allowed: u32| {
            let entry = entries.map.get(&key)?;
            if entry.count < allowed || now.duration_since(entry.last) > THROTTLE_WINDOW {
                return None;
            }
            // 30 s after the allowed failures, doubling with each further one, at most the
            // window.
            let lockout = FIRST_LOCKOUT
                .saturating_mul(1 << (entry.count - allowed).min(10))
                .min(THROTTLE_WINDOW);
            let until = entry.last + lockout;
            (until > now).then(|| (until - now).as_secs().max(1))
        };
        let pair = wait(pair_key(name, address), MAX_FAILURES);
        let whole = wait(address_key(address), MAX_ADDRESS_FAILURES);
        pair.max(whole)
    }

    pub fn failed(&self, name: &str, address: &str, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for key in [pair_key(name, address), address_key(address)] {
            entries.bump(key, now);
        }
        entries.evict_oldest(THROTTLE_BYTES);
    }

    pub fn succeeded(&self, name: &str, address: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&pair_key(name, address));
    }

    /// The memory the entries take, as counted against the bound.
    pub fn bytes(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

impl ThrottleEntries {
    fn bump(&mut self, key: String, now: Instant) {
        let cost = key.len() + ENTRY_COST;
        let entry = match self.map.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                self.bytes += cost;
                e.insert(Failures {
                    count: 0,
                    last: now,
                })
            }
        };
        if now.duration_since(entry.last) > THROTTLE_WINDOW {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
    }

    fn remove(&mut self, key: &str) {
        if self.map.remove(key).is_some() {
            self.bytes -= key.len() + ENTRY_COST;
        }
    }

    /// Past `limit` bytes: forget the entries that failed longest ago until a quarter of the
    /// room is free again (so a flood pays for the sort once per many failures).
    fn evict_oldest(&mut self, limit: usize) {
        if self.bytes <= limit {
            return;
        }
        let mut by_age: Vec<(Instant, String)> = self
            .map
            .iter()
            .map(|(key, f)| (f.last, key.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, key) in by_age {
            if self.bytes <= limit / 4 * 3 {
                break;
            }
            self.remove(&key);
        }
    }
}

/// At most one password hash per CPU at a time (argon2 takes 19 MiB and a CPU for tens of
/// milliseconds); a bounded number of logins wait their turn, and beyond that a login is
/// told to come back (503 with `Retry-After`) instead of queueing without end.
pub struct HashGate {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
    max_waiting: usize,
}

impl HashGate {
    pub fn new(at_once: usize, max_waiting: usize) -> HashGate {
        HashGate {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(at_once.max(1))),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// A turn to hash, or `None` when too many are already waiting.
    pub async fn enter(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        use std::sync::atomic::Ordering;
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let permit = self.permits.clone().acquire_owned().await.ok();
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit
    }
}

/// Session signing and login throttling, shared by every worker.
pub struct Auth {
    key: Vec<u8>,
    /// Adds `Secure` to the cookie (the site is served over https).
    pub secure: bool,
    /// How long a session lives, in milliseconds.
    pub ttl_ms: i64,
    pub throttle: Throttle,
    pub hashing: HashGate,
    /// `SX_KERNEL_TOKEN`: a Bearer token that is the flow kernel's (or its host's) —
    /// granted `flows` only.
    pub kernel_token: Option<String>,
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
            throttle: Throttle::default(),
            hashing: HashGate::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
                256,
            ),
            kernel_token: None,
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
            if let Some(kernel) = self.kernel_token.as_deref() {
                if same_secret(token.trim(), kernel) {
                    return Ok(Identity::Bearer {
                        user: User {
                            name: "kernel".into(),
                            password_hash: String::new(),
                            grants: vec!["flows".into()],
                        },
                    });
                }
            }
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
    // Grants are merged in the write's own transaction: one made meanwhile (`sx grant`, or
    // another node starting) is kept.
    store
        .change_user(name, |current| {
            let mut grants = current.map(|u| u.grants).unwrap_or_default();
            if !grants.iter().any(|g| g == "*") {
                grants.push("*".into());
            }
            User {
                name: name.clone(),
                password_hash: hash,
                grants,
            }
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
        .sweep_sessions(crate::effects::now_ms())
        .map_err(|e| format!("the sessions: {e}"))?;
    if swept > 0 {
        tracing::info!("deleted {swept} expired sessions");
    }
    let failed = |e: StoreError| format!("the admin account: {e}");
    match ensure_admin(store, config)? {
        true => {}
        // A flow kernel has no login page: a generated admin would be of no use there.
        false if !config.kernel_mode && store.user_count().map_err(failed)? == 0 => {
            let password = random_hex(12);
            let first = User {
                name: "admin".into(),
                password_hash: hash_password(&password)?,
                grants: vec!["*".into()],
            };
            if store.add_first_user(&first).map_err(failed)? {
                tracing::warn!(
                    "created the user `admin` with password {password} (shown only now; set \
                     SX_ADMIN_USER and SX_ADMIN_PASSWORD to choose your own)"
                );
            }
        }
        false => {}
    }
    Ok(Auth {
        kernel_token: config.kernel_token.clone(),
        ..Auth::new(
            key.as_bytes(),
            config.https,
            (config.session_ttl as i64).saturating_mul(1000),
        )
    })
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
        let throttle = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            throttle.failed("Ann", "10.0.0.1", t0);
        }
        assert_eq!(throttle.locked_out("ann", "10.0.0.1", t0), None);
        throttle.failed("ann", "10.0.0.1", t0);
        assert_eq!(throttle.locked_out("ANN", "10.0.0.1", t0), Some(30));
        throttle.failed("ann", "10.0.0.1", t0);
        assert_eq!(throttle.locked_out("ann", "10.0.0.1", t0), Some(60));
        assert_eq!(
            throttle.locked_out("ann", "10.0.0.1", t0 + Duration::from_secs(61)),
            None
        );
        throttle.succeeded("ann", "10.0.0.1");
        assert_eq!(throttle.locked_out("ann", "10.0.0.1", t0), None);
    }

    #[test]
    fn failures_from_one_address_do_not_lock_out_another() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES + 3 {
            throttle.failed("bob", "203.0.113.9", t0);
        }
        assert!(throttle.locked_out("bob", "203.0.113.9", t0).is_some());
        assert_eq!(throttle.locked_out("bob", "198.51.100.7", t0), None);
    }

    #[test]
    fn an_address_failing_many_names_is_locked_out() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        for i in 0..MAX_ADDRESS_FAILURES {
            throttle.failed(&format!("name{i}"), "203.0.113.9", t0);
        }
        assert!(throttle.locked_out("someone", "203.0.113.9", t0).is_some());
        assert_eq!(throttle.locked_out("someone", "198.51.100.7", t0), None);
    }

    #[test]
    fn a_flood_is_bounded_in_bytes_and_forgets_the_oldest_first() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            throttle.failed("ann", "10.0.0.1", t0 + Duration::from_secs(1));
        }
        // Far more distinct (name, address) pairs than fit, the newest last.
        for i in 0..120_000u64 {
            let at = t0 + Duration::from_millis(2_000 + i);
            throttle.failed(
                &format!("n{i}-{}", "x".repeat(40)),
                &format!("a{}", i % 997),
                at,
            );
        }
        assert!(throttle.bytes() <= THROTTLE_BYTES, "{}", throttle.bytes());
        // The newest entries are still counted; the oldest (ann's) were forgotten.
        let last = t0 + Duration::from_millis(2_000 + 119_999);
        let newest = format!("n119999-{}", "x".repeat(40));
        for _ in 0..MAX_FAILURES {
            throttle.failed(&newest, "a1000", last);
        }
        assert!(throttle.locked_out(&newest, "a1000", last).is_some());
        assert_eq!(throttle.locked_out("ann", "10.0.0.1", last), None);
    }

    #[tokio::test]
    async fn the_hash_gate_admits_a_bounded_queue() {
        let gate = std::sync::Arc::new(HashGate::new(1, 2));
        let first = gate.enter().await.expect("a free turn");
        let g1 = gate.clone();
        let g2 = gate.clone();
        let waiter1 = tokio::spawn(async move { g1.enter().await.is_some() });
        let waiter2 = tokio::spawn(async move { g2.enter().await.is_some() });
        tokio::task::yield_now().await;
        while gate.waiting.load(std::sync::atomic::Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        assert!(
            gate.enter().await.is_none(),
            "a third waiter is turned away"
        );
        drop(first);
        assert!(waiter1.await.unwrap());
        assert!(waiter2.await.unwrap());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(cookie_value("a=1; sx_session=x.y; b=2"), Some("x.y"));
        assert_eq!(cookie_value("a=1"), None);
    }
}
