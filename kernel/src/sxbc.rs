//! `.sxbc`: compiled SX on disk (SX.md §9).
//!
//! Layout (little-endian): magic `SXBC`, format version (u16), opcode-table hash (u64),
//! kernel version (string), source file (string), then the top-level prototypes. A
//! prototype is its header, constants, global names, code, line table and children.
//!
//! Loading checks the header first — a file from another format, instruction set or kernel
//! is *stale* and the message names both versions — then decodes with bounds on every count
//! and nesting, then validates every instruction: opcode, constant index (and its type where
//! the instruction needs one), global, slot, capture, child and jump target. Nothing runs
//! before all of it passes.

use std::fmt;
use std::rc::Rc;

use crate::bytecode::{opcode_table_hash, CaptureFrom, Op, Proto, ProtoParts};
use crate::engine::KERNEL_VERSION;
use crate::expander::{global_cell, Globals};
use crate::value::{Dict, Key, List, Pos, Symbol, Value};

pub const MAGIC: &[u8; 4] = b"SXBC";
/// 2: code names the library's own bindings (`#lib/...` globals, see `expander`), which a
/// kernel of format 1 does not define; and `case`/quasiquote call them instead of native
/// constants. 3: register instructions (operands and results name frame registers; `slots`
/// counts registers). 4: the integer primitives and the one-operand ones with a fast path
/// have instructions of their own (`add`, `lt-int`, `first`, ...).
pub const FORMAT_VERSION: u16 = 4;

/// Deeper constants or function nesting than this is rejected (the decoder recurses).
const MAX_NESTING: usize = 512;

/// A compiled program: its top-level forms, in order.
pub struct Program {
    pub file: Option<Rc<str>>,
    pub forms: Vec<Rc<Proto>>,
}

#[derive(Debug, PartialEq)]
pub enum LoadError {
    NotBytecode,
    /// Made by another format, instruction set or kernel.
    Stale {
        file_format: u16,
        file_opcodes: u64,
        file_kernel: String,
    },
    Damaged(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotBytecode => write!(f, "not an .sxbc file (no SXBC magic)"),
            LoadError::Stale {
                file_format,
                file_opcodes,
                file_kernel,
            } => write!(
                f,
                "stale bytecode: compiled by kernel {file_kernel} (format {file_format}, opcode table {file_opcodes:016x}); \
                 this is kernel {KERNEL_VERSION} (format {FORMAT_VERSION}, opcode table {:016x}). Recompile it from source.",
                opcode_table_hash()
            ),
            LoadError::Damaged(why) => write!(f, "damaged bytecode: {why}"),
        }
    }
}

fn damaged<T>(why: impl Into<String>) -> Result<T, LoadError> {
    Err(LoadError::Damaged(why.into()))
}

