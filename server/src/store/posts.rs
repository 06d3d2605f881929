//! Posts as content streams: each change is an op (an SX dict), and a post is the fold of
//! its ops. `create` starts a draft, `edit` changes fields, `publish` makes it public (the
//! first publication time is kept), `relate` and `unrelate` add and remove another post's
//! slug in `:related` (the store appends them to both posts in one transaction).

use sx_kernel::value::{kw_get as field, Dict, Key};
use sx_kernel::Value;

fn kw(name: &str) -> Key {
    Key(Value::kw(name))
}

fn text_field(op: &Dict, name: &str) -> Result<Option<Value>, String> {
    match field(op, name) {
        None => Ok(None),
        Some(v @ Value::Str(_)) => Ok(Some(v.clone())),
        Some(other) => Err(format!(
            ":{name} must be a string, not {}",
            other.type_name()
        )),
    }
}

/// `:publish-at`: a time in milliseconds, or nil (no schedule).
fn schedule_field(op: &Dict) -> Result<Option<Value>, String> {
    match field(op, "publish-at") {
        None => Ok(None),
        Some(v @ (Value::Int(_) | Value::Nil)) => Ok(Some(v.clone())),
        Some(_) => Err(":publish-at must be a time in milliseconds or nil".into()),
    }
}

/// The optional fields a create or an edit may set besides title and body.
fn set_optional(d: &mut Dict, op: &Dict) -> Result<(), String> {
    if let Some(tags) = tags_field(op)? {
        d.insert(kw("tags"), tags);
    }
    if let Some(category) = text_field(op, "category")? {
        d.insert(kw("category"), category);
    }
    match schedule_field(op)? {
        Some(Value::Nil) => {
            d.remove(&kw("publish-at"));
        }
        Some(at) => {
            d.insert(kw("publish-at"), at);
        }
        None => {}
    }
    Ok(())
}

fn tags_field(op: &Dict) -> Result<Option<Value>, String> {
    match field(op, "tags") {
        None => Ok(None),
        Some(Value::List(tags)) if tags.iter().all(|t| matches!(t, Value::Str(_))) => {
            Ok(Some(Value::List(tags.clone())))
        }
        Some(_) => Err(":tags must be a list of strings".into()),
    }
}

/// A URL slug from a title: lower-case ASCII letters and digits, other runs become one `-`,
/// at most 60 characters; `post` when nothing is left.
pub fn slugify(title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            if slug.len() >= 60 {
                break;
            }
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "post".into()
    } else {
        slug.into()
    }
}

