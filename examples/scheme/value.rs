//! Scheme values as movegc objects, and [`Core`], the interpreter state
//! that primitives share: the singletons, the symbol and global tables, the
//! constant table, compiled lambdas and the output buffer.
//!
//! Every value is a heap object whose layout tag (see [`tag`]) gives its
//! type:
//!
//! | value | layout |
//! |---|---|
//! | `()`, `#t`, `#f`, unspecified, eof | record, no fields (one object each) |
//! | fixnum | record, 8 data bytes (a cache holds the small ones) |
//! | pair | record, 2 references |
//! | symbol | record, 8 data bytes: the id in the symbol table |
//! | character | record, 8 data bytes: the code point |
//! | string | byte array (UTF-8) |
//! | vector | reference array |
//! | closure | record, 1 reference (environment), 8 bytes: the lambda index |
//! | primitive | record, 8 data bytes: the index in [`builtins::PRIMS`] |
//! | frame | reference array: parent frame, then the variables |
//!
//! Symbols are interned: a symbol's id indexes both the heap symbol table
//! (so each name has one symbol object and `eq?` is identity) and the heap
//! global table (the value of the global variable of that name; null when
//! unbound). All the tables hang off handles created once, at the bottom of
//! the mutator's handle stack, which every later scope sits above.

use std::collections::HashMap;
use std::rc::Rc;

use movegc::{Layout, Local, Mutator};

use super::builtins::{self, PRIMS};
use super::compile::Lambda;
use super::{Result, SchemeError, DEFAULT_STACK_LIMIT};

/// Layout tags of the value types.
pub mod tag {
    /// The empty list.
    pub const NIL: u16 = 1;
    /// `#t`.
    pub const TRUE: u16 = 2;
    /// `#f`.
    pub const FALSE: u16 = 3;
    /// The unspecified value (of `define`, `set!`, `display`, ...).
    pub const UNSPEC: u16 = 4;
    /// The end-of-file object.
    pub const EOF: u16 = 5;
    /// A 64-bit integer.
    pub const FIXNUM: u16 = 6;
    /// A pair.
    pub const PAIR: u16 = 7;
    /// An interned symbol.
    pub const SYMBOL: u16 = 8;
    /// A string.
    pub const STRING: u16 = 9;
    /// A character.
    pub const CHAR: u16 = 10;
    /// A vector.
    pub const VECTOR: u16 = 11;
    /// A closure.
    pub const CLOSURE: u16 = 12;
    /// A primitive procedure.
    pub const PRIMITIVE: u16 = 13;
    /// An environment frame.
    pub const FRAME: u16 = 14;
    /// An internal table (symbols, globals, constants, small integers).
    pub const TABLE: u16 = 15;
}

/// Index of `()` in the constant table.
pub const CONST_NIL: u32 = 0;
/// Index of `#t` in the constant table.
pub const CONST_TRUE: u32 = 1;
/// Index of `#f` in the constant table.
pub const CONST_FALSE: u32 = 2;
/// Index of the unspecified value in the constant table.
pub const CONST_UNSPEC: u32 = 3;

/// Output is handed to the sink in chunks of about this size.
const FLUSH_AT: usize = 8 << 10;

/// Smallest fixnum in the small-integer cache.
const INT_CACHE_MIN: i64 = -256;
/// Largest fixnum in the small-integer cache.
const INT_CACHE_MAX: i64 = 1023;

/// The layouts of the fixed-size value types, made once.
#[derive(Clone, Copy, Debug)]
pub struct Layouts {
    /// Pairs.
    pub pair: Layout,
    /// Fixnums.
    pub fixnum: Layout,
    /// Symbols.
    pub symbol: Layout,
    /// Characters.
    pub chr: Layout,
    /// Closures.
    pub closure: Layout,
    /// Primitives.
    pub primitive: Layout,
}