// ---------------------------------------------------------------- writing

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) -> Result<(), String> {
        self.u32(u32::try_from(n).map_err(|_| "too many items".to_string())?);
        Ok(())
    }
    fn str(&mut self, s: &str) -> Result<(), String> {
        self.len(s.len())?;
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn value(&mut self, v: &Value) -> Result<(), String> {
        match v {
            Value::Nil => self.u8(0),
            Value::Bool(false) => self.u8(1),
            Value::Bool(true) => self.u8(2),
            Value::Int(n) => {
                self.u8(3);
                self.u64(*n as u64);
            }
            Value::Float(f) => {
                self.u8(4);
                self.u64(f.to_bits());
            }
            Value::Str(s) => {
                self.u8(5);
                self.str(s)?;
            }
            Value::Keyword(k) => {
                self.u8(6);
                self.str(k.name())?;
            }
            Value::Symbol(s) => {
                self.u8(7);
                self.str(s.name())?;
            }
            Value::List(items) => {
                self.u8(8);
                self.len(items.len())?;
                for item in items.iter() {
                    self.value(item)?;
                }
            }
            Value::Dict(d) => {
                self.u8(9);
                self.len(d.len())?;
                for (k, v) in d.iter() {
                    self.value(&k.0)?;
                    self.value(v)?;
                }
            }
            Value::Raw(s) => {
                self.u8(10);
                self.str(s)?;
            }
            Value::Native(n) => {
                self.u8(11);
                self.str(n.name)?;
            }
            other => {
                return Err(format!(
                    "a {} constant cannot be written to bytecode",
                    other.type_name()
                ))
            }
        }
        Ok(())
    }

    fn proto(&mut self, p: &Proto) -> Result<(), String> {
        match p.name {
            Some(n) => {
                self.u8(1);
                self.str(n.name())?;
            }
            None => self.u8(0),
        }
        self.u16(p.params);
        self.u8(u8::from(p.rest));
        self.u16(p.slots);
        self.len(p.captures.len())?;
        for c in &p.captures {
            match c {
                CaptureFrom::Local(i) => {
                    self.u8(0);
                    self.u16(*i);
                }
                CaptureFrom::Capture(i) => {
                    self.u8(1);
                    self.u16(*i);
                }
            }
        }
        self.len(p.consts.len())?;
        for c in &p.consts {
            self.value(c)?;
        }
        self.len(p.globals.len())?;
        for g in &p.globals {
            self.str(g.name.name())?;
        }
        self.len(p.code.len())?;
        for op in &p.code {
            op.encode(&mut self.out);
        }
        self.len(p.lines.len())?;
        for (ip, pos) in &p.lines {
            self.u32(*ip);
            self.u32(pos.line);
            self.u32(pos.col);
        }
        self.len(p.protos.len())?;
        for child in &p.protos {
            self.proto(child)?;
        }
        Ok(())
    }
}

/// Serialises a compiled program.
pub fn write(program: &Program) -> Result<Vec<u8>, String> {
    let mut w = Writer { out: Vec::new() };
    w.out.extend_from_slice(MAGIC);
    w.u16(FORMAT_VERSION);
    w.u64(opcode_table_hash());
    w.str(KERNEL_VERSION)?;
    w.str(program.file.as_deref().unwrap_or(""))?;
    w.len(program.forms.len())?;
    for form in &program.forms {
        w.proto(form)?;
    }
    Ok(w.out)
}

