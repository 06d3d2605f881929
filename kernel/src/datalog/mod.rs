//! Datalog (DESIGN.md §2, the `dl/` natives): a mutable database of ground facts and rules
//! over SX data, queried with patterns.
//!
//! Design (after Soufflé and ascent): terms are interned to integer ids so joins compare
//! integers (`store`); rules are compiled to join plans, one per positive body atom, whose
//! other atoms are read through hash indexes on their bound columns (`eval`); rules are
//! stratified by their negations and each stratum is evaluated semi-naively. Evaluation is
//! lazy and incremental: asserted facts are a delta that the next query propagates; a
//! retraction or a new rule marks its relation for a reset, which rebuilds that relation's
//! stratum (and the strata that read it) from the asserted facts. This module knows values,
//! never engines: the natives in `builtins` are plain functions.

pub mod builtins;
mod eval;
mod store;
mod syntax;

use std::collections::HashMap;

use crate::error::dl_error;
use crate::value::{Dict, Key, List, Symbol, Value};

use eval::{components, run_stratum, Atom, Cmp, IndexPool, Relation, Rule, Term};
use store::{Id, Index, Interner, MAX_ROWS};
use syntax::{PAtom, PTerm};

/// A Datalog database (see the module documentation).
#[derive(Default)]
pub struct Database {
    terms: Interner,
    rels: Vec<Relation>,
    rel_ids: HashMap<Symbol, usize>,
    rules: Vec<Rule>,
    indexes: Vec<Index>,
    index_ids: HashMap<(usize, Vec<usize>), usize>,
    /// Relations per stratum, in evaluation order, and the rules deriving each stratum.
    strata: Vec<Vec<usize>>,
    stratum_rules: Vec<Vec<usize>>,
    /// A relation was added since the strata were computed.
    strata_stale: bool,
    /// Facts or rules changed since the last evaluation.
    dirty: bool,
    facts: usize,
}

struct Pool<'a> {
    indexes: &'a mut Vec<Index>,
    ids: &'a mut HashMap<(usize, Vec<usize>), usize>,
}

impl IndexPool for Pool<'_> {
    fn index_for(&mut self, rel: usize, cols: Vec<usize>) -> usize {
        let indexes = &mut *self.indexes;
        *self.ids.entry((rel, cols.clone())).or_insert_with(|| {
            indexes.push(Index::new(rel, cols.into_boxed_slice()));
            indexes.len() - 1
        })
    }
}

/// What a pattern matched: the variables' ids, `nvars` per answer, in no order.
struct Matches {
    nvars: usize,
    ids: Vec<Id>,
    /// Rows matched (with no variables, `ids` stays empty).
    rows: usize,
    /// Answers may repeat (the pattern has a `_`).
    may_repeat: bool,
}

fn too_many() -> Value {
    dl_error(
        format!("a database holds at most {MAX_ROWS} terms and rows per relation"),
        vec![],
    )
}

impl Database {
    pub fn new() -> Database {
        Database::default()
    }

