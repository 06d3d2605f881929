//! Reading Datalog from SX data: atoms `(rel term...)`, rule bodies (atoms, `(not atom)`,
//! comparisons), variables (`?name`) and wildcards (`_`). Everything a database refuses for
//! its shape is refused here, before the database changes.

use crate::error::dl_error;
use crate::value::{Symbol, Value};

use super::store::is_data;

/// A term as written: a variable (numbered in order of first appearance), `_`, or data.
#[derive(Clone, Debug)]
pub enum PTerm {
    Var(usize),
    Wild,
    Const(Value),
}

#[derive(Clone, Debug)]
pub struct PAtom {
    pub rel: Symbol,
    pub terms: Vec<PTerm>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn from_name(name: &str) -> Option<CmpOp> {
        Some(match name {
            "=" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            _ => return None,
        })
    }

    pub fn holds(self, order: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => order == Equal,
            CmpOp::Ne => order != Equal,
            CmpOp::Lt => order == Less,
            CmpOp::Le => order != Greater,
            CmpOp::Gt => order == Greater,
            CmpOp::Ge => order != Less,
        }
    }
}

#[derive(Clone, Debug)]
pub struct PCmp {
    pub op: CmpOp,
    pub a: PTerm,
    pub b: PTerm,
}

/// A rule as read and checked for safety (not yet for arities or stratification).
#[derive(Debug)]
pub struct PRule {
    pub head: PAtom,
    pub pos: Vec<PAtom>,
    pub neg: Vec<PAtom>,
    pub cmps: Vec<PCmp>,
    pub var_names: Vec<Symbol>,
}

/// Rule bodies longer than this are refused (evaluation nests one level per atom).
pub const MAX_BODY: usize = 256;

/// Variables of a pattern or rule, numbered in order of first appearance.
#[derive(Default)]
pub struct Vars {
    pub names: Vec<Symbol>,
}

impl Vars {
    fn slot(&mut self, name: Symbol) -> usize {
        match self.names.iter().position(|&n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name);
                self.names.len() - 1
            }
        }
    }
}

fn is_reserved(name: &str) -> bool {
    name == "not" || CmpOp::from_name(name).is_some()
}

fn term(v: &Value, vars: &mut Vars) -> Result<PTerm, Value> {
    if let Value::Symbol(s) = v {
        let name = s.name();
        if name == "_" {
            return Ok(PTerm::Wild);
        }
        if let Some(rest) = name.strip_prefix('?') {
            if rest.is_empty() {
                return Err(dl_error(
                    "a variable needs a name after `?`",
                    vec![v.clone()],
                ));
            }
            return Ok(PTerm::Var(vars.slot(*s)));
        }
    }
    if !is_data(v) {
        return Err(dl_error(
            format!("a term must be data, got {}", v.type_name()),
            vec![v.clone()],
        ));
    }
    Ok(PTerm::Const(v.clone()))
}

/// `(rel term...)`.
pub fn atom(v: &Value, vars: &mut Vars) -> Result<PAtom, Value> {
    let Value::List(items) = v else {
        return Err(dl_error(
            format!("expected an atom (rel term...), got {}", v.type_name()),
            vec![v.clone()],
        ));
    };
    let rel = match items.first() {
        Some(Value::Symbol(s))
            if !s.name().starts_with('?') && s.name() != "_" && !is_reserved(s.name()) =>
        {
            *s
        }
        _ => {
            return Err(dl_error(
                "an atom starts with a relation name (a symbol that is not a variable, `_`, `not` or a comparison)",
                vec![v.clone()],
            ))
        }
    };
    let terms = items
        .iter()
        .skip(1)
        .map(|t| term(t, vars))
        .collect::<Result<_, _>>()?;
    Ok(PAtom { rel, terms })
}

/// A ground fact: an atom without variables or wildcards.
pub fn fact(v: &Value) -> Result<PAtom, Value> {
    let mut vars = Vars::default();
    let a = atom(v, &mut vars)?;
    if a.terms.iter().any(|t| !matches!(t, PTerm::Const(_))) {
        return Err(dl_error(
            "a fact must be ground (no variables, no `_`)",
            vec![v.clone()],
        ));
    }
    Ok(a)
}