/// Symbol ids of the special-form keywords and other names the compiler
/// recognises.
#[derive(Clone, Debug)]
pub struct Keywords {
    /// Special forms by symbol id.
    pub special: HashMap<u32, Special>,
    /// `else`.
    pub else_: u32,
    /// `=>`.
    pub arrow: u32,
    /// `define`.
    pub define: u32,
    /// `begin`.
    pub begin: u32,
    /// `lambda`.
    pub lambda: u32,
    /// `quasiquote`.
    pub quasiquote: u32,
    /// `unquote`.
    pub unquote: u32,
    /// `unquote-splicing`.
    pub unquote_splicing: u32,
}

/// The special forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// `quote`.
    Quote,
    /// `quasiquote`.
    Quasiquote,
    /// `unquote` or `unquote-splicing` outside a quasiquote.
    Unquote,
    /// `lambda`.
    Lambda,
    /// `define`.
    Define,
    /// `set!`.
    Set,
    /// `if`.
    If,
    /// `cond`.
    Cond,
    /// `case`.
    Case,
    /// `and`.
    And,
    /// `or`.
    Or,
    /// `when`.
    When,
    /// `unless`.
    Unless,
    /// `let` (and named `let`).
    Let,
    /// `let*`.
    LetStar,
    /// `letrec` and `letrec*`.
    Letrec,
    /// `begin`.
    Begin,
    /// `do`.
    Do,
}

/// Interpreter state shared by the evaluator, the compiler and the
/// primitives. The `Local`s are created at setup in the mutator's outermost
/// scope and stay valid for the interpreter's life.
pub struct Core {
    /// The empty list.
    pub nil: Local,
    /// `#t`.
    pub t: Local,
    /// `#f`.
    pub f: Local,
    /// The unspecified value.
    pub unspec: Local,
    /// The end-of-file object.
    pub eof: Local,
    /// The (empty) frame top-level forms are evaluated in.
    pub top_env: Local,
    symtab: Local,
    globals: Local,
    table_cap: usize,
    consts: Local,
    n_consts: usize,
    consts_cap: usize,
    ints: Local,
    names: Vec<String>,
    ids: HashMap<String, u32>,
    /// Compiled lambdas; closures refer to them by index.
    pub lambdas: Vec<Rc<Lambda>>,
    /// Output not yet taken or flushed.
    pub out: String,
    /// Where output goes (`None`: it stays in `out` until taken).
    pub sink: Option<Box<dyn std::io::Write>>,
    /// Layouts of the fixed-size types.
    pub lay: Layouts,
    /// Keyword symbol ids.
    pub kw: Keywords,
    /// Where the stack was when the current top-level form started.
    stack_base: usize,
    /// How much stack below `stack_base` evaluation may use.
    pub stack_limit: usize,
}

/// The address of a local variable: where the stack is now.
#[inline(always)]
fn stack_position() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

fn singleton(m: &mut Mutator, t: u16) -> Result<Local> {
    Ok(m.alloc(&Layout::record(t, 0, 0)?)?)
}

fn table(m: &mut Mutator, len: usize) -> Result<Local> {
    Ok(m.alloc(&Layout::ref_array(tag::TABLE, len)?)?)
}

