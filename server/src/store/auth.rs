//! Users, API tokens, grants and sessions. Passwords and tokens are stored only as hashes
//! (argon2 for passwords, SHA-256 for random tokens); the hashing lives in `crate::auth`.

use sx_kernel::value::{kw_dict, kw_get, Dict, Key};
use sx_kernel::Value;

use super::backend::{Scan, Table};
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

impl Store {
    pub fn user(&self, name: &str) -> Result<Option<User>> {
        if !super::key_fits(name) {
            return Ok(None);
        }
        self.read(|txn| txn.get(Table::Users, name))?
            .as_deref()
            .map(decode_user)
            .transpose()
    }

    /// Creates or replaces a user.
    pub fn put_user(&self, user: &User) -> Result<()> {
        self.write(|txn| txn.put(Table::Users, &user.name, &encode_user(user)))
    }

    /// Adds `user` unless one of that name exists: false when it does (two `sx user add`
    /// of one name never overwrite each other).
    pub fn add_user(&self, user: &User) -> Result<bool> {
        self.write(|txn| {
            if txn.get(Table::Users, &user.name)?.is_some() {
                return Ok(false);
            }
            txn.put(Table::Users, &user.name, &encode_user(user))?;
            Ok(true)
        })
    }

    /// Creates or changes the user `name` in one transaction: `change` gets the stored user
    /// (if any) and answers the one to keep, so a grant made meanwhile is not lost.
    pub fn change_user(&self, name: &str, change: impl FnOnce(Option<User>) -> User) -> Result<()> {
        self.write(|txn| {
            let current = txn
                .get(Table::Users, name)?
                .as_deref()
                .map(decode_user)
                .transpose()?;
            let user = change(current);
            txn.put(Table::Users, &user.name, &encode_user(&user))
        })
    }

    /// Adds `user` only when there are no users at all: false when there are. (Nodes that
    /// start together make one first account, not one each.)
    pub fn add_first_user(&self, user: &User) -> Result<bool> {
        self.write(|txn| {
            if txn.count(Table::Users)? > 0 {
                return Ok(false);
            }
            txn.put(Table::Users, &user.name, &encode_user(user))?;
            Ok(true)
        })
    }

    pub fn user_count(&self) -> Result<u64> {
        self.read(|txn| txn.count(Table::Users))
    }

    /// Adds `action` to a user's grants (idempotent). False when there is no such user.
    pub fn grant(&self, name: &str, action: &str) -> Result<bool> {
        if !super::key_fits(name) {
            return Ok(false);
        }
        self.write(|txn| {
            let Some(raw) = txn.get(Table::Users, name)? else {
                return Ok(false);
            };
            let mut user = decode_user(&raw)?;
            if !user.grants.iter().any(|g| g == action) {
                user.grants.push(action.to_string());
                txn.put(Table::Users, name, &encode_user(&user))?;
            }
            Ok(true)
        })
    }

    /// Records a token (by its hash) for an existing user. False when there is no such user.
    pub fn add_token(&self, token_hash: &str, name: &str) -> Result<bool> {
        self.write(|txn| {
            if !super::key_fits(name) || txn.get(Table::Users, name)?.is_none() {
                return Ok(false);
            }
            txn.put(Table::Tokens, token_hash, name)?;
            Ok(true)
        })
    }

    /// The user a token (by its hash) belongs to.
    pub fn token_user(&self, token_hash: &str) -> Result<Option<User>> {
        if !super::key_fits(token_hash) {
            return Ok(None);
        }
        self.read(|txn| {
            let Some(name) = txn.get(Table::Tokens, token_hash)? else {
                return Ok(None);
            };
            txn.get(Table::Users, &name)?
                .as_deref()
                .map(decode_user)
                .transpose()
        })
    }

    pub fn put_session(&self, id: &str, session: &Session) -> Result<()> {
        let raw = dict(vec![
            ("user", Value::str(&session.user)),
            ("csrf", Value::str(&session.csrf)),
            ("expires", Value::Int(session.expires)),
        ]);
        self.write(|txn| txn.put(Table::Sessions, id, &raw))
    }

    /// A live session and its user; an expired one is deleted and reads as none.
    pub fn session(&self, id: &str, now: i64) -> Result<Option<(Session, User)>> {
        if !super::key_fits(id) {
            return Ok(None);
        }
        let found = self.read(|txn| {
            let Some(raw) = txn.get(Table::Sessions, id)? else {
                return Ok(None);
            };
            let what = "session record";
            let d = record(&raw, what)?;
            let expires = match d.get(&Key(Value::kw("expires"))) {
                Some(Value::Int(t)) => *t,
                _ => return Err(StoreError::Corrupt(format!("{what}: no :expires"))),
            };
            let session = Session {
                user: text(&d, "user", what)?,
                csrf: text(&d, "csrf", what)?,
                expires,
            };
            let user = txn
                .get(Table::Users, &session.user)?
                .as_deref()
                .map(decode_user)
                .transpose()?;
            Ok(Some((session, user)))
        })?;
        match found {
            None => Ok(None),
            Some((session, Some(user))) if session.expires > now => Ok(Some((session, user))),
            Some(_) => {
                self.delete_session(id)?;
                Ok(None)
            }
        }
    }

    /// Deletes every session that expired before `now` (run at start: a session that is never
    /// presented again would otherwise stay forever). Returns how many went.
    pub fn sweep_sessions(&self, now: i64) -> Result<usize> {
        self.write(|txn| {
            let mut expired = Vec::new();
            for (id, raw) in txn.scan(Table::Sessions, Scan::all())? {
                let live = matches!(
                    record(&raw, "session record").map(|d| d.get(&Key(Value::kw("expires"))).cloned()),
                    Ok(Some(Value::Int(t))) if t > now
                );
                if !live {
                    expired.push(id);
                }
            }
            for id in &expired {
                txn.delete(Table::Sessions, id)?;
            }
            Ok(expired.len())
        })
    }

    pub fn delete_session(&self, id: &str) -> Result<()> {
        self.write(|txn| txn.delete(Table::Sessions, id).map(drop))
    }

    /// A named secret from the meta table, made with `make` and stored on first use (every
    /// node sharing the store gets the same one).
    pub fn secret(&self, name: &str, make: impl FnOnce() -> String) -> Result<String> {
        let key = format!("secret/{name}");
        self.write(|txn| {
            if let Some(value) = txn.get(Table::Meta, &key)? {
                return Ok(value);
            }
            let value = make();
            txn.put(Table::Meta, &key, &value)?;
            Ok(value)
        })
    }
}