/// How many ops the post has folded so far (the next op's sequence number).
pub fn op_count(post: &Value) -> i64 {
    match post {
        Value::Dict(d) => match field(d, "ops") {
            Some(Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

/// The time a post sorts by: its publication, else its creation.
pub fn sort_time(post: &Value) -> i64 {
    let Value::Dict(d) = post else { return 0 };
    match (field(d, "published-at"), field(d, "created-at")) {
        (Some(Value::Int(t)), _) | (None, Some(Value::Int(t))) => *t,
        _ => 0,
    }
}

/// A post's `:related` after a `relate` (`add`) or `unrelate` op: the other slugs in the
/// order they were related, each once.
fn relate(current: Option<&Value>, slug: &str, op: &Dict, add: bool) -> Result<Value, String> {
    let Some(Value::Str(other)) = field(op, "other") else {
        return Err("relate and unrelate need an :other slug".into());
    };
    if &**other == slug {
        return Err(format!("{slug} cannot be related to itself"));
    }
    let mut related: Vec<Value> = match current {
        Some(Value::List(l)) => l
            .iter()
            .filter(|s| *s != &Value::Str(other.clone()))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    if add {
        related.push(Value::Str(other.clone()));
    }
    Ok(Value::list(related))
}

/// Applies one op to a post (`None`: the stream is empty). Errors say what is wrong with
/// the op; the caller writes nothing then.
pub fn fold(post: Option<&Value>, slug: &str, op: &Value) -> Result<Value, String> {
    let Value::Dict(op) = op else {
        return Err("an op must be a dict".into());
    };
    let Some(Value::Str(kind)) = field(op, "op") else {
        return Err("an op needs :op".into());
    };
    let at = match field(op, "at") {
        Some(Value::Int(t)) => *t,
        _ => return Err("an op needs :at (milliseconds)".into()),
    };
    let mut next = match (post, &**kind) {
        (None, "create") => {
            let Some(title) = text_field(op, "title")? else {
                return Err("create needs a :title".into());
            };
            let mut d = Dict::new();
            d.insert(kw("slug"), Value::str(slug));
            d.insert(kw("title"), title);
            d.insert(
                kw("body"),
                text_field(op, "body")?.unwrap_or_else(|| Value::str("")),
            );
            d.insert(kw("tags"), Value::list(vec![]));
            set_optional(&mut d, op)?;
            d.insert(kw("status"), Value::str("draft"));
            d.insert(kw("created-at"), Value::Int(at));
            if let Some(author) = text_field(op, "author")? {
                d.insert(kw("author"), author);
            }
            d
        }
        (None, other) => return Err(format!("{slug} does not exist yet ({other} before create)")),
        (Some(_), "create") => return Err(format!("{slug} already exists")),
        (Some(Value::Dict(current)), "edit") => {
            let mut d = current.clone();
            for name in ["title", "body"] {
                if let Some(v) = text_field(op, name)? {
                    d.insert(kw(name), v);
                }
            }
            set_optional(&mut d, op)?;
            d
        }
        (Some(Value::Dict(current)), "publish") => {
            let mut d = current.clone();
            d.insert(kw("status"), Value::str("published"));
            d.remove(&kw("publish-at"));
            if field(&d, "published-at").is_none() {
                d.insert(kw("published-at"), Value::Int(at));
            }
            d
        }
        (Some(Value::Dict(current)), kind @ ("relate" | "unrelate")) => {
            let mut d = current.clone();
            let related = relate(field(current, "related"), slug, op, kind == "relate")?;
            d.insert(kw("related"), related);
            d
        }
        (Some(Value::Dict(_)), other) => return Err(format!("unknown op {other:?}")),
        (Some(_), _) => return Err(format!("the stored post {slug} is not a dict")),
    };
    next.insert(kw("updated-at"), Value::Int(at));
    let count = post.map_or(0, op_count);
    next.insert(kw("ops"), Value::Int(count + 1));
    Ok(Value::Dict(next))
}

fn op(fields: &[(&str, Value)]) -> Value {
    let mut d = Dict::new();
    for (k, v) in fields {
        d.insert(kw(k), v.clone());
    }
    Value::Dict(d)
}

/// The ops that create and publish an app's sample posts (`defsite` :samples: dicts with
/// `:slug :title :body` and optionally `:tags`), a minute apart, the last the newest.
/// Samples without a slug, title or body are skipped.
pub fn sample_ops(now: i64, samples: &[Value]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (i, sample) in samples.iter().enumerate() {
        let Value::Dict(d) = sample else { continue };
        let text = |name: &str| match sx_kernel::value::kw_get(d, name) {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => None,
        };
        let (Some(slug), Some(title), Some(body)) = (text("slug"), text("title"), text("body"))
        else {
            continue;
        };
        let tags = match sx_kernel::value::kw_get(d, "tags") {
            Some(tags @ Value::List(_)) => tags.clone(),
            _ => Value::list(Vec::new()),
        };
        let at = now - (samples.len() - i) as i64 * 60_000;
        out.push((
            slug.to_string(),
            op(&[
                ("op", Value::str("create")),
                ("title", Value::Str(title)),
                ("body", Value::Str(body)),
                ("tags", tags),
                ("at", Value::Int(at)),
            ]),
        ));
        out.push((
            slug.to_string(),
            op(&[("op", Value::str("publish")), ("at", Value::Int(at + 1))]),
        ));
    }
    out
}