// ---------------------------------------------------------------- reading

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    globals: &'a mut Globals,
    file: Option<Rc<str>>,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], LoadError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.at..end];
                self.at = end;
                Ok(slice)
            }
            None => damaged(format!("truncated at byte {}", self.bytes.len())),
        }
    }
    fn u8(&mut self) -> Result<u8, LoadError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, LoadError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, LoadError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, LoadError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// A count, checked against the bytes left (each item takes at least `min_size`).
    fn count(&mut self, min_size: usize, what: &str) -> Result<usize, LoadError> {
        let n = self.u32()? as usize;
        let left = self.bytes.len() - self.at;
        if n.saturating_mul(min_size) > left {
            return damaged(format!("{what} count {n} exceeds the file"));
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<String, LoadError> {
        let n = self.count(1, "string length")?;
        let at = self.at;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| LoadError::Damaged(format!("invalid UTF-8 in a string at byte {at}")))
    }
    fn name(&mut self) -> Result<Symbol, LoadError> {
        let s = self.str()?;
        if s.is_empty() {
            return damaged("empty name");
        }
        Ok(Symbol::new(&s))
    }

    fn value(&mut self, depth: usize) -> Result<Value, LoadError> {
        if depth > MAX_NESTING {
            return damaged("constants nested too deeply");
        }
        let at = self.at;
        Ok(match self.u8()? {
            0 => Value::Nil,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Int(self.u64()? as i64),
            4 => Value::Float(f64::from_bits(self.u64()?)),
            5 => Value::str(&self.str()?),
            6 => Value::Keyword(self.name()?),
            7 => Value::Symbol(self.name()?),
            8 => {
                let n = self.count(1, "list")?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::List(List::from(items))
            }
            9 => {
                let n = self.count(2, "dict")?;
                let mut d = Dict::new();
                for _ in 0..n {
                    let k = self.value(depth + 1)?;
                    let v = self.value(depth + 1)?;
                    d.insert(Key(k), v);
                }
                Value::Dict(d)
            }
            10 => Value::Raw(Rc::from(self.str()?.as_str())),
            11 => {
                let name = self.str()?;
                crate::builtins::try_native(&name)
                    .ok_or_else(|| LoadError::Damaged(format!("unknown native {name:?}")))?
            }
            tag => return damaged(format!("unknown constant tag {tag} at byte {at}")),
        })
    }

    fn op(&mut self) -> Result<Op, LoadError> {
        Op::decode(self.bytes, &mut self.at).map_err(LoadError::Damaged)
    }

    fn proto(&mut self, depth: usize) -> Result<Proto, LoadError> {
        if depth > MAX_NESTING {
            return damaged("functions nested too deeply");
        }
        let name = match self.u8()? {
            0 => None,
            1 => Some(self.name()?),
            other => return damaged(format!("bad name flag {other}")),
        };
        let params = self.u16()?;
        let rest = match self.u8()? {
            0 => false,
            1 => true,
            other => return damaged(format!("bad rest flag {other}")),
        };
        let slots = self.u16()?;
        let n = self.count(3, "capture")?;
        let mut captures = Vec::with_capacity(n);
        for _ in 0..n {
            captures.push(match self.u8()? {
                0 => CaptureFrom::Local(self.u16()?),
                1 => CaptureFrom::Capture(self.u16()?),
                other => return damaged(format!("bad capture kind {other}")),
            });
        }
        let n = self.count(1, "constant")?;
        let mut consts = Vec::with_capacity(n);
        for _ in 0..n {
            consts.push(self.value(0)?);
        }
        let n = self.count(4, "global")?;
        if n > usize::from(u16::MAX) + 1 {
            return damaged("too many globals");
        }
        let mut globals = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.name()?;
            globals.push(global_cell(self.globals, name));
        }
        let n = self.count(1, "instruction")?;
        let mut code = Vec::with_capacity(n);
        for _ in 0..n {
            code.push(self.op()?);
        }
        let n = self.count(12, "line entry")?;
        let mut lines = Vec::with_capacity(n);
        for _ in 0..n {
            let ip = self.u32()?;
            let line = self.u32()?;
            let col = self.u32()?;
            lines.push((ip, Pos { line, col }));
        }
        let n = self.count(8, "function")?;
        let mut protos = Vec::with_capacity(n);
        for _ in 0..n {
            protos.push(Rc::new(self.proto(depth + 1)?));
        }
        Proto::new(ProtoParts {
            name,
            params,
            rest,
            slots,
            captures,
            code,
            consts,
            globals,
            protos,
            lines,
            file: self.file.clone(),
        })
        .map_err(LoadError::Damaged)
    }
}

/// Loads a program, resolving its globals in `globals`. Nothing runs.
pub fn read(bytes: &[u8], globals: &mut Globals) -> Result<Program, LoadError> {
    if bytes.len() < 4 || &bytes[..4] != MAGIC {
        return Err(LoadError::NotBytecode);
    }
    let mut r = Reader {
        bytes,
        at: 4,
        globals,
        file: None,
    };
    let file_format = r.u16()?;
    let (file_opcodes, file_kernel) = if file_format == FORMAT_VERSION {
        (r.u64()?, r.str()?)
    } else {
        // Another format may lay out the rest of its header differently: read it best-effort.
        (
            r.u64().unwrap_or(0),
            r.str().unwrap_or_else(|_| "(unknown)".into()),
        )
    };
    if file_format != FORMAT_VERSION
        || file_opcodes != opcode_table_hash()
        || file_kernel != KERNEL_VERSION
    {
        return Err(LoadError::Stale {
            file_format,
            file_opcodes,
            file_kernel,
        });
    }
    let file = r.str()?;
    r.file = (!file.is_empty()).then(|| Rc::from(file.as_str()));
    let n = r.count(8, "form")?;
    let mut forms = Vec::with_capacity(n);
    for _ in 0..n {
        forms.push(Rc::new(r.proto(0)?));
    }
    if r.at != bytes.len() {
        return damaged(format!(
            "{} unexpected bytes after the program",
            bytes.len() - r.at
        ));
    }
    Ok(Program {
        file: r.file,
        forms,
    })
}

