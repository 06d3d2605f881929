//! Storage of a Datalog database: terms interned to small integer ids, relations as
//! append-only rows of ids with an open-addressing hash set against duplicates, and hash
//! indexes on chosen columns (built lazily, caught up with the rows when used).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::value::{compare, Value, TWO_POW_63};

/// A term's id: an index into the interner's values.
pub type Id = u32;

/// Ids and row numbers stay below this, so a packed pair is never the empty slot marker.
pub const MAX_ROWS: usize = (u32::MAX - 1) as usize;

// ---- hashing ----

/// The Fx hash (rustc's): a multiply and a rotate per word; fine for integer keys.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(n as u64)
    }
    fn write_u32(&mut self, n: u32) {
        self.add(n as u64)
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n)
    }
    fn write_i64(&mut self, n: i64) {
        self.add(n as u64)
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64)
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type FxMap<K, V> = HashMap<K, V, FxBuild>;

/// A finaliser (murmur3's): spreads every input bit over the whole word.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

// ---- terms ----

/// Whether `v` is a data value (what a term may be): nil, booleans, numbers, strings,
/// keywords, symbols, raw text, and lists and dicts of data.
pub fn is_data(v: &Value) -> bool {
    let mut work = vec![v];
    while let Some(v) = work.pop() {
        match v {
            Value::Nil
            | Value::Bool(_)
            | Value::Int(_)
            | Value::Float(_)
            | Value::Str(_)
            | Value::Keyword(_)
            | Value::Symbol(_)
            | Value::Raw(_) => {}
            Value::List(items) => work.extend(items.iter()),
            Value::Dict(d) => {
                for (k, val) in d.iter() {
                    work.push(&k.0);
                    work.push(val);
                }
            }
            _ => return false,
        }
    }
    true
}

/// The integer a float equals in SX's order (`1.0` is `1`), if any.
fn float_as_int(f: f64) -> Option<i64> {
    (f.trunc() == f && (-TWO_POW_63..TWO_POW_63).contains(&f)).then_some(f as i64)
}

/// A hash of a data value that agrees with `compare`: values that compare equal (`1` and
/// `1.0`, `(1)` and `(1.0)`, any two NaNs) hash alike. Iterative: nesting depth is free.
fn hash_term(v: &Value) -> u64 {
    let mut h = FxHasher::default();
    let mut work = vec![v];
    while let Some(v) = work.pop() {
        match v {
            Value::Nil => h.add(1),
            Value::Bool(b) => h.add(2 + *b as u64),
            Value::Int(n) => {
                h.add(4);
                h.add(*n as u64);
            }
            Value::Float(f) => match float_as_int(*f) {
                Some(n) => {
                    h.add(4);
                    h.add(n as u64);
                }
                None => {
                    h.add(5);
                    h.add(if f.is_nan() { 0x7ff8 } else { f.to_bits() });
                }
            },
            Value::Str(s) => {
                h.add(6);
                h.write(s.as_bytes());
                h.add(s.len() as u64);
            }
            Value::Raw(s) => {
                h.add(7);
                h.write(s.as_bytes());
                h.add(s.len() as u64);
            }
            Value::Keyword(k) => {
                h.add(8);
                h.write(k.name().as_bytes());
            }
            Value::Symbol(s) => {
                h.add(9);
                h.write(s.name().as_bytes());
            }
            Value::List(items) => {
                h.add(10);
                h.add(items.len() as u64);
                work.extend(items.iter());
            }
            Value::Dict(d) => {
                h.add(11);
                h.add(d.len() as u64);
                for (k, val) in d.iter() {
                    work.push(&k.0);
                    work.push(val);
                }
            }
            _ => h.add(12),
        }
    }
    h.finish()
}

/// A term as a hash key: equal when `compare` says so.
struct TermKey {
    hash: u64,
    value: Value,
}

impl Hash for TermKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash)
    }
}
impl PartialEq for TermKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && compare(&self.value, &other.value).is_eq()
    }
}
impl Eq for TermKey {}

/// Terms ↔ ids. Values equal in SX's order share one id (the first one seen is kept), so
/// joins and `=` compare integers. Ids are never freed (like symbols).
#[derive(Default)]
pub struct Interner {
    values: Vec<Value>,
    ints: FxMap<i64, Id>,
    others: FxMap<TermKey, Id>,
}