/// Copies the first `n` slots of table `from` into table `to`.
fn copy_table(m: &mut Mutator, from: Local, to: Local, n: usize) -> Result<()> {
    for i in 0..n {
        m.scope(|m| -> Result<()> {
            if let Some(x) = m.get_ref(from, i)? {
                m.set_ref(to, i, Some(x))?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

impl Core {
    /// Creates the singletons and tables in the current (outermost) scope
    /// of `m`, interns the keywords and binds the primitives.
    pub fn new(m: &mut Mutator) -> Result<Core> {
        let nil = singleton(m, tag::NIL)?;
        let t = singleton(m, tag::TRUE)?;
        let f = singleton(m, tag::FALSE)?;
        let unspec = singleton(m, tag::UNSPEC)?;
        let eof = singleton(m, tag::EOF)?;
        let top_env = m.alloc(&Layout::ref_array(tag::FRAME, 1)?)?;
        let table_cap = 512;
        let symtab = table(m, table_cap)?;
        let globals = table(m, table_cap)?;
        let consts_cap = 256;
        let consts = table(m, consts_cap)?;
        let ncache = (INT_CACHE_MAX - INT_CACHE_MIN + 1) as usize;
        let ints = table(m, ncache)?;
        let lay = Layouts {
            pair: Layout::record(tag::PAIR, 2, 0)?,
            fixnum: Layout::record(tag::FIXNUM, 0, 8)?,
            symbol: Layout::record(tag::SYMBOL, 0, 8)?,
            chr: Layout::record(tag::CHAR, 0, 8)?,
            closure: Layout::record(tag::CLOSURE, 1, 8)?,
            primitive: Layout::record(tag::PRIMITIVE, 0, 8)?,
        };
        let mut core = Core {
            nil,
            t,
            f,
            unspec,
            eof,
            top_env,
            symtab,
            globals,
            table_cap,
            consts,
            n_consts: 0,
            consts_cap,
            ints,
            names: Vec::new(),
            ids: HashMap::new(),
            lambdas: Vec::new(),
            out: String::new(),
            sink: None,
            lay,
            kw: Keywords {
                special: HashMap::new(),
                else_: 0,
                arrow: 0,
                define: 0,
                begin: 0,
                lambda: 0,
                quasiquote: 0,
                unquote: 0,
                unquote_splicing: 0,
            },
            stack_base: stack_position(),
            stack_limit: DEFAULT_STACK_LIMIT,
        };
        m.scope(|m| core.setup(m, ncache))?;
        Ok(core)
    }

    fn setup(&mut self, m: &mut Mutator, ncache: usize) -> Result<()> {
        for i in 0..ncache {
            m.scope(|m| -> Result<()> {
                let n = m.alloc(&self.lay.fixnum)?;
                m.write_u64(n, 0, (INT_CACHE_MIN + i as i64) as u64)?;
                m.set_ref(self.ints, i, Some(n))?;
                Ok(())
            })?;
        }
        for (i, c) in [self.nil, self.t, self.f, self.unspec]
            .into_iter()
            .enumerate()
        {
            let k = self.add_const(m, c)?;
            debug_assert_eq!(k as usize, i);
        }
        use Special::*;
        let specials = [
            ("quote", Quote),
            ("quasiquote", Quasiquote),
            ("unquote", Unquote),
            ("unquote-splicing", Unquote),
            ("lambda", Lambda),
            ("define", Define),
            ("set!", Set),
            ("if", If),
            ("cond", Cond),
            ("case", Case),
            ("and", And),
            ("or", Or),
            ("when", When),
            ("unless", Unless),
            ("let", Let),
            ("let*", LetStar),
            ("letrec", Letrec),
            ("letrec*", Letrec),
            ("begin", Begin),
            ("do", Do),
        ];
        for (name, s) in specials {
            let id = self.intern_id(m, name)?;
            self.kw.special.insert(id, s);
        }
        self.kw.else_ = self.intern_id(m, "else")?;
        self.kw.arrow = self.intern_id(m, "=>")?;
        self.kw.define = self.intern_id(m, "define")?;
        self.kw.begin = self.intern_id(m, "begin")?;
        self.kw.lambda = self.intern_id(m, "lambda")?;
        self.kw.quasiquote = self.intern_id(m, "quasiquote")?;
        self.kw.unquote = self.intern_id(m, "unquote")?;
        self.kw.unquote_splicing = self.intern_id(m, "unquote-splicing")?;
        for (i, p) in PRIMS.iter().enumerate() {
            m.scope(|m| -> Result<()> {
                let id = self.intern_id(m, p.name)?;
                let v = m.alloc(&self.lay.primitive)?;
                m.write_u64(v, 0, i as u64)?;
                self.set_global(m, id, v)
            })?;
        }
        Ok(())
    }

    // ----- output --------------------------------------------------------------

    /// Appends program output; hands it to the sink, if any, once a few
    /// KiB have accumulated.
    pub fn emit(&mut self, s: &str) -> Result<()> {
        self.out.push_str(s);
        if self.out.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands buffered output to the sink, if there is one.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(sink) = &mut self.sink {
            sink.write_all(self.out.as_bytes())
                .and_then(|()| sink.flush())
                .map_err(|e| SchemeError::Io(e.to_string()))?;
            self.out.clear();
        }
        Ok(())
    }

    // ----- the stack ---------------------------------------------------------

    /// Records the current stack position as the base the limit counts
    /// from (at the start of each top-level form).
    pub fn mark_stack_base(&mut self) {
        self.stack_base = stack_position();
    }

    /// Fails with [`SchemeError::TooDeep`] when recursion has used more
    /// than the stack limit. Every recursive part of the interpreter (the
    /// evaluator, reader, compiler, printer and `equal?`) checks it.
    #[inline]
    pub fn check_stack(&self) -> Result<()> {
        if self.stack_base.saturating_sub(stack_position()) > self.stack_limit {
            return Err(SchemeError::TooDeep(self.stack_limit));
        }
        Ok(())
    }

    // ----- constants, symbols, globals -------------------------------------

    /// Adds `v` to the constant table; returns its index.
    pub fn add_const(&mut self, m: &mut Mutator, v: Local) -> Result<u32> {
        if self.n_consts == self.consts_cap {
            let cap = self.consts_cap * 2;
            m.scope(|m| -> Result<()> {
                let new = table(m, cap)?;
                copy_table(m, self.consts, new, self.n_consts)?;
                m.assign(self.consts, new)?;
                Ok(())
            })?;
            self.consts_cap = cap;
        }
        m.set_ref(self.consts, self.n_consts, Some(v))?;
        self.n_consts += 1;
        Ok((self.n_consts - 1) as u32)
    }

    /// Constant number `i`, as a new handle.
    #[inline]
    pub fn constant(&self, m: &mut Mutator, i: u32) -> Result<Local> {
        m.get_ref(self.consts, i as usize)?
            .ok_or_else(|| internal("missing constant"))
    }

    /// The id of the symbol called `name`, interning it if new.
    pub fn intern_id(&mut self, m: &mut Mutator, name: &str) -> Result<u32> {
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        let id = self.names.len();
        if id == self.table_cap {
            let cap = self.table_cap * 2;
            m.scope(|m| -> Result<()> {
                for t in [self.symtab, self.globals] {
                    let new = table(m, cap)?;
                    copy_table(m, t, new, id)?;
                    m.assign(t, new)?;
                }
                Ok(())
            })?;
            self.table_cap = cap;
        }
        m.scope(|m| -> Result<()> {
            let s = m.alloc(&self.lay.symbol)?;
            m.write_u64(s, 0, id as u64)?;
            m.set_ref(self.symtab, id, Some(s))?;
            Ok(())
        })?;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id as u32);
        Ok(id as u32)
    }

    /// The symbol called `name` (interned).
    pub fn intern(&mut self, m: &mut Mutator, name: &str) -> Result<Local> {
        let id = self.intern_id(m, name)?;
        self.symbol(m, id)
    }

    /// The symbol object with id `id`.
    pub fn symbol(&self, m: &mut Mutator, id: u32) -> Result<Local> {
        m.get_ref(self.symtab, id as usize)?
            .ok_or_else(|| internal("missing symbol"))
    }

    /// The name of symbol `id` (`<anonymous>` for compiler temporaries).
    pub fn name(&self, id: u32) -> &str {
        self.names
            .get(id as usize)
            .map_or("<anonymous>", String::as_str)
    }

    /// The id of a symbol value.
    #[inline]
    pub fn symbol_id(&self, m: &mut Mutator, v: Local) -> Result<u32> {
        Ok(m.read_u64(v, 0)? as u32)
    }

    /// The value of global `id`, or an unbound-variable error.
    #[inline]
    pub fn global(&self, m: &mut Mutator, id: u32) -> Result<Local> {
        m.get_ref(self.globals, id as usize)?
            .ok_or_else(|| SchemeError::Unbound(self.name(id).to_owned()))
    }

    /// Whether global `id` has a value.
    pub fn is_bound(&self, m: &mut Mutator, id: u32) -> Result<bool> {
        Ok(!m.is_null(self.globals, id as usize)?)
    }

    /// Binds global `id` to `v`.
    pub fn set_global(&self, m: &mut Mutator, id: u32, v: Local) -> Result<()> {
        Ok(m.set_ref(self.globals, id as usize, Some(v))?)
    }

    // ----- constructors ------------------------------------------------------

    /// The fixnum `n` (from the small-integer cache when it is small).
    #[inline]
    pub fn int(&self, m: &mut Mutator, n: i64) -> Result<Local> {
        if (INT_CACHE_MIN..=INT_CACHE_MAX).contains(&n) {
            if let Some(v) = m.get_ref(self.ints, (n - INT_CACHE_MIN) as usize)? {
                return Ok(v);
            }
        }
        let v = m.alloc(&self.lay.fixnum)?;
        m.write_u64(v, 0, n as u64)?;
        Ok(v)
    }

    /// A new pair.
    #[inline]
    pub fn cons(&self, m: &mut Mutator, a: Local, d: Local) -> Result<Local> {
        let p = m.alloc(&self.lay.pair)?;
        m.set_ref(p, 0, Some(a))?;
        m.set_ref(p, 1, Some(d))?;
        Ok(p)
    }

    /// `#t` or `#f`.
    #[inline]
    pub fn boolean(&self, m: &mut Mutator, b: bool) -> Result<Local> {
        Ok(m.dup(if b { self.t } else { self.f })?)
    }

    /// A new handle to the unspecified value.
    pub fn unspecified(&self, m: &mut Mutator) -> Result<Local> {
        Ok(m.dup(self.unspec)?)
    }

    /// A new string with the given UTF-8 bytes.
    pub fn string(&self, m: &mut Mutator, bytes: &[u8]) -> Result<Local> {
        let s = m.alloc(&Layout::byte_array(tag::STRING, bytes.len())?)?;
        m.write_bytes(s, 0, bytes)?;
        Ok(s)
    }

    /// The character `c`.
    pub fn character(&self, m: &mut Mutator, c: char) -> Result<Local> {
        let v = m.alloc(&self.lay.chr)?;
        m.write_u64(v, 0, c as u64)?;
        Ok(v)
    }

    /// A new vector of `len` elements, all `fill`.
    pub fn vector(&self, m: &mut Mutator, len: usize, fill: Local) -> Result<Local> {
        let v = m.alloc(&Layout::ref_array(tag::VECTOR, len)?)?;
        for i in 0..len {
            m.set_ref(v, i, Some(fill))?;
        }
        Ok(v)
    }

    /// A closure of lambda `index` over `env`.
    pub fn closure(&self, m: &mut Mutator, index: u32, env: Local) -> Result<Local> {
        let c = m.alloc(&self.lay.closure)?;
        m.set_ref(c, 0, Some(env))?;
        m.write_u64(c, 0, index as u64)?;
        Ok(c)
    }

    /// A proper list of `items`.
    pub fn list(&self, m: &mut Mutator, items: &[Local]) -> Result<Local> {
        self.list_with_tail(m, items, self.nil)
    }

    /// `items` consed in front of `tail`.
    pub fn list_with_tail(&self, m: &mut Mutator, items: &[Local], tail: Local) -> Result<Local> {
        let acc = m.dup(tail)?;
        for &x in items.iter().rev() {
            m.scope(|m| -> Result<()> {
                let p = self.cons(m, x, acc)?;
                m.assign(acc, p)?;
                Ok(())
            })?;
        }
        Ok(acc)
    }

    // ----- accessors ---------------------------------------------------------

    /// Whether `v` is `#f` (the only false value).
    #[inline]
    pub fn is_false(&self, m: &mut Mutator, v: Local) -> Result<bool> {
        Ok(m.tag(v)? == tag::FALSE)
    }

    /// The car of a pair (no type check: `v` must be a pair).
    #[inline]
    pub fn car(&self, m: &mut Mutator, v: Local) -> Result<Local> {
        m.get_ref(v, 0)?.ok_or_else(|| internal("null car"))
    }

    /// The cdr of a pair (no type check: `v` must be a pair).
    #[inline]
    pub fn cdr(&self, m: &mut Mutator, v: Local) -> Result<Local> {
        m.get_ref(v, 1)?.ok_or_else(|| internal("null cdr"))
    }

    /// Makes the handle `cur` (a pair) name its cdr.
    #[inline]
    pub fn advance(&self, m: &mut Mutator, cur: Local) -> Result<()> {
        m.scope(|m| -> Result<()> {
            let d = self.cdr(m, cur)?;
            m.assign(cur, d)?;
            Ok(())
        })
    }

    /// The value of a fixnum, or a wrong-type error naming `who`.
    #[inline]
    pub fn int_value(&self, m: &mut Mutator, v: Local, who: &str) -> Result<i64> {
        if m.tag(v)? != tag::FIXNUM {
            return Err(self.wrong_type(m, who, "an integer", v));
        }
        Ok(m.read_u64(v, 0)? as i64)
    }

    /// A fixnum argument that must be a valid index (`0..`).
    pub fn index_value(&self, m: &mut Mutator, v: Local, who: &str) -> Result<i64> {
        let i = self.int_value(m, v, who)?;
        if i < 0 {
            return Err(self.wrong_type(m, who, "a non-negative integer", v));
        }
        Ok(i)
    }

    /// The character of a character value.
    pub fn char_value(&self, m: &mut Mutator, v: Local, who: &str) -> Result<char> {
        if m.tag(v)? != tag::CHAR {
            return Err(self.wrong_type(m, who, "a character", v));
        }
        char::from_u32(m.read_u64(v, 0)? as u32).ok_or_else(|| internal("bad character"))
    }

    /// The bytes of a string value.
    pub fn string_bytes(&self, m: &mut Mutator, v: Local, who: &str) -> Result<Vec<u8>> {
        if m.tag(v)? != tag::STRING {
            return Err(self.wrong_type(m, who, "a string", v));
        }
        Ok(m.with_bytes(v, <[u8]>::to_vec)?)
    }

    /// The elements of a proper list, as handles; `None` if `v` is not a
    /// proper list (improper or circular).
    pub fn list_items(&self, m: &mut Mutator, v: Local) -> Result<Option<Vec<Local>>> {
        let mut items = Vec::new();
        let mut spine = vec![v];
        let mut cur = v;
        loop {
            match m.tag(cur)? {
                tag::NIL => return Ok(Some(items)),
                tag::PAIR => {
                    items.push(self.car(m, cur)?);
                    cur = self.cdr(m, cur)?;
                    // A cycle brings `cur` back to the pair half as far in.
                    if m.same(cur, spine[spine.len() / 2])? {
                        return Ok(None);
                    }
                    spine.push(cur);
                }
                _ => return Ok(None),
            }
        }
    }

    /// `eqv?`: identity, or equal fixnums or characters.
    pub fn eqv(&self, m: &mut Mutator, a: Local, b: Local) -> Result<bool> {
        if m.same(a, b)? {
            return Ok(true);
        }
        let (ta, tb) = (m.tag(a)?, m.tag(b)?);
        Ok(ta == tb
            && matches!(ta, tag::FIXNUM | tag::CHAR)
            && m.read_u64(a, 0)? == m.read_u64(b, 0)?)
    }

    /// `equal?`: structural equality of pairs, vectors and strings, `eqv?`
    /// otherwise.
    pub fn equal(&self, m: &mut Mutator, a: Local, b: Local) -> Result<bool> {
        self.check_stack()?;
        m.scope(|m| {
            let (a, b) = (m.dup(a)?, m.dup(b)?);
            loop {
                if self.eqv(m, a, b)? {
                    return Ok(true);
                }
                let (ta, tb) = (m.tag(a)?, m.tag(b)?);
                if ta != tb {
                    return Ok(false);
                }
                match ta {
                    tag::STRING => {
                        let x = m.with_bytes(a, <[u8]>::to_vec)?;
                        return Ok(m.with_bytes(b, |y| x == y)?);
                    }
                    tag::VECTOR => {
                        let n = m.len(a)?;
                        if n != m.len(b)? {
                            return Ok(false);
                        }
                        for i in 0..n {
                            let same = m.scope(|m| -> Result<bool> {
                                let x = m.get_ref(a, i)?.ok_or_else(|| internal("null"))?;
                                let y = m.get_ref(b, i)?.ok_or_else(|| internal("null"))?;
                                self.equal(m, x, y)
                            })?;
                            if !same {
                                return Ok(false);
                            }
                        }
                        return Ok(true);
                    }
                    tag::PAIR => {
                        let same = m.scope(|m| -> Result<bool> {
                            let x = self.car(m, a)?;
                            let y = self.car(m, b)?;
                            self.equal(m, x, y)
                        })?;
                        if !same {
                            return Ok(false);
                        }
                        self.advance(m, a)?;
                        self.advance(m, b)?;
                    }
                    _ => return Ok(false),
                }
            }
        })
    }

    // ----- errors and printing -----------------------------------------------

    /// A wrong-type error for argument `v` of `who`.
    pub fn wrong_type(
        &self,
        m: &mut Mutator,
        who: &str,
        expected: &'static str,
        v: Local,
    ) -> SchemeError {
        SchemeError::WrongType {
            procedure: who.to_owned(),
            expected,
            got: self.show(m, v),
        }
    }

    /// `v` as `write` prints it, shortened to about 60 characters, for
    /// error messages.
    pub fn show(&self, m: &mut Mutator, v: Local) -> String {
        let mut s = String::new();
        if self.print(m, v, true, &mut s).is_err() {
            return "#<unprintable>".into();
        }
        shorten(s)
    }

    /// Appends `v` to `out`: `write` style (strings quoted, characters as
    /// `#\x`) if `write`, else `display` style.
    pub fn print(&self, m: &mut Mutator, v: Local, write: bool, out: &mut String) -> Result<()> {
        m.scope(|m| self.print_at(m, v, write, out))
    }

    fn print_at(&self, m: &mut Mutator, v: Local, write: bool, out: &mut String) -> Result<()> {
        use std::fmt::Write as _;
        self.check_stack()?;
        match m.tag(v)? {
            tag::NIL => out.push_str("()"),
            tag::TRUE => out.push_str("#t"),
            tag::FALSE => out.push_str("#f"),
            tag::UNSPEC => out.push_str("#<unspecified>"),
            tag::EOF => out.push_str("#<eof>"),
            tag::FIXNUM => {
                let _ = write!(out, "{}", m.read_u64(v, 0)? as i64);
            }
            tag::SYMBOL => {
                let name = self.name(self.symbol_id(m, v)?);
                if write && needs_bars(name) {
                    out.push('|');
                    for c in name.chars() {
                        if c == '|' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('|');
                } else {
                    out.push_str(name);
                }
            }
            tag::STRING => {
                let s = m.with_bytes(v, |b| String::from_utf8_lossy(b).into_owned())?;
                if write {
                    write_string_literal(&s, out);
                } else {
                    out.push_str(&s);
                }
            }
            tag::CHAR => {
                let c = self.char_value(m, v, "write")?;
                if write {
                    out.push_str("#\\");
                    match char_name(c) {
                        Some(name) => out.push_str(name),
                        None => out.push(c),
                    }
                } else {
                    out.push(c);
                }
            }
            tag::PAIR => {
                out.push('(');
                let cur = m.dup(v)?;
                // `slow` follows at half speed: meeting it means a cycle.
                let slow = m.dup(v)?;
                let mut step = 0usize;
                loop {
                    m.scope(|m| -> Result<()> {
                        let a = self.car(m, cur)?;
                        self.print_at(m, a, write, out)
                    })?;
                    self.advance(m, cur)?;
                    step += 1;
                    if step % 2 == 0 {
                        self.advance(m, slow)?;
                    }
                    match m.tag(cur)? {
                        tag::PAIR if m.same(cur, slow)? => {
                            out.push_str(" ...");
                            break;
                        }
                        tag::PAIR => out.push(' '),
                        tag::NIL => break,
                        _ => {
                            out.push_str(" . ");
                            self.print_at(m, cur, write, out)?;
                            break;
                        }
                    }
                }
                out.push(')');
            }
            tag::VECTOR => {
                out.push_str("#(");
                for i in 0..m.len(v)? {
                    if i > 0 {
                        out.push(' ');
                    }
                    m.scope(|m| -> Result<()> {
                        let x = m.get_ref(v, i)?.ok_or_else(|| internal("null element"))?;
                        self.print_at(m, x, write, out)
                    })?;
                }
                out.push(')');
            }
            tag::CLOSURE => {
                let i = m.read_u64(v, 0)? as usize;
                match self.lambdas.get(i).and_then(|l| l.name.as_deref()) {
                    Some(name) => {
                        let _ = write!(out, "#<procedure {name}>");
                    }
                    None => out.push_str("#<procedure>"),
                }
            }
            tag::PRIMITIVE => {
                let i = m.read_u64(v, 0)? as usize;
                let name = PRIMS.get(i).map_or("?", |p| p.name);
                let _ = write!(out, "#<procedure {name}>");
            }
            _ => out.push_str("#<object>"),
        }
        Ok(())
    }

    /// The name of the procedure `v` for error messages.
    pub fn procedure_name(&self, m: &mut Mutator, v: Local) -> String {
        let s = self.show(m, v);
        s.strip_prefix("#<procedure ")
            .and_then(|s| s.strip_suffix('>'))
            .map_or(s.clone(), str::to_owned)
    }
}

/// An internal inconsistency, reported as an error rather than a panic.
pub fn internal(what: &str) -> SchemeError {
    SchemeError::User(format!("internal interpreter error: {what}"))
}

/// Shortens a printed value for an error message.
pub fn shorten(mut s: String) -> String {
    const MAX: usize = 60;
    if s.chars().count() > MAX {
        s = s.chars().take(MAX).collect::<String>() + "...";
    }
    s
}

/// The `write` name of a character that has one (`space`, `newline`, ...).
pub fn char_name(c: char) -> Option<&'static str> {
    builtins::CHAR_NAMES
        .iter()
        .find(|(_, ch)| *ch == c)
        .map(|(n, _)| *n)
}

/// Whether `write` must print a symbol as `|name|` for the reader to read
/// it back as the same symbol.
fn needs_bars(name: &str) -> bool {
    name.is_empty()
        || name == "."
        || name.starts_with('#')
        || name
            .chars()
            .any(|c| c.is_whitespace() || "()[]\"';`,|".contains(c))
        || name
            .strip_prefix(['+', '-'])
            .unwrap_or(name)
            .starts_with(|c: char| c.is_ascii_digit())
}

fn write_string_literal(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
}