/// A bundle: several programs (files) that load in order into one engine, each `.sxbc`
/// prefixed by its length. The build compiles the apps into one.
pub fn write_bundle(programs: &[Program]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for program in programs {
        let bytes = write(program)?;
        let len = u32::try_from(bytes.len()).map_err(|_| "program too large".to_string())?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// Compiles several source files, in order, into one bundle. They share one engine, so a
/// macro one file defines is available to the files after it.
#[cfg(feature = "source")]
pub fn compile_bundle(files: &[(String, String)]) -> Result<Vec<u8>, Value> {
    let mut engine = crate::Engine::with_backend(crate::Backend::Vm);
    let mut programs = Vec::new();
    for (name, source) in files {
        programs.push(engine.compile_program(source, Some(name))?);
    }
    write_bundle(&programs).map_err(|e| crate::error::type_error(e, vec![]))
}

/// Reads a bundle, validating every program in it.
pub fn read_bundle(bytes: &[u8], globals: &mut Globals) -> Result<Vec<Program>, LoadError> {
    let mut programs = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(len) = bytes.get(at..at + 4) else {
            return damaged("truncated bundle");
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(program) = bytes.get(at + 4..at + 4 + len) else {
            return damaged("truncated bundle");
        };
        programs.push(read(program, globals)?);
        at += 4 + len;
    }
    Ok(programs)
}

/// The stamp a client bundle carries (a `.wasm` custom section named `STAMP_SECTION`): the
/// kernel version and opcode-table hash it was built with. A server refuses a client whose
/// stamp differs from its own.
pub fn stamp() -> String {
    format!(
        "sx-kernel {} opcodes {:016x}",
        crate::KERNEL_VERSION,
        crate::bytecode::opcode_table_hash()
    )
}

/// The name of the `.wasm` custom section that holds `stamp()`.
pub const STAMP_SECTION: &str = "sx-stamp";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytecode::OPCODES;

    /// Every opcode survives a write and a read: the encoder and decoder agree.
    #[test]
    fn every_opcode_round_trips() {
        let mut ops = crate::bytecode::one_of_each();
        assert_eq!(ops.len(), OPCODES.len());
        ops.push(Op::Return(0));
        let mut globals = Globals::new();
        let g = global_cell(&mut globals, Symbol::new("g"));
        let child = Rc::new(
            Proto::new(ProtoParts {
                name: None,
                params: 0,
                rest: false,
                slots: 1,
                captures: vec![CaptureFrom::Local(0)],
                code: vec![Op::Return(0)],
                consts: vec![],
                globals: vec![],
                protos: vec![],
                lines: vec![],
                file: None,
            })
            .unwrap(),
        );
        let proto = Rc::new(
            Proto::new(ProtoParts {
                name: Some(Symbol::new("all")),
                params: 1,
                rest: false,
                slots: 2,
                captures: vec![CaptureFrom::Local(0)],
                code: ops.clone(),
                consts: vec![
                    Value::Int(1),
                    Value::sym("div"),
                    Value::list(vec![Value::sym("title")]),
                    Value::str("a test"),
                ],
                globals: vec![g],
                protos: vec![child],
                lines: vec![(0, Pos { line: 1, col: 1 })],
                file: None,
            })
            .unwrap(),
        );
        let program = Program {
            file: Some(Rc::from("all.sx")),
            forms: vec![proto],
        };
        let bytes = write(&program).unwrap();
        let back = read(&bytes, &mut globals).unwrap();
        assert_eq!(back.forms[0].code, ops);
        assert_eq!(write(&back).unwrap(), bytes);
    }
}
