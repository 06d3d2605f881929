//! Users, API tokens, grants and sessions. Passwords and tokens are stored only as hashes
//! (argon2 for passwords, SHA-256 for random tokens); the hashing lives in `crate::auth`.

use heed::types::Str;
use heed::Database;
use sx_kernel::value::{kw_dict, kw_get, Dict, Key};
use sx_kernel::Value;

use super::{decode, encode, Result, Store, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// The argon2 hash in PHC string form.
    pub password_hash: String,
    /// Actions this user may take; `*` is every action.
    pub grants: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// The token every form POST of this session must carry.
    pub csrf: String,
    /// Milliseconds since the epoch.
    pub expires: i64,
}

fn dict(pairs: Vec<(&str, Value)>) -> String {
    encode(&kw_dict(pairs))
}

fn text(d: &Dict, name: &str, what: &str) -> Result<String> {
    match kw_get(d, name) {
        Some(Value::Str(s)) => Ok(s.to_string()),
        _ => Err(StoreError::Corrupt(format!("{what}: no :{name}"))),
    }
}

fn record(text: &str, what: &str) -> Result<Dict> {
    match decode(text, what)? {
        Value::Dict(d) => Ok(d),
        _ => Err(StoreError::Corrupt(format!("{what}: not a dict"))),
    }
}

fn encode_user(user: &User) -> String {
    dict(vec![
        ("name", Value::str(&user.name)),
        ("password-hash", Value::str(&user.password_hash)),
        (
            "grants",
            Value::list(user.grants.iter().map(|g| Value::str(g)).collect()),
        ),
    ])
}

fn decode_user(raw: &str) -> Result<User> {
    let what = "user record";
    let d = record(raw, what)?;
    let grants = match d.get(&Key(Value::kw("grants"))) {
        Some(Value::List(list)) => list
            .iter()
            .filter_map(|g| match g {
                Value::Str(s) => Some(s.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(User {
        name: text(&d, "name", what)?,
        password_hash: text(&d, "password-hash", what)?,
        grants,
    })
}

/// The databases this module owns, created at open.
pub struct AuthDbs {
    /// user name → user record.
    pub users: Database<Str, Str>,
    /// SHA-256 of a token (hex) → user name.
    pub tokens: Database<Str, Str>,
    /// session id → session record.
    pub sessions: Database<Str, Str>,
}

impl Store {
    pub fn user(&self, name: &str) -> Result<Option<User>> {
        if !super::key_fits(name) {
            return Ok(None);
        }
        let rtxn = self.env.read_txn()?;
        self.auth
            .users
            .get(&rtxn, name)?
            .map(decode_user)
            .transpose()
    }

    /// Creates or replaces a user.
    pub fn put_user(&self, user: &User) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        self.auth
            .users
            .put(&mut wtxn, &user.name, &encode_user(user))?;
        wtxn.commit()?;
        Ok(())
    }

    pub fn user_count(&self) -> Result<u64> {
        let rtxn = self.env.read_txn()?;
        Ok(self.auth.users.len(&rtxn)?)
    }

    /// Adds `action` to a user's grants (idempotent). False when there is no such user.
    pub fn grant(&self, name: &str, action: &str) -> Result<bool> {
        let mut wtxn = self.env.write_txn()?;
        let Some(raw) = self.auth.users.get(&wtxn, name)? else {
            return Ok(false);
        };
        let mut user = decode_user(raw)?;
        if !user.grants.iter().any(|g| g == action) {
            user.grants.push(action.to_string());
            self.auth.users.put(&mut wtxn, name, &encode_user(&user))?;
        }
        wtxn.commit()?;
        Ok(true)
    }

    /// Records a token (by its hash) for an existing user. False when there is no such user.
    pub fn add_token(&self, token_hash: &str, name: &str) -> Result<bool> {
        let mut wtxn = self.env.write_txn()?;
        if self.auth.users.get(&wtxn, name)?.is_none() {
            return Ok(false);
        }
        self.auth.tokens.put(&mut wtxn, token_hash, name)?;
        wtxn.commit()?;
        Ok(true)
    }

    /// The user a token (by its hash) belongs to.
    pub fn token_user(&self, token_hash: &str) -> Result<Option<User>> {
        let rtxn = self.env.read_txn()?;
        let Some(name) = self.auth.tokens.get(&rtxn, token_hash)? else {
            return Ok(None);
        };
        self.auth
            .users
            .get(&rtxn, name)?
            .map(decode_user)
            .transpose()
    }

    pub fn put_session(&self, id: &str, session: &Session) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        let raw = dict(vec![
            ("user", Value::str(&session.user)),
            ("csrf", Value::str(&session.csrf)),
            ("expires", Value::Int(session.expires)),
        ]);
        self.auth.sessions.put(&mut wtxn, id, &raw)?;
        wtxn.commit()?;
        Ok(())
    }

    /// A live session and its user; an expired one is deleted and reads as none.
    pub fn session(&self, id: &str, now: i64) -> Result<Option<(Session, User)>> {
        let found = {
            let rtxn = self.env.read_txn()?;
            let Some(raw) = self.auth.sessions.get(&rtxn, id)? else {
                return Ok(None);
            };
            let what = "session record";
            let d = record(raw, what)?;
            let expires = match d.get(&Key(Value::kw("expires"))) {
                Some(Value::Int(t)) => *t,
                _ => return Err(StoreError::Corrupt(format!("{what}: no :expires"))),
            };
            let session = Session {
                user: text(&d, "user", what)?,
                csrf: text(&d, "csrf", what)?,
                expires,
            };
            let user = self
                .auth
                .users
                .get(&rtxn, &session.user)?
                .map(decode_user)
                .transpose()?;
            (session, user)
        };
        match found {
            (session, Some(user)) if session.expires > now => Ok(Some((session, user))),
            _ => {
                self.delete_session(id)?;
                Ok(None)
            }
        }
    }

    /// Deletes every session that expired before `now` (run at start: a session that is never
    /// presented again would otherwise stay forever). Returns how many went.
    pub fn sweep_sessions(&self, now: i64) -> Result<usize> {
        let mut wtxn = self.env.write_txn()?;
        let mut expired = Vec::new();
        for entry in self.auth.sessions.iter(&wtxn)? {
            let (id, raw) = entry?;
            let live = matches!(
                record(raw, "session record").map(|d| d.get(&Key(Value::kw("expires"))).cloned()),
                Ok(Some(Value::Int(t))) if t > now
            );
            if !live {
                expired.push(id.to_string());
            }
        }
        for id in &expired {
            self.auth.sessions.delete(&mut wtxn, id)?;
        }
        wtxn.commit()?;
        Ok(expired.len())
    }

    pub fn delete_session(&self, id: &str) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        self.auth.sessions.delete(&mut wtxn, id)?;
        wtxn.commit()?;
        Ok(())
    }

    /// A named secret from the meta database, made with `make` and stored on first use.
    pub fn secret(&self, name: &str, make: impl FnOnce() -> String) -> Result<String> {
        let key = format!("secret/{name}");
        let mut wtxn = self.env.write_txn()?;
        if let Some(value) = self.meta.get(&wtxn, &key)? {
            return Ok(value.to_string());
        }
        let value = make();
        self.meta.put(&mut wtxn, &key, &value)?;
        wtxn.commit()?;
        Ok(value)
    }
}
