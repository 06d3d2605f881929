//! Evaluation: rules compiled to join plans (one per positive body atom, which reads the
//! delta), stratification, and semi-naive evaluation of a stratum to its fixpoint.
//!
//! A relation's rows are append-only between resets, so versions are row ranges: for a
//! relation `r` during a round, `0..lo[r]` is old, `lo[r]..hi[r]` the delta, `0..hi[r]`
//! everything known when the round started; rows derived in the round land after `hi[r]`.

use super::store::{Id, Index, Interner, Rows};
use super::syntax::CmpOp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Term {
    Var(usize),
    Const(Id),
    Wild,
}

#[derive(Debug)]
pub struct Atom {
    pub rel: usize,
    pub terms: Vec<Term>,
}

#[derive(Debug)]
pub struct Cmp {
    pub op: CmpOp,
    pub a: Term,
    pub b: Term,
}

/// A relation: its rows, the rows asserted as facts (a relation may have both facts and
/// rules), and how far evaluation has propagated its rows.
pub struct Relation {
    pub name: crate::value::Symbol,
    pub all: Rows,
    pub base: Rows,
    /// Rows `0..mark` of `all` have been propagated through every rule.
    pub mark: usize,
    /// Its derived rows may be stale (a fact was retracted, a rule added): rebuild it from
    /// `base` and re-derive its stratum at the next evaluation.
    pub needs_reset: bool,
}

