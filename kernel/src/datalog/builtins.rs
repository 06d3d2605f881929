//! The `dl/` natives: a database as an opaque SX value (`#<dl-db N facts>`) and the
//! functions that change and query it. Each is a plain native; none calls back into SX.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

use super::Database;
use crate::error::{dl_error, type_error};
use crate::value::{NativeFn, Opaque, Value};

/// The value `(dl/db)` returns: a database behind a `RefCell` (natives never re-enter).
pub struct DbValue(RefCell<Database>);

impl Opaque for DbValue {
    fn type_name(&self) -> &'static str {
        "dl-db"
    }

    fn repr(&self) -> String {
        match self.0.try_borrow() {
            Ok(db) => format!("#<dl-db {} facts>", db.fact_count()),
            Err(_) => "#<dl-db>".into(),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `(name, min args, max args, function)` of every `dl/` native.
pub fn natives() -> Vec<(&'static str, usize, Option<usize>, NativeFn)> {
    vec![
        ("dl/db", 0, Some(0), db as NativeFn),
        ("dl/assert!", 2, Some(2), assert),
        ("dl/retract!", 2, Some(2), retract),
        ("dl/rule!", 2, None, rule),
        ("dl/query", 2, Some(2), query),
        ("dl/count", 2, Some(2), count),
    ]
}

fn db(_: &[Value]) -> Result<Value, Value> {
    Ok(Value::Opaque(Rc::new(DbValue(RefCell::new(
        Database::new(),
    )))))
}

/// Runs `f` on the database `v` holds.
fn with_db<T>(
    v: &Value,
    who: &str,
    f: impl FnOnce(&mut Database) -> Result<T, Value>,
) -> Result<T, Value> {
    let cell = match v {
        Value::Opaque(o) => o.as_any().downcast_ref::<DbValue>(),
        _ => None,
    };
    let Some(cell) = cell else {
        return Err(type_error(
            format!("{who} expects a dl-db, got {}", v.type_name()),
            vec![v.clone()],
        ));
    };
    let mut db = cell
        .0
        .try_borrow_mut()
        .map_err(|_| dl_error("the database is in use", vec![]))?;
    f(&mut db)
}

fn assert(a: &[Value]) -> Result<Value, Value> {
    with_db(&a[0], "dl/assert!", |db| db.assert_fact(&a[1]))?;
    Ok(a[0].clone())
}

fn retract(a: &[Value]) -> Result<Value, Value> {
    with_db(&a[0], "dl/retract!", |db| db.retract_fact(&a[1]))?;
    Ok(a[0].clone())
}

fn rule(a: &[Value]) -> Result<Value, Value> {
    with_db(&a[0], "dl/rule!", |db| db.add_rule(&a[1], &a[2..]))?;
    Ok(a[0].clone())
}

fn query(a: &[Value]) -> Result<Value, Value> {
    with_db(&a[0], "dl/query", |db| db.query(&a[1]))
}

fn count(a: &[Value]) -> Result<Value, Value> {
    let n = with_db(&a[0], "dl/count", |db| db.count(&a[1]))?;
    Ok(Value::Int(n as i64))
}