    /// The number of facts asserted (and not retracted).
    pub fn fact_count(&self) -> usize {
        self.facts
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The relation called `name`, checking its arity; `None` when there is none yet.
    fn known(&self, name: Symbol, arity: usize, form: &Value) -> Result<Option<usize>, Value> {
        match self.rel_ids.get(&name) {
            None => Ok(None),
            Some(&r) if self.rels[r].all.arity() == arity => Ok(Some(r)),
            Some(&r) => Err(dl_error(
                format!(
                    "relation {} has arity {}, used here with {arity}",
                    name.name(),
                    self.rels[r].all.arity()
                ),
                vec![Value::Symbol(name), form.clone()],
            )),
        }
    }

    fn add_relation(&mut self, name: Symbol, arity: usize) -> usize {
        self.rels.push(Relation::new(name, arity));
        self.rel_ids.insert(name, self.rels.len() - 1);
        self.strata_stale = true;
        self.rels.len() - 1
    }

    fn intern_all(&mut self, terms: &[PTerm]) -> Result<Vec<Id>, Value> {
        terms
            .iter()
            .map(|t| match t {
                PTerm::Const(v) => self.terms.intern(v).ok_or_else(too_many),
                _ => Err(dl_error("a fact must be ground", vec![])),
            })
            .collect()
    }

    /// `(dl/assert! db fact)`.
    pub fn assert_fact(&mut self, fact: &Value) -> Result<(), Value> {
        let a = syntax::fact(fact)?;
        let arity = a.terms.len();
        let known = self.known(a.rel, arity, fact)?;
        let ids = self.intern_all(&a.terms)?;
        let r = match known {
            Some(r) => r,
            None => self.add_relation(a.rel, arity),
        };
        let rel = &mut self.rels[r];
        if rel.base.contains(&ids) {
            return Ok(());
        }
        if rel.base.len() >= MAX_ROWS || rel.all.len() >= MAX_ROWS {
            return Err(too_many());
        }
        rel.base.insert(&ids);
        rel.all.insert(&ids);
        self.facts += 1;
        self.dirty = true;
        Ok(())
    }

    /// `(dl/retract! db fact)`: removes an asserted fact (a no-op when it was not asserted).
    pub fn retract_fact(&mut self, fact: &Value) -> Result<(), Value> {
        let a = syntax::fact(fact)?;
        let Some(r) = self.known(a.rel, a.terms.len(), fact)? else {
            return Ok(());
        };
        let mut ids = Vec::with_capacity(a.terms.len());
        for t in &a.terms {
            match t {
                PTerm::Const(v) => match self.terms.lookup(v) {
                    Some(id) => ids.push(id),
                    None => return Ok(()),
                },
                _ => return Ok(()),
            }
        }
        let rel = &mut self.rels[r];
        if !rel.base.contains(&ids) {
            return Ok(());
        }
        rel.base = rel.base.without(&ids);
        rel.needs_reset = true;
        self.facts -= 1;
        self.dirty = true;
        Ok(())
    }

    /// `(dl/rule! db head body...)`. Refused (the database unchanged) when unsafe, when a
    /// relation's arity disagrees, or when it would make negation recursive.
    pub fn add_rule(&mut self, head: &Value, body: &[Value]) -> Result<(), Value> {
        let rule = syntax::rule(head, body)?;
        // Relation ids, numbering relations this rule introduces after the existing ones.
        let mut new_rels: Vec<(Symbol, usize)> = Vec::new();
        let mut id_of = |db: &Database, a: &PAtom| -> Result<usize, Value> {
            let arity = a.terms.len();
            if let Some(r) = db.known(a.rel, arity, head)? {
                return Ok(r);
            }
            match new_rels.iter().position(|&(name, _)| name == a.rel) {
                Some(i) if new_rels[i].1 == arity => Ok(db.rels.len() + i),
                Some(i) => Err(dl_error(
                    format!(
                        "relation {} is used with arities {} and {arity}",
                        a.rel.name(),
                        new_rels[i].1
                    ),
                    vec![Value::Symbol(a.rel), head.clone()],
                )),
                None => {
                    new_rels.push((a.rel, arity));
                    Ok(db.rels.len() + new_rels.len() - 1)
                }
            }
        };
        let head_rel = id_of(self, &rule.head)?;
        let pos_rels = rule
            .pos
            .iter()
            .map(|a| id_of(self, a))
            .collect::<Result<Vec<_>, _>>()?;
        let neg_rels = rule
            .neg
            .iter()
            .map(|a| id_of(self, a))
            .collect::<Result<Vec<_>, _>>()?;

        // Stratification with the new rule: no negation inside a recursive component.
        let total = self.rels.len() + new_rels.len();
        let mut deps = self.dependencies(total);
        deps[head_rel].extend(pos_rels.iter().chain(&neg_rels));
        let comp = components(&deps);
        let negations = self
            .rules
            .iter()
            .flat_map(|r| r.neg.iter().map(move |a| (r.head.rel, a.rel)))
            .chain(neg_rels.iter().map(|&b| (head_rel, b)));
        for (h, b) in negations {
            if comp[h] == comp[b] {
                let name = |r: usize| {
                    Value::Symbol(match self.rels.get(r) {
                        Some(rel) => rel.name,
                        None => new_rels[r - self.rels.len()].0,
                    })
                };
                return Err(dl_error(
                    format!(
                        "not stratifiable: {} depends on the negation of {} through recursion",
                        crate::printer::repr(&name(h)),
                        crate::printer::repr(&name(b))
                    ),
                    vec![name(h), name(b), head.clone()],
                ));
            }
        }

        // Accepted: intern the constants, then change the database.
        let mut consts = Vec::new();
        let all_terms = std::iter::once(&rule.head)
            .chain(&rule.pos)
            .chain(&rule.neg)
            .flat_map(|a| a.terms.iter())
            .chain(rule.cmps.iter().flat_map(|c| [&c.a, &c.b]));
        for t in all_terms {
            if let PTerm::Const(v) = t {
                consts.push(self.terms.intern(v).ok_or_else(too_many)?);
            }
        }
        for (name, arity) in new_rels {
            self.add_relation(name, arity);
        }
        let mut consts = consts.into_iter();
        let mut term = |t: &PTerm| match t {
            PTerm::Var(v) => Term::Var(*v),
            PTerm::Wild => Term::Wild,
            PTerm::Const(_) => Term::Const(consts.next().unwrap_or(0)),
        };
        let mut atom = |a: &PAtom, rel: usize| Atom {
            rel,
            terms: a.terms.iter().map(&mut term).collect(),
        };
        let head_atom = atom(&rule.head, head_rel);
        let pos = rule
            .pos
            .iter()
            .zip(pos_rels)
            .map(|(a, r)| atom(a, r))
            .collect();
        let neg = rule
            .neg
            .iter()
            .zip(neg_rels)
            .map(|(a, r)| atom(a, r))
            .collect();
        let cmps = rule
            .cmps
            .iter()
            .map(|c| Cmp {
                op: c.op,
                a: term(&c.a),
                b: term(&c.b),
            })
            .collect();
        let mut pool = Pool {
            indexes: &mut self.indexes,
            ids: &mut self.index_ids,
        };
        let compiled = Rule::new(head_atom, pos, neg, cmps, rule.var_names.len(), &mut pool);
        self.rules.push(compiled);
        self.rels[head_rel].needs_reset = true;
        self.dirty = true;
        self.set_strata(&comp);
        Ok(())
    }

    /// `deps[r]`: the relations the rules deriving `r` read.
    fn dependencies(&self, total: usize) -> Vec<Vec<usize>> {
        let mut deps = vec![Vec::new(); total];
        for rule in &self.rules {
            let body = rule.pos.iter().chain(&rule.neg).map(|a| a.rel);
            deps[rule.head.rel].extend(body);
        }
        deps
    }

    fn set_strata(&mut self, comp: &[usize]) {
        let count = comp.iter().map(|&c| c + 1).max().unwrap_or(0);
        self.strata = vec![Vec::new(); count];
        self.stratum_rules = vec![Vec::new(); count];
        for (r, &c) in comp.iter().enumerate() {
            self.strata[c].push(r);
        }
        for (i, rule) in self.rules.iter().enumerate() {
            self.stratum_rules[comp[rule.head.rel]].push(i);
        }
        self.strata_stale = false;
    }

    /// Brings every relation up to date with the facts and rules.
    fn evaluate(&mut self) -> Result<(), Value> {
        if self.strata_stale {
            let comp = components(&self.dependencies(self.rels.len()));
            self.set_strata(&comp);
        }
        if !self.dirty {
            return Ok(());
        }
        let mut was_reset = vec![false; self.rels.len()];
        for s in 0..self.strata.len() {
            let members = &self.strata[s];
            let rule_ids = &self.stratum_rules[s];
            let rels = &mut self.rels;
            let reset = members.iter().any(|&r| rels[r].needs_reset)
                || rule_ids.iter().any(|&i| {
                    let rule = &self.rules[i];
                    rule.pos.iter().any(|a| was_reset[a.rel])
                        || rule
                            .neg
                            .iter()
                            .any(|a| was_reset[a.rel] || rels[a.rel].all.len() > rels[a.rel].mark)
                });
            if reset {
                for &r in members {
                    let rel = &mut rels[r];
                    rel.all = rel.base.clone();
                    rel.mark = 0;
                    rel.needs_reset = false;
                    was_reset[r] = true;
                }
                for index in self.indexes.iter_mut() {
                    if members.contains(&index.rel) {
                        index.clear();
                    }
                }
            }
            if !rule_ids.is_empty() {
                let rules: Vec<&Rule> = rule_ids.iter().map(|&i| &self.rules[i]).collect();
                run_stratum(rels, &mut self.indexes, &self.terms, &rules, members, reset);
            }
        }
        let overflow = self.rels.iter().any(|r| r.all.overflow);
        for rel in &mut self.rels {
            rel.mark = rel.all.len();
            if overflow {
                rel.needs_reset = true;
            }
        }
        if overflow {
            return Err(too_many());
        }
        self.dirty = false;
        Ok(())
    }

    /// Evaluates, then matches `pattern` against its relation.
    /// `project`: collect the variables' ids (else only count the rows that match, which is
    /// all a count needs when answers cannot repeat).
    fn matches(&mut self, pattern: &Value, project: bool) -> Result<(Vec<Symbol>, Matches), Value> {
        let (a, names) = syntax::pattern(pattern)?;
        let nvars = names.len();
        let none = |names| {
            let m = Matches {
                nvars,
                ids: Vec::new(),
                rows: 0,
                may_repeat: false,
            };
            Ok((names, m))
        };
        let arity = a.terms.len();
        let Some(r) = self.known(a.rel, arity, pattern)? else {
            return none(names);
        };
        self.evaluate()?;
        let mut consts = Vec::new(); // (column, id)
        let mut first: Vec<Option<usize>> = vec![None; nvars]; // a variable's first column
        let mut same = Vec::new(); // (column, earlier column)
        let mut may_repeat = false;
        for (c, t) in a.terms.iter().enumerate() {
            match t {
                PTerm::Const(v) => match self.terms.lookup(v) {
                    Some(id) => consts.push((c, id)),
                    None => return none(names),
                },
                PTerm::Var(v) => match first[*v] {
                    Some(c0) => same.push((c, c0)),
                    None => first[*v] = Some(c),
                },
                PTerm::Wild => may_repeat = true,
            }
        }
        let project = project || may_repeat;
        let proj: Vec<usize> = first.iter().map(|c| c.unwrap_or(0)).collect();
        let rows = &self.rels[r].all;
        let mut ids = Vec::new();
        let mut matched = 0;
        if consts.len() == arity {
            let key: Vec<Id> = consts.iter().map(|&(_, id)| id).collect();
            matched = usize::from(rows.contains(&key));
        } else if consts.is_empty() && same.is_empty() && !project {
            matched = rows.len();
        } else if consts.is_empty() {
            let mut take = |row: usize| {
                if same
                    .iter()
                    .all(|&(c, c0)| rows.at(row, c) == rows.at(row, c0))
                {
                    if project {
                        ids.extend(proj.iter().map(|&c| rows.at(row, c)));
                    }
                    matched += 1;
                }
            };
            for row in 0..rows.len() {
                take(row);
            }
        } else {
            let cols: Vec<usize> = consts.iter().map(|&(c, _)| c).collect();
            let key: Vec<Id> = consts.iter().map(|&(_, id)| id).collect();
            let mut pool = Pool {
                indexes: &mut self.indexes,
                ids: &mut self.index_ids,
            };
            let ix = pool.index_for(r, cols);
            let index = &mut self.indexes[ix];
            index.catch_up(&self.rels[r].all);
            let rows = &self.rels[r].all;
            for &row in index.get(&key) {
                let row = row as usize;
                if same
                    .iter()
                    .all(|&(c, c0)| rows.at(row, c) == rows.at(row, c0))
                {
                    if project {
                        ids.extend(proj.iter().map(|&c| rows.at(row, c)));
                    }
                    matched += 1;
                }
            }
        }
        let m = Matches {
            nvars,
            ids,
            rows: matched,
            may_repeat,
        };
        Ok((names, m))
    }

    /// `(dl/query db pattern)`: the distinct answers as dicts from the variables (keywords
    /// without the `?`) to values, sorted by the variables' values in order of appearance.
    pub fn query(&mut self, pattern: &Value) -> Result<Value, Value> {
        let (names, m) = self.matches(pattern, true)?;
        let keys: Vec<Key> = names
            .iter()
            .map(|n| Key(Value::kw(n.name().get(1..).unwrap_or(""))))
            .collect();
        let answers: Vec<&[Id]> = if m.nvars == 0 {
            if m.rows == 0 {
                Vec::new()
            } else {
                vec![&[]]
            }
        } else {
            let terms = &self.terms;
            let mut answers: Vec<&[Id]> = m.ids.chunks(m.nvars).collect();
            answers.sort_by(|x, y| {
                x.iter()
                    .zip(y.iter())
                    .map(|(&a, &b)| crate::value::compare(terms.value(a), terms.value(b)))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            answers.dedup();
            answers
        };
        let list: List = answers
            .iter()
            .map(|ids| {
                let mut d = Dict::new();
                for (k, &id) in keys.iter().zip(ids.iter()) {
                    d.insert(k.clone(), self.terms.value(id).clone());
                }
                Value::Dict(d)
            })
            .collect();
        Ok(Value::List(list))
    }

    /// `(dl/count db pattern)`: the number of distinct answers.
    pub fn count(&mut self, pattern: &Value) -> Result<usize, Value> {
        let (_, m) = self.matches(pattern, false)?;
        if m.nvars == 0 {
            return Ok(usize::from(m.rows > 0));
        }
        if !m.may_repeat {
            return Ok(m.rows);
        }
        let mut answers: Vec<&[Id]> = m.ids.chunks(m.nvars).collect();
        answers.sort_unstable();
        answers.dedup();
        Ok(answers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::read_one;

    fn read(s: &str) -> Value {
        read_one(s).expect("datum")
    }

    fn rule(db: &mut Database, head: &str, body: &[&str]) -> Result<(), Value> {
        let body: Vec<Value> = body.iter().map(|b| read(b)).collect();
        db.add_rule(&read(head), &body)
    }

    #[test]
    fn components_come_after_what_they_depend_on() {
        // 0 <- 1 <- 2 <- 1 (a cycle), 3 alone, 4 <- 0
        let deps = vec![vec![1], vec![2], vec![1], vec![], vec![0]];
        let comp = components(&deps);
        assert_eq!(comp[1], comp[2]);
        assert!(comp[1] < comp[0] && comp[0] < comp[4]);
        assert_ne!(comp[3], comp[0]);
    }

    /// The rules the randomized test uses: closure, negation over it, comparisons.
    const RULES: [(&str, &[&str]); 5] = [
        ("(path ?a ?b)", &["(edge ?a ?b)"]),
        ("(path ?a ?c)", &["(path ?a ?b)", "(edge ?b ?c)"]),
        ("(node ?a)", &["(edge ?a _)"]),
        (
            "(unreached ?a ?b)",
            &["(node ?a)", "(node ?b)", "(not (path ?a ?b))"],
        ),
        (
            "(down ?a ?b)",
            &["(path ?a ?b)", "(> ?a ?b)", "(not (edge ?b _))"],
        ),
    ];
    const QUERIES: [&str; 5] = [
        "(path ?a ?b)",
        "(node ?a)",
        "(unreached ?a ?b)",
        "(down ?a ?b)",
        "(path ?a ?a)",
    ];

    /// Incremental evaluation after any sequence of assertions, retractions and rules gives
    /// what evaluating the final facts and rules from scratch gives; the closure is right.
    #[test]
    fn incremental_evaluation_matches_evaluation_from_scratch() {
        let mut seed: u64 = 7;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for _round in 0..30 {
            let mut db = Database::new();
            let mut facts: Vec<(u64, u64)> = Vec::new();
            let mut rules_added = 0;
            for _op in 0..25 {
                match next(6) {
                    0..=2 => {
                        let e = (next(8), next(8));
                        db.assert_fact(&read(&format!("(edge {} {})", e.0, e.1)))
                            .unwrap();
                        if !facts.contains(&e) {
                            facts.push(e);
                        }
                    }
                    3 if !facts.is_empty() => {
                        let e = facts.remove(next(facts.len() as u64) as usize);
                        db.retract_fact(&read(&format!("(edge {} {})", e.0, e.1)))
                            .unwrap();
                    }
                    _ if rules_added < RULES.len() => {
                        let (h, b) = RULES[rules_added];
                        rule(&mut db, h, b).unwrap();
                        rules_added += 1;
                    }
                    _ => {}
                }
                if next(2) == 0 {
                    continue; // query only now and then: deltas pile up in between
                }
                let mut fresh = Database::new();
                for &(a, b) in &facts {
                    fresh
                        .assert_fact(&read(&format!("(edge {a} {b})")))
                        .unwrap();
                }
                for &(h, b) in &RULES[..rules_added] {
                    rule(&mut fresh, h, b).unwrap();
                }
                for q in QUERIES {
                    let (got, want) = (db.query(&read(q)), fresh.query(&read(q)));
                    assert_eq!(got, want, "{q} after {facts:?}, {rules_added} rules");
                }
                if rules_added >= 2 {
                    // The closure, computed naively.
                    let mut closure = facts.clone();
                    loop {
                        let mut more = Vec::new();
                        for &(a, b) in &closure {
                            for &(c, d) in &facts {
                                if b == c && !closure.contains(&(a, d)) && !more.contains(&(a, d)) {
                                    more.push((a, d));
                                }
                            }
                        }
                        if more.is_empty() {
                            break;
                        }
                        closure.extend(more);
                    }
                    assert_eq!(db.count(&read("(path ?a ?b)")).unwrap(), closure.len());
                }
            }
        }
    }

    /// Random, mostly malformed input: every call answers (a value or an error), none panics,
    /// and after each call the database still evaluates.
    #[test]
    fn random_input_never_panics() {
        let mut seed: u64 = 11;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        const ATOMS: [&str; 16] = [
            "edge", "p", "q", "not", "=", "!=", "<", ">=", "?x", "?y", "?z", "_", "?", "1",
            "\"s\"", "nil",
        ];
        fn datum(next: &mut impl FnMut(u64) -> u64, depth: u32) -> String {
            if depth == 0 || next(3) == 0 {
                return ATOMS[next(ATOMS.len() as u64) as usize].to_string();
            }
            let n = next(5);
            let items: Vec<String> = (0..n).map(|_| datum(next, depth - 1)).collect();
            format!("({})", items.join(" "))
        }
        // Half the time a well-formed atom, so that rules and facts also get accepted.
        fn literal(next: &mut impl FnMut(u64) -> u64, ground: bool) -> String {
            if next(4) == 0 {
                return datum(next, 3);
            }
            const TERMS: [&str; 7] = ["1", "2", "\"s\"", "?x", "?y", "?z", "_"];
            let choices = if ground { 3 } else { 7 };
            let (rel, arity) = [("edge", 2), ("p", 1), ("q", 2)][next(3) as usize];
            let arity = if next(10) == 0 { next(3) } else { arity };
            let terms: Vec<&str> = (0..arity).map(|_| TERMS[next(choices) as usize]).collect();
            let atom = format!("({rel} {})", terms.join(" "));
            match next(6) {
                0 => format!("(not {atom})"),
                1 => format!(
                    "(< {} {})",
                    TERMS[next(7) as usize],
                    TERMS[next(7) as usize]
                ),
                _ => atom,
            }
        }
        let mut answered = 0;
        for _ in 0..2000 {
            let mut db = Database::new();
            for _ in 0..12 {
                let op = next(5);
                let v = read(&literal(&mut next, op < 2));
                let body: Vec<Value> = (0..next(4))
                    .map(|_| read(&literal(&mut next, false)))
                    .collect();
                let outcome = match op {
                    0 => db.assert_fact(&v).map(|_| Value::Nil),
                    1 => db.retract_fact(&v).map(|_| Value::Nil),
                    2 => db.add_rule(&v, &body).map(|_| Value::Nil),
                    3 => db.query(&v),
                    _ => db.count(&v).map(|n| Value::Int(n as i64)),
                };
                if matches!(outcome, Ok(Value::List(l)) if !l.is_empty()) {
                    answered += 1;
                }
                assert!(db.evaluate().is_ok());
            }
        }
        assert!(answered > 100, "only {answered} queries had answers");
    }

    #[test]
    fn refused_calls_leave_the_database_as_it_was() {
        let mut db = Database::new();
        db.assert_fact(&read("(edge 1 2)")).unwrap();
        rule(&mut db, "(path ?a ?b)", &["(edge ?a ?b)"]).unwrap();
        let before = db.query(&read("(path ?a ?b)")).unwrap();
        for (h, b) in [
            (
                "(path ?a ?c)",
                &["(path ?a ?b)", "(edge ?b ?c)", "(not (path ?c ?a))"][..],
            ),
            ("(fresh ?a)", &["(edge ?a _)", "(fresh ?a 1)"]),
            ("(fresh ?a ?z)", &["(edge ?a _)"]),
        ] {
            assert!(rule(&mut db, h, b).is_err());
        }
        assert!(db.assert_fact(&read("(edge ?x 2)")).is_err());
        assert_eq!(db.rule_count(), 1);
        assert_eq!(db.fact_count(), 1);
        assert!(!db.rel_ids.contains_key(&Symbol::new("fresh")));
        assert_eq!(db.query(&read("(path ?a ?b)")).unwrap(), before);
    }
}