impl Relation {
    pub fn new(name: crate::value::Symbol, arity: usize) -> Relation {
        Relation {
            name,
            all: Rows::new(arity),
            base: Rows::new(arity),
            mark: 0,
            needs_reset: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Range {
    Delta,
    Old,
    All,
}

#[derive(Debug)]
enum Access {
    /// Every row of the range.
    Scan,
    /// The rows whose bound columns hold `key`.
    Index { index: usize, key: Vec<Term> },
    /// Every column is bound: a membership test.
    Contains { tuple: Vec<Term> },
}

#[derive(Debug)]
enum Filter {
    Cmp(usize),
    /// Fails when the relation has a row matching the bound terms.
    NotContains {
        rel: usize,
        tuple: Vec<Term>,
    },
    NotIndexed {
        index: usize,
        key: Vec<Term>,
    },
    NotEmpty {
        rel: usize,
    },
}

#[derive(Debug)]
struct Step {
    rel: usize,
    range: Range,
    access: Access,
    /// Columns that must hold these ids (a scan with constants).
    consts: Vec<(usize, Id)>,
    /// Column pairs that must be equal (a variable repeated in the atom).
    same: Vec<(usize, usize)>,
    /// Columns that bind variables.
    binds: Vec<(usize, usize)>,
    filters: Vec<Filter>,
    /// No `consts` and no `same`: a row only binds.
    checks_nothing: bool,
}

#[derive(Debug, Default)]
struct Plan {
    /// Filters without variables.
    pre: Vec<Filter>,
    steps: Vec<Step>,
    /// The indexes the plan reads (brought up to date before it runs).
    indexes: Vec<usize>,
}

/// A compiled rule.
pub struct Rule {
    pub head: Atom,
    pub pos: Vec<Atom>,
    pub neg: Vec<Atom>,
    pub cmps: Vec<Cmp>,
    pub nvars: usize,
    /// `plans[d]` reads the delta of `pos[d]`; a rule without positive atoms has one plan.
    plans: Vec<Plan>,
    /// The head is two variables (the commonest head: a fast path).
    head_vars: Option<[usize; 2]>,
}

/// Finds or creates the index of `rel` on `cols`.
pub trait IndexPool {
    fn index_for(&mut self, rel: usize, cols: Vec<usize>) -> usize;
}

impl Rule {
    pub fn new(
        head: Atom,
        pos: Vec<Atom>,
        neg: Vec<Atom>,
        cmps: Vec<Cmp>,
        nvars: usize,
        pool: &mut impl IndexPool,
    ) -> Rule {
        let mut rule = Rule {
            head,
            pos,
            neg,
            cmps,
            nvars,
            plans: Vec::new(),
            head_vars: None,
        };
        if let [Term::Var(a), Term::Var(b)] = rule.head.terms[..] {
            rule.head_vars = Some([a, b]);
        }
        if rule.pos.is_empty() {
            let plan = rule.plan(None, pool);
            rule.plans.push(plan);
        }
        for d in 0..rule.pos.len() {
            let plan = rule.plan(Some(d), pool);
            rule.plans.push(plan);
        }
        rule
    }

    fn plan(&self, delta: Option<usize>, pool: &mut impl IndexPool) -> Plan {
        let mut used = Vec::new();
        let mut bound = vec![false; self.nvars];
        let mut order: Vec<usize> = delta.into_iter().collect();
        order.extend((0..self.pos.len()).filter(|&j| Some(j) != delta));
        // Filters wait until every variable they read is bound.
        let mut pending: Vec<(Vec<usize>, Filter)> = Vec::new();
        for (i, c) in self.cmps.iter().enumerate() {
            let vars = [c.a, c.b]
                .iter()
                .filter_map(|t| match t {
                    Term::Var(v) => Some(*v),
                    _ => None,
                })
                .collect();
            pending.push((vars, Filter::Cmp(i)));
        }
        for a in &self.neg {
            let vars = a
                .terms
                .iter()
                .filter_map(|t| match t {
                    Term::Var(v) => Some(*v),
                    _ => None,
                })
                .collect();
            let bound_cols: Vec<usize> = (0..a.terms.len())
                .filter(|&c| a.terms[c] != Term::Wild)
                .collect();
            let filter = if bound_cols.len() == a.terms.len() {
                Filter::NotContains {
                    rel: a.rel,
                    tuple: a.terms.clone(),
                }
            } else if bound_cols.is_empty() {
                Filter::NotEmpty { rel: a.rel }
            } else {
                let key = bound_cols.iter().map(|&c| a.terms[c]).collect();
                let index = pool.index_for(a.rel, bound_cols);
                used.push(index);
                Filter::NotIndexed { index, key }
            };
            pending.push((vars, filter));
        }
        let mut take_ready = |bound: &[bool]| {
            let mut ready = Vec::new();
            let mut i = 0;
            while i < pending.len() {
                if pending[i].0.iter().all(|&v| bound[v]) {
                    ready.push(pending.remove(i).1);
                } else {
                    i += 1;
                }
            }
            ready
        };
        let mut plan = Plan {
            pre: take_ready(&bound),
            steps: Vec::new(),
            indexes: Vec::new(),
        };
        for (k, &j) in order.iter().enumerate() {
            let atom = &self.pos[j];
            let range = match delta {
                Some(_) if k == 0 => Range::Delta,
                Some(d) if j < d => Range::Old,
                _ => Range::All,
            };
            let mut step = Step {
                rel: atom.rel,
                range,
                access: Access::Scan,
                consts: Vec::new(),
                same: Vec::new(),
                binds: Vec::new(),
                filters: Vec::new(),
                checks_nothing: false,
            };
            let mut key_cols = Vec::new();
            let mut first_col: Vec<(usize, usize)> = Vec::new(); // (var, column) bound here
            for (c, t) in atom.terms.iter().enumerate() {
                match *t {
                    Term::Wild => {}
                    Term::Const(id) => {
                        key_cols.push(c);
                        step.consts.push((c, id));
                    }
                    Term::Var(v) if bound[v] => key_cols.push(c),
                    Term::Var(v) => match first_col.iter().find(|(w, _)| *w == v) {
                        Some(&(_, c0)) => step.same.push((c, c0)),
                        None => {
                            first_col.push((v, c));
                            step.binds.push((c, v));
                        }
                    },
                }
            }
            // The delta is scanned (it is what changes); other atoms use an index on their
            // bound columns, or a membership test when every column is bound.
            if range != Range::Delta && !key_cols.is_empty() {
                step.consts.clear();
                if key_cols.len() == atom.terms.len() {
                    step.access = Access::Contains {
                        tuple: atom.terms.clone(),
                    };
                } else {
                    let key = key_cols.iter().map(|&c| atom.terms[c]).collect();
                    let index = pool.index_for(atom.rel, key_cols);
                    used.push(index);
                    step.access = Access::Index { index, key };
                }
            }
            // A scan has no bound variables: the delta comes first, and any other atom
            // with a bound column is read through an index.
            for &(v, _) in &first_col {
                bound[v] = true;
            }
            step.filters = take_ready(&bound);
            step.checks_nothing = step.consts.is_empty() && step.same.is_empty();
            plan.steps.push(step);
        }
        used.sort_unstable();
        used.dedup();
        plan.indexes = used;
        plan
    }
}

// ---- stratification ----

/// Strongly connected components of the dependency graph (`deps[r]`: the relations `r` is
/// derived from), numbered so that a component comes after every component it depends on
/// (Tarjan's algorithm, iterative).
pub fn components(deps: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    const NONE: usize = usize::MAX;
    let (mut index, mut low) = (vec![NONE; n], vec![0; n]);
    let (mut on_stack, mut comp) = (vec![false; n], vec![NONE; n]);
    let (mut stack, mut calls) = (Vec::new(), Vec::<(usize, usize)>::new());
    let (mut next, mut ncomp) = (0, 0);
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, 0));
        while let Some(&mut (v, ref mut edge)) = calls.last_mut() {
            if let Some(&w) = deps[v].get(*edge) {
                *edge += 1;
                if index[w] == NONE {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                calls.pop();
                if let Some(&(u, _)) = calls.last() {
                    low[u] = low[u].min(low[v]);
                }
                if low[v] == index[v] {
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp[w] = ncomp;
                        if w == v {
                            break;
                        }
                    }
                    ncomp += 1;
                }
            }
        }
    }
    comp
}