impl Interner {
    pub fn value(&self, id: Id) -> &Value {
        &self.values[id as usize]
    }

    /// The id of `v`, if it has one. `v` must be data.
    pub fn lookup(&self, v: &Value) -> Option<Id> {
        match int_key(v) {
            Some(n) => self.ints.get(&n).copied(),
            None => self
                .others
                .get(&TermKey {
                    hash: hash_term(v),
                    value: v.clone(),
                })
                .copied(),
        }
    }

    /// The id of `v`, made if new; `None` when the id space is exhausted. `v` must be data.
    pub fn intern(&mut self, v: &Value) -> Option<Id> {
        if let Some(id) = self.lookup(v) {
            return Some(id);
        }
        if self.values.len() >= MAX_ROWS {
            return None;
        }
        let id = self.values.len() as Id;
        self.values.push(v.clone());
        match int_key(v) {
            Some(n) => {
                self.ints.insert(n, id);
            }
            None => {
                self.others.insert(
                    TermKey {
                        hash: hash_term(v),
                        value: v.clone(),
                    },
                    id,
                );
            }
        }
        Some(id)
    }
}

fn int_key(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        Value::Float(f) => float_as_int(*f),
        _ => None,
    }
}

// ---- rows ----

const EMPTY: u64 = u64::MAX;

/// The membership set of a relation's rows.
#[derive(Clone)]
enum Set {
    /// Open addressing, linear probing, at most 3/4 full. A slot holds the row itself packed
    /// into 64 bits when the arity is at most 2 (one memory access per probe), else 32 bits
    /// of hash and the row number.
    Hash(Vec<u64>),
    /// For arity 1 and 2 when the ids in the relation are dense: one bit per possible row,
    /// `(a << shift) | b`, every id below `1 << shift`. Chosen whenever it takes no more
    /// memory than the hash set would (a dense graph's closure: a few hundred kilobytes that
    /// stay in cache instead of tens of megabytes probed at random).
    Bits { shift: u32, words: Vec<u64> },
}

/// The rows of one relation: `arity` ids per row, in insertion order (so a row number range
/// is a version of the relation: semi-naive evaluation reads "old" and "delta" as ranges),
/// and a set of them against duplicates.
#[derive(Clone)]
pub struct Rows {
    arity: usize,
    data: Vec<Id>,
    len: usize,
    set: Set,
    /// The largest id in any row, kept while hashing (a bitmap bounds the ids itself;
    /// `rebuild_set` recomputes it).
    max_id: Id,
    /// An insert was refused because the relation reached `MAX_ROWS`.
    pub overflow: bool,
}