/// A query pattern: an atom and its variables in order of first appearance.
pub fn pattern(v: &Value) -> Result<(PAtom, Vec<Symbol>), Value> {
    let mut vars = Vars::default();
    let a = atom(v, &mut vars)?;
    Ok((a, vars.names))
}

/// `head body...`, checked for safety: every variable of the head, of a negation and of a
/// comparison must occur in a positive body atom; the head has no `_`; comparisons no `_`.
pub fn rule(head: &Value, body: &[Value]) -> Result<PRule, Value> {
    if body.len() > MAX_BODY {
        return Err(dl_error(
            format!("a rule body has at most {MAX_BODY} literals"),
            vec![],
        ));
    }
    let mut vars = Vars::default();
    let head_atom = atom(head, &mut vars)?;
    let (mut pos, mut neg, mut cmps) = (Vec::new(), Vec::new(), Vec::new());
    for lit in body {
        let Value::List(items) = lit else {
            return Err(dl_error(
                format!("expected a body literal, got {}", lit.type_name()),
                vec![lit.clone()],
            ));
        };
        let head_name = items.first().and_then(Value::as_symbol).map(Symbol::name);
        match head_name {
            Some("not") => {
                if items.len() != 2 {
                    return Err(dl_error(
                        "a negation is (not (rel term...))",
                        vec![lit.clone()],
                    ));
                }
                neg.push(atom(
                    &items.rest().first().cloned().unwrap_or(Value::Nil),
                    &mut vars,
                )?);
            }
            Some(name) if CmpOp::from_name(name).is_some() => {
                let (Some(op), 3) = (CmpOp::from_name(name), items.len()) else {
                    return Err(dl_error(
                        format!("a comparison is ({name} a b)"),
                        vec![lit.clone()],
                    ));
                };
                let mut args = items.iter().skip(1).map(|t| term(t, &mut vars));
                let (a, b) = match (args.next(), args.next()) {
                    (Some(a), Some(b)) => (a?, b?),
                    _ => return Err(dl_error("a comparison has two terms", vec![lit.clone()])),
                };
                if matches!(a, PTerm::Wild) || matches!(b, PTerm::Wild) {
                    return Err(dl_error("`_` cannot be compared", vec![lit.clone()]));
                }
                cmps.push(PCmp { op, a, b });
            }
            _ => pos.push(atom(lit, &mut vars)?),
        }
    }
    let mut bound = vec![false; vars.names.len()];
    for a in &pos {
        for t in &a.terms {
            if let PTerm::Var(v) = t {
                bound[*v] = true;
            }
        }
    }
    let unbound = |t: &PTerm| matches!(t, PTerm::Var(v) if !bound[*v]);
    let name_of = |t: &PTerm| match t {
        PTerm::Var(v) => Value::Symbol(vars.names[*v]),
        _ => Value::Nil,
    };
    if head_atom.terms.iter().any(|t| matches!(t, PTerm::Wild)) {
        return Err(dl_error("a rule head cannot hold `_`", vec![head.clone()]));
    }
    let checks = [
        ("head", head_atom.terms.iter().collect::<Vec<_>>()),
        ("negated", neg.iter().flat_map(|a| a.terms.iter()).collect()),
        ("compared", cmps.iter().flat_map(|c| [&c.a, &c.b]).collect()),
    ];
    for (what, terms) in checks {
        if let Some(t) = terms.into_iter().find(|t| unbound(t)) {
            let var = name_of(t);
            return Err(dl_error(
                format!(
                    "unsafe rule: {what} variable {} is not bound by a positive body atom",
                    crate::printer::repr(&var)
                ),
                vec![var, head.clone()],
            ));
        }
    }
    Ok(PRule {
        head: head_atom,
        pos,
        neg,
        cmps,
        var_names: vars.names,
    })
}