// ---- semi-naive evaluation ----

/// Runs the rules of one stratum to their fixpoint. `reset`: the stratum's relations were
/// just rebuilt from their facts, so every row of every relation counts as new; otherwise
/// only rows past each relation's `mark`. Stops early when a relation overflows.
pub fn run_stratum(
    rels: &mut [Relation],
    indexes: &mut [Index],
    terms: &Interner,
    rules: &[&Rule],
    members: &[usize],
    reset: bool,
) {
    let n = rels.len();
    let mut lo: Vec<usize> = rels
        .iter()
        .map(|r| if reset { 0 } else { r.mark })
        .collect();
    let mut hi: Vec<usize> = rels.iter().map(|r| r.all.len()).collect();
    let mut member = vec![false; n];
    for &r in members {
        member[r] = true;
    }
    let mut first = true;
    loop {
        for rule in rules {
            for plan in &rule.plans {
                let runs = match plan.steps.first() {
                    None => first && reset,
                    // Something new to read, and nothing to read from an empty "old".
                    Some(step) => {
                        lo[step.rel] < hi[step.rel]
                            && !plan
                                .steps
                                .iter()
                                .any(|s| s.range == Range::Old && lo[s.rel] == 0)
                    }
                };
                if !runs {
                    continue;
                }
                for &ix in &plan.indexes {
                    let rel = indexes[ix].rel;
                    indexes[ix].catch_up(&rels[rel].all);
                }
                let mut join = Join {
                    rels: &mut *rels,
                    indexes: &*indexes,
                    terms,
                    lo: &lo,
                    hi: &hi,
                    env: vec![0; rule.nvars],
                    tuple: Vec::with_capacity(rule.head.terms.len()),
                    key: Vec::new(),
                };
                join.run(rule, plan);
            }
        }
        first = false;
        let mut more = false;
        for r in 0..n {
            lo[r] = hi[r];
            if member[r] {
                hi[r] = rels[r].all.len();
                more |= lo[r] < hi[r];
            }
        }
        if !more || rels.iter().any(|r| r.all.overflow) {
            break;
        }
    }
}

struct Join<'a> {
    rels: &'a mut [Relation],
    indexes: &'a [Index],
    terms: &'a Interner,
    lo: &'a [usize],
    hi: &'a [usize],
    env: Vec<Id>,
    tuple: Vec<Id>,
    key: Vec<Id>,
}

#[inline]
fn resolve(env: &[Id], t: Term) -> Id {
    match t {
        Term::Var(v) => env[v],
        Term::Const(id) => id,
        Term::Wild => Id::MAX,
    }
}