impl Rows {
    pub fn new(arity: usize) -> Rows {
        Rows {
            arity,
            data: Vec::new(),
            len: 0,
            set: Set::Hash(vec![EMPTY; 16]),
            max_id: 0,
            overflow: false,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn arity(&self) -> usize {
        self.arity
    }

    #[inline]
    pub fn row(&self, i: usize) -> &[Id] {
        &self.data[i * self.arity..(i + 1) * self.arity]
    }

    #[inline]
    pub fn at(&self, i: usize, col: usize) -> Id {
        self.data[i * self.arity + col]
    }

    #[inline]
    fn packed(&self) -> bool {
        self.arity <= 2
    }

    #[inline]
    fn pack(t: &[Id]) -> u64 {
        match *t {
            [] => 0,
            [a] => a as u64,
            [a, b, ..] => ((a as u64) << 32) | b as u64,
        }
    }

    #[inline]
    fn hash_row(t: &[Id]) -> u64 {
        let mut h = FxHasher::default();
        for &id in t {
            h.add(id as u64);
        }
        mix(h.0)
    }

    /// The bit of `t` in a bitmap with ids below `1 << shift`, if they all are.
    #[inline]
    fn bit(t: &[Id], shift: u32) -> Option<usize> {
        match *t {
            [a] if (a as u64) >> shift == 0 => Some(a as usize),
            [a, b] if (a as u64 | b as u64) >> shift == 0 => {
                Some(((a as usize) << shift) | b as usize)
            }
            _ => None,
        }
    }

    /// The slot where `t` is, or the empty slot where it would go.
    #[inline]
    fn probe(&self, slots: &[u64], t: &[Id]) -> (usize, bool) {
        let mask = slots.len() - 1;
        if self.packed() {
            let key = Self::pack(t);
            let mut i = mix(key) as usize & mask;
            loop {
                let s = slots[i];
                if s == key {
                    return (i, true);
                }
                if s == EMPTY {
                    return (i, false);
                }
                i = (i + 1) & mask;
            }
        }
        let h = Self::hash_row(t);
        let tag = h >> 32;
        let mut i = h as usize & mask;
        loop {
            let s = slots[i];
            if s == EMPTY {
                return (i, false);
            }
            if s >> 32 == tag && self.row((s & 0xffff_ffff) as usize) == t {
                return (i, true);
            }
            i = (i + 1) & mask;
        }
    }

    /// Is `t` (of this arity) a row?
    #[inline]
    pub fn contains(&self, t: &[Id]) -> bool {
        match &self.set {
            Set::Hash(slots) => self.probe(slots, t).1,
            Set::Bits { shift, words } => match Self::bit(t, *shift) {
                Some(bit) => words[bit >> 6] & (1 << (bit & 63)) != 0,
                None => false,
            },
        }
    }

    /// Adds `t` unless it is a row already; true when added.
    #[inline]
    pub fn insert(&mut self, t: &[Id]) -> bool {
        // The hot case inline: a bitmap that covers `t`.
        if let Set::Bits { shift, words } = &mut self.set {
            if let Some(bit) = Self::bit(t, *shift) {
                let (word, mask) = (&mut words[bit >> 6], 1u64 << (bit & 63));
                if *word & mask != 0 {
                    return false;
                }
                if self.len < MAX_ROWS {
                    *word |= mask;
                    match *t {
                        [a, b] => {
                            self.data.push(a);
                            self.data.push(b);
                        }
                        _ => self.data.extend_from_slice(t),
                    }
                    self.len += 1;
                    return true;
                }
            }
        }
        self.insert_slow(t)
    }

    #[inline(never)]
    fn insert_slow(&mut self, t: &[Id]) -> bool {
        if self.len >= MAX_ROWS {
            if !self.contains(t) {
                self.overflow = true;
            }
            return false;
        }
        if let Set::Bits { .. } = self.set {
            // An id beyond the bitmap: a new row. Choose the set again, then add it.
            self.push(t);
            self.rebuild_set();
            return true;
        }
        let Set::Hash(slots) = &self.set else {
            return false;
        };
        let (i, found) = self.probe(slots, t);
        if found {
            return false;
        }
        let slot = if self.packed() {
            Self::pack(t)
        } else {
            (Self::hash_row(t) >> 32) << 32 | self.len as u64
        };
        if let Set::Hash(slots) = &mut self.set {
            slots[i] = slot;
        }
        self.push(t);
        if let Set::Hash(slots) = &self.set {
            if self.len * 4 > slots.len() * 3 {
                self.rebuild_set();
            }
        }
        true
    }

    #[inline]
    fn push(&mut self, t: &[Id]) {
        self.data.extend_from_slice(t);
        self.len += 1;
        for &id in t {
            self.max_id = self.max_id.max(id);
        }
    }

    /// Makes the set again for the current rows: a bitmap when it is no larger than a hash
    /// set with room to grow, else a hash set at most half full.
    fn rebuild_set(&mut self) {
        self.max_id = self.data.iter().copied().max().unwrap_or(0);
        let hash_slots = (self.len * 2).next_power_of_two().max(16);
        let shift = 32 - self.max_id.leading_zeros();
        let bitmap_bits = match self.arity {
            1 => Some(1u64 << shift),
            2 if shift <= 20 => Some(1u64 << (2 * shift)),
            _ => None,
        };
        match bitmap_bits {
            Some(bits) if bits / 8 <= hash_slots as u64 * 8 * 2 => {
                let mut words = vec![0u64; (bits as usize).div_ceil(64)];
                for r in 0..self.len {
                    if let Some(bit) = Self::bit(self.row(r), shift) {
                        words[bit >> 6] |= 1 << (bit & 63);
                    }
                }
                self.set = Set::Bits { shift, words };
            }
            _ => {
                let mut slots = vec![EMPTY; hash_slots];
                let mask = slots.len() - 1;
                for r in 0..self.len {
                    let (slot, h) = if self.packed() {
                        let key = Self::pack(self.row(r));
                        (key, mix(key))
                    } else {
                        let h = Self::hash_row(self.row(r));
                        ((h >> 32) << 32 | r as u64, h)
                    };
                    let mut i = h as usize & mask;
                    while slots[i] != EMPTY {
                        i = (i + 1) & mask;
                    }
                    slots[i] = slot;
                }
                self.set = Set::Hash(slots);
            }
        }
    }

    /// The same rows without `t` (rebuilt: removal is rare and may cost O(n)).
    pub fn without(&self, t: &[Id]) -> Rows {
        let mut out = Rows::new(self.arity);
        for r in 0..self.len {
            if self.row(r) != t {
                out.insert(self.row(r));
            }
        }
        out
    }
}

// ---- indexes ----

/// Rows of one relation grouped by the values of some columns: key → row numbers, ascending.
/// A one-column index over dense ids finds its bucket by position (`direct`), others hash.
pub struct Index {
    pub rel: usize,
    pub cols: Box<[usize]>,
    /// Rows `0..upto` are indexed.
    upto: usize,
    /// One column: `direct[id]` is the bucket + 1 (0: none), while ids stay dense.
    direct: Option<Vec<u32>>,
    small: FxMap<u64, u32>,
    large: FxMap<Box<[Id]>, u32>,
    buckets: Vec<Vec<u32>>,
}

impl Index {
    pub fn new(rel: usize, cols: Box<[usize]>) -> Index {
        let direct = (cols.len() == 1).then(Vec::new);
        Index {
            rel,
            cols,
            upto: 0,
            direct,
            small: FxMap::default(),
            large: FxMap::default(),
            buckets: Vec::new(),
        }
    }

    /// Forgets every row (the relation was rebuilt).
    pub fn clear(&mut self) {
        *self = Index::new(self.rel, std::mem::take(&mut self.cols));
    }

    /// The bucket for `key`, made if new.
    fn bucket_for(&mut self, key: &[Id]) -> usize {
        let next = self.buckets.len() as u32;
        if let (Some(direct), [id]) = (&mut self.direct, key) {
            let id = *id as usize;
            if id >= direct.len() && id > 16 * self.upto + 4096 {
                // Too sparse for a table by position: hash from now on.
                for (id, &b) in direct.iter().enumerate() {
                    if b != 0 {
                        self.small.insert(id as u64, b - 1);
                    }
                }
                self.direct = None;
            } else {
                if id >= direct.len() {
                    direct.resize((id + 1).next_power_of_two(), 0);
                }
                if direct[id] == 0 {
                    direct[id] = next + 1;
                    self.buckets.push(Vec::new());
                }
                return (direct[id] - 1) as usize;
            }
        }
        let bucket = if key.len() <= 2 {
            *self.small.entry(Rows::pack(key)).or_insert(next)
        } else {
            match self.large.get(key) {
                Some(&b) => b,
                None => {
                    self.large.insert(key.into(), next);
                    next
                }
            }
        };
        if bucket == next {
            self.buckets.push(Vec::new());
        }
        bucket as usize
    }

    /// Indexes the rows added since the last call.
    pub fn catch_up(&mut self, rows: &Rows) {
        let mut key = Vec::with_capacity(self.cols.len());
        for r in self.upto..rows.len() {
            key.clear();
            key.extend(self.cols.iter().map(|&c| rows.at(r, c)));
            let bucket = self.bucket_for(&key);
            self.buckets[bucket].push(r as u32);
            self.upto = r + 1;
        }
    }

    /// The rows whose indexed columns hold `key` (in `cols` order), ascending.
    #[inline]
    pub fn get(&self, key: &[Id]) -> &[u32] {
        let bucket = match (&self.direct, key) {
            (Some(direct), [id]) => match direct.get(*id as usize) {
                Some(&b) if b != 0 => Some(b - 1),
                _ => None,
            },
            _ if key.len() <= 2 => self.small.get(&Rows::pack(key)).copied(),
            _ => self.large.get(key).copied(),
        };
        match bucket {
            Some(b) => &self.buckets[b as usize],
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_numbers_share_an_id() {
        let mut terms = Interner::default();
        let one = terms.intern(&Value::Int(1)).unwrap();
        assert_eq!(terms.intern(&Value::Float(1.0)), Some(one));
        let list = terms.intern(&Value::list(vec![Value::Int(1)])).unwrap();
        assert_eq!(
            terms.lookup(&Value::list(vec![Value::Float(1.0)])),
            Some(list)
        );
        assert_eq!(
            terms.intern(&Value::Float(f64::NAN)),
            terms.intern(&Value::Float(-f64::NAN))
        );
        assert_ne!(
            terms.intern(&Value::str("a")),
            terms.intern(&Value::sym("a"))
        );
        assert_eq!(terms.lookup(&Value::Float(2.5)), None);
    }

    #[test]
    fn rows_dedup_across_growth_for_every_arity() {
        for arity in 0..5 {
            let mut rows = Rows::new(arity);
            let tuple = |i: u32| (0..arity as u32).map(|c| i * 7 + c).collect::<Vec<_>>();
            let n = if arity == 0 { 1 } else { 1000 };
            for i in 0..n {
                assert!(rows.insert(&tuple(i)));
            }
            for i in 0..n {
                assert!(!rows.insert(&tuple(i)));
                assert!(rows.contains(&tuple(i)));
            }
            assert_eq!(rows.len(), n as usize);
            if arity > 0 {
                assert!(!rows.contains(&tuple(n + 1)));
                let fewer = rows.without(&tuple(3));
                assert_eq!(fewer.len(), n as usize - 1);
                assert!(!fewer.contains(&tuple(3)) && fewer.contains(&tuple(4)));
            }
        }
    }

    #[test]
    fn dense_rows_switch_to_a_bitmap_and_back() {
        let mut rows = Rows::new(2);
        for a in 0..64 {
            for b in 0..64 {
                assert!(rows.insert(&[a, b]));
            }
        }
        assert!(matches!(rows.set, Set::Bits { .. }));
        assert!(!rows.insert(&[3, 4]) && rows.contains(&[63, 63]));
        assert!(!rows.contains(&[64, 0]));
        // A far id makes the bitmap too large: back to hashing, nothing lost.
        assert!(rows.insert(&[1_000_000, 1]));
        assert!(matches!(rows.set, Set::Hash(_)));
        assert!(rows.contains(&[3, 4]) && rows.contains(&[1_000_000, 1]));
        assert!(!rows.insert(&[63, 63]));
        assert_eq!(rows.len(), 64 * 64 + 1);
        let mut single = Rows::new(1);
        for a in 0..100 {
            single.insert(&[a]);
        }
        assert!(matches!(single.set, Set::Bits { .. }));
        assert!(single.contains(&[99]) && !single.contains(&[100]));
    }

    #[test]
    fn index_catches_up() {
        let mut rows = Rows::new(3);
        let mut index = Index::new(0, Box::new([0, 2]));
        rows.insert(&[1, 2, 3]);
        rows.insert(&[1, 5, 3]);
        index.catch_up(&rows);
        rows.insert(&[1, 6, 3]);
        rows.insert(&[2, 6, 3]);
        assert_eq!(index.get(&[1, 3]), &[0, 1]);
        index.catch_up(&rows);
        assert_eq!(index.get(&[1, 3]), &[0, 1, 2]);
        assert_eq!(index.get(&[2, 3]), &[3]);
        assert!(index.get(&[9, 9]).is_empty());
        let mut single = Index::new(0, Box::new([1]));
        single.catch_up(&rows);
        assert_eq!(single.get(&[6]), &[2, 3]);
        rows.insert(&[1, 1_000_000, 3]);
        single.catch_up(&rows);
        assert!(single.direct.is_none());
        assert_eq!(single.get(&[6]), &[2, 3]);
        assert_eq!(single.get(&[1_000_000]), &[4]);
        let mut wide = Index::new(0, Box::new([0, 1, 2]));
        wide.catch_up(&rows);
        assert_eq!(wide.get(&[2, 6, 3]), &[3]);
    }
}
