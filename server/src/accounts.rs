//! Account administration for the `sx user`, `sx token` and `sx grant` commands: they open
//! the store directly (LMDB allows it while a server runs on the same directory; PostgreSQL
//! while any number of nodes do).

use crate::auth::{hash_password, new_token};
use crate::store::{Location, Options, Store, User};

/// Opens the store, with the admin account from the environment in place (so that
/// `sx token create $SX_ADMIN_USER` works before the server's first start).
fn open(location: &Location) -> Result<Store, String> {
    let store = Store::open_at(location, Options::default(), 1)
        .map_err(|e| format!("cannot open {location}: {e}"))?;
    crate::auth::ensure_admin(&store, &crate::Config::from_env()?)?;
    Ok(store)
}

/// A user name: 1 to 64 letters, digits, `_`, `-` or `.`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

pub fn add_user(location: &Location, name: &str, password: &str) -> Result<(), String> {
    if !valid_name(name) {
        return Err(format!(
            "{name:?} is not a user name (1 to 64 letters, digits, _ - .)"
        ));
    }
    if password.chars().count() < 8 {
        return Err("the password needs at least 8 characters".into());
    }
    let store = open(location)?;
    let user = User {
        name: name.into(),
        password_hash: hash_password(password)?,
        grants: Vec::new(),
    };
    match store.add_user(&user).map_err(|e| e.to_string())? {
        true => Ok(()),
        false => Err(format!("there is already a user {name:?}")),
    }
}

/// Makes an API token for `name`; the token is returned once, only its hash is kept.
pub fn create_token(location: &Location, name: &str) -> Result<String, String> {
    let store = open(location)?;
    let (token, hash) = new_token();
    match store.add_token(&hash, name).map_err(|e| e.to_string())? {
        true => Ok(token),
        false => Err(format!("there is no user {name:?}")),
    }
}

pub fn grant(location: &Location, name: &str, action: &str) -> Result<(), String> {
    if action.is_empty() || action.chars().any(char::is_whitespace) {
        return Err(format!("{action:?} is not an action name"));
    }
    let store = open(location)?;
    match store.grant(name, action).map_err(|e| e.to_string())? {
        true => Ok(()),
        false => Err(format!("there is no user {name:?}")),
    }
}