impl Join<'_> {
    fn run(&mut self, rule: &Rule, plan: &Plan) {
        if plan.pre.iter().all(|f| self.passes(rule, f)) {
            self.step(rule, plan, 0);
        }
    }

    fn passes(&mut self, rule: &Rule, f: &Filter) -> bool {
        match f {
            Filter::Cmp(i) => {
                let c = &rule.cmps[*i];
                let (a, b) = (resolve(&self.env, c.a), resolve(&self.env, c.b));
                match c.op {
                    CmpOp::Eq => a == b,
                    CmpOp::Ne => a != b,
                    op => op.holds(crate::value::compare(
                        self.terms.value(a),
                        self.terms.value(b),
                    )),
                }
            }
            Filter::NotContains { rel, tuple } => {
                self.key.clear();
                self.key
                    .extend(tuple.iter().map(|&t| resolve(&self.env, t)));
                !self.rels[*rel].all.contains(&self.key)
            }
            Filter::NotIndexed { index, key } => {
                self.key.clear();
                self.key.extend(key.iter().map(|&t| resolve(&self.env, t)));
                self.indexes[*index].get(&self.key).is_empty()
            }
            Filter::NotEmpty { rel } => self.rels[*rel].all.len() == 0,
        }
    }

    /// Binds the columns of row `r` of `step`'s relation; false when a check fails.
    #[inline]
    fn bind(&mut self, step: &Step, r: usize) -> bool {
        let row = self.rels[step.rel].all.row(r);
        if !step.checks_nothing {
            if step.consts.iter().any(|&(c, id)| row[c] != id) {
                return false;
            }
            if step.same.iter().any(|&(c, c0)| row[c] != row[c0]) {
                return false;
            }
        }
        for &(c, v) in &step.binds {
            self.env[v] = row[c];
        }
        true
    }

    /// Adds the head's tuple for the current bindings.
    #[inline]
    fn emit(&mut self, rule: &Rule) {
        self.tuple.clear();
        self.tuple
            .extend(rule.head.terms.iter().map(|&t| resolve(&self.env, t)));
        self.rels[rule.head.rel].all.insert(&self.tuple);
    }

    /// Continues after step `k` matched: the next step, or the head.
    #[inline]
    fn next(&mut self, rule: &Rule, plan: &Plan, k: usize) {
        if k + 1 == plan.steps.len() {
            self.emit(rule);
        } else {
            self.step(rule, plan, k + 1);
        }
    }

    fn step(&mut self, rule: &Rule, plan: &Plan, k: usize) {
        let Some(step) = plan.steps.get(k) else {
            self.emit(rule);
            return;
        };
        let (lo, hi) = (self.lo[step.rel], self.hi[step.rel]);
        let (start, end) = match step.range {
            Range::Delta => (lo, hi),
            Range::Old => (0, lo),
            Range::All => (0, hi),
        };
        match &step.access {
            Access::Scan => {
                for r in start..end {
                    if self.bind(step, r) && self.filters(rule, step) {
                        self.next(rule, plan, k);
                    }
                }
            }
            Access::Index { index, key } => {
                let indexes: &[Index] = self.indexes;
                let bucket = match key.as_slice() {
                    [t] => indexes[*index].get(&[resolve(&self.env, *t)]),
                    _ => {
                        self.key.clear();
                        self.key.extend(key.iter().map(|&t| resolve(&self.env, t)));
                        indexes[*index].get(&self.key)
                    }
                };
                if k + 1 == plan.steps.len() && self.last_step_into_head(rule, step, bucket, end) {
                    return;
                }
                for &r in bucket {
                    let r = r as usize;
                    if r >= end {
                        break;
                    }
                    if self.bind(step, r) && self.filters(rule, step) {
                        self.next(rule, plan, k);
                    }
                }
            }
            Access::Contains { tuple } => {
                self.key.clear();
                self.key
                    .extend(tuple.iter().map(|&t| resolve(&self.env, t)));
                if self.rels[step.rel].all.contains(&self.key) && self.filters(rule, step) {
                    self.next(rule, plan, k);
                }
            }
        }
    }

    /// The last step of a plan, read through an index, fused with adding the head's tuples:
    /// the innermost loop of most joins. Does nothing and returns false when it does not
    /// apply (filters to run, the head's relation read here, a head wider than 4).
    fn last_step_into_head(
        &mut self,
        rule: &Rule,
        step: &Step,
        bucket: &[u32],
        end: usize,
    ) -> bool {
        let h = rule.head.rel;
        let n = rule.head.terms.len();
        if !step.filters.is_empty() || step.rel == h || n > 4 {
            return false;
        }
        let (src, dst) = if step.rel < h {
            let (a, b) = self.rels.split_at_mut(h);
            (&a[step.rel].all, &mut b[0].all)
        } else {
            let (a, b) = self.rels.split_at_mut(step.rel);
            (&b[0].all, &mut a[h].all)
        };
        let env = &mut self.env;
        let mut tuple = [0 as Id; 4];
        for &r in bucket {
            let r = r as usize;
            if r >= end {
                break;
            }
            let row = src.row(r);
            if !step.checks_nothing
                && (step.consts.iter().any(|&(c, id)| row[c] != id)
                    || step.same.iter().any(|&(c, c0)| row[c] != row[c0]))
            {
                continue;
            }
            for &(c, v) in &step.binds {
                env[v] = row[c];
            }
            match rule.head_vars {
                Some([a, b]) => {
                    tuple[0] = env[a];
                    tuple[1] = env[b];
                }
                _ => {
                    for (slot, &term) in tuple.iter_mut().zip(&rule.head.terms) {
                        *slot = resolve(env, term);
                    }
                }
            }
            dst.insert(&tuple[..n]);
        }
        true
    }

    #[inline]
    fn filters(&mut self, rule: &Rule, step: &Step) -> bool {
        step.filters.is_empty() || step.filters.iter().all(|f| self.passes(rule, f))
    }
}
