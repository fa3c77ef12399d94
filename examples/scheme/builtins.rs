//! The primitive procedures (written in Rust) and the prelude (procedures
//! written in Scheme, such as `map` and `for-each`, that call procedures
//! back).
//!
//! A primitive gets its arguments as handles, already counted against its
//! arity, and returns its value as a new handle. Type errors, range errors,
//! division by zero and fixnum overflow are [`SchemeError`]s.

use movegc::{Local, Mutator};

use super::value::{internal, tag, Core};
use super::{Result, SchemeError};

/// A primitive's implementation.
pub type PrimFn = fn(&mut Core, &mut Mutator, &[Local]) -> Result<Local>;

/// A primitive procedure.
#[derive(Clone, Copy)]
pub struct Prim {
    /// Its global name.
    pub name: &'static str,
    /// Fewest arguments.
    pub min: usize,
    /// Most arguments (`None`: any number).
    pub max: Option<usize>,
    /// The implementation.
    pub f: PrimFn,
}

impl std::fmt::Debug for Prim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prim({})", self.name)
    }
}

/// Index of `apply` (handled by the evaluator, for proper tail calls).
pub const APPLY: usize = 0;
/// Index of `cons`.
pub const CONS: usize = 1;
/// Index of `list`.
pub const LIST: usize = 2;
/// Index of `append`.
pub const APPEND: usize = 3;
/// Index of `list->vector`.
pub const LIST_TO_VECTOR: usize = 4;

const fn p(name: &'static str, min: usize, max: Option<usize>, f: PrimFn) -> Prim {
    Prim { name, min, max, f }
}

const ANY: Option<usize> = None;
const ONE: Option<usize> = Some(1);
const TWO: Option<usize> = Some(2);
const THREE: Option<usize> = Some(3);

/// Every primitive, by index.
pub static PRIMS: &[Prim] = &[
    p("apply", 2, ANY, p_apply),
    p("cons", 2, TWO, p_cons),
    p("list", 0, ANY, p_list),
    p("append", 0, ANY, p_append),
    p("list->vector", 1, ONE, p_list_to_vector),
    // pairs and lists
    p("car", 1, ONE, |c, m, a| cxr(c, m, a[0], "a", "car")),
    p("cdr", 1, ONE, |c, m, a| cxr(c, m, a[0], "d", "cdr")),
    p("caar", 1, ONE, |c, m, a| cxr(c, m, a[0], "aa", "caar")),
    p("cadr", 1, ONE, |c, m, a| cxr(c, m, a[0], "da", "cadr")),
    p("cdar", 1, ONE, |c, m, a| cxr(c, m, a[0], "ad", "cdar")),
    p("cddr", 1, ONE, |c, m, a| cxr(c, m, a[0], "dd", "cddr")),
    p("caddr", 1, ONE, |c, m, a| cxr(c, m, a[0], "dda", "caddr")),
    p("cdddr", 1, ONE, |c, m, a| cxr(c, m, a[0], "ddd", "cdddr")),
    p("cadddr", 1, ONE, |c, m, a| {
        cxr(c, m, a[0], "ddda", "cadddr")
    }),
    p("set-car!", 2, TWO, |c, m, a| {
        set_cxr(c, m, a, 0, "set-car!")
    }),
    p("set-cdr!", 2, TWO, |c, m, a| {
        set_cxr(c, m, a, 1, "set-cdr!")
    }),
    p("null?", 1, ONE, |c, m, a| is_tag(c, m, a[0], tag::NIL)),
    p("pair?", 1, ONE, |c, m, a| is_tag(c, m, a[0], tag::PAIR)),
    p("list?", 1, ONE, p_is_list),
    p("length", 1, ONE, p_length),
    p("reverse", 1, ONE, p_reverse),
    p("list-tail", 2, TWO, |c, m, a| {
        list_tail(c, m, a, "list-tail")
    }),
    p("list-ref", 2, TWO, p_list_ref),
    p("list-copy", 1, ONE, |c, m, a| {
        append_lists(c, m, &[a[0], c.nil], "list-copy")
    }),
    p("last-pair", 1, ONE, p_last_pair),
    p("memq", 2, TWO, |c, m, a| member(c, m, a, Eq::Eqv, "memq")),
    p("memv", 2, TWO, |c, m, a| member(c, m, a, Eq::Eqv, "memv")),
    p("member", 2, TWO, |c, m, a| {
        member(c, m, a, Eq::Equal, "member")
    }),
    p("assq", 2, TWO, |c, m, a| assoc(c, m, a, Eq::Eqv, "assq")),
    p("assv", 2, TWO, |c, m, a| assoc(c, m, a, Eq::Eqv, "assv")),
    p("assoc", 2, TWO, |c, m, a| {
        assoc(c, m, a, Eq::Equal, "assoc")
    }),
    // numbers
    p("+", 0, ANY, p_add),
    p("-", 1, ANY, p_sub),
    p("*", 0, ANY, p_mul),
    p("quotient", 2, TWO, |c, m, a| divide(c, m, a, "quotient")),
    p("remainder", 2, TWO, |c, m, a| divide(c, m, a, "remainder")),
    p("modulo", 2, TWO, |c, m, a| divide(c, m, a, "modulo")),
    p("=", 1, ANY, |c, m, a| compare(c, m, a, "=", |x, y| x == y)),
    p("<", 1, ANY, |c, m, a| compare(c, m, a, "<", |x, y| x < y)),
    p(">", 1, ANY, |c, m, a| compare(c, m, a, ">", |x, y| x > y)),
    p("<=", 1, ANY, |c, m, a| {
        compare(c, m, a, "<=", |x, y| x <= y)
    }),
    p(">=", 1, ANY, |c, m, a| {
        compare(c, m, a, ">=", |x, y| x >= y)
    }),
    p("abs", 1, ONE, |c, m, a| {
        let x = c.int_value(m, a[0], "abs")?;
        c.int(m, x.checked_abs().ok_or(SchemeError::Overflow("abs"))?)
    }),
    p("min", 1, ANY, |c, m, a| fold_ints(c, m, a, "min", i64::min)),
    p("max", 1, ANY, |c, m, a| fold_ints(c, m, a, "max", i64::max)),
    p("gcd", 0, ANY, |c, m, a| gcd_lcm(c, m, a, "gcd")),
    p("lcm", 0, ANY, |c, m, a| gcd_lcm(c, m, a, "lcm")),
    p("expt", 2, TWO, p_expt),
    p("square", 1, ONE, |c, m, a| {
        let x = c.int_value(m, a[0], "square")?;
        c.int(m, x.checked_mul(x).ok_or(SchemeError::Overflow("square"))?)
    }),
    p("zero?", 1, ONE, |c, m, a| {
        int_test(c, m, a[0], "zero?", |x| x == 0)
    }),
    p("positive?", 1, ONE, |c, m, a| {
        int_test(c, m, a[0], "positive?", |x| x > 0)
    }),
    p("negative?", 1, ONE, |c, m, a| {
        int_test(c, m, a[0], "negative?", |x| x < 0)
    }),
    p("odd?", 1, ONE, |c, m, a| {
        int_test(c, m, a[0], "odd?", |x| x % 2 != 0)
    }),
    p("even?", 1, ONE, |c, m, a| {
        int_test(c, m, a[0], "even?", |x| x % 2 == 0)
    }),
    p("number?", 1, ONE, |c, m, a| is_tag(c, m, a[0], tag::FIXNUM)),
    p("integer?", 1, ONE, |c, m, a| {
        is_tag(c, m, a[0], tag::FIXNUM)
    }),
    p("exact?", 1, ONE, |c, m, a| {
        c.int_value(m, a[0], "exact?")?;
        c.boolean(m, true)
    }),
    p("exact-integer?", 1, ONE, |c, m, a| {
        is_tag(c, m, a[0], tag::FIXNUM)
    }),
    p("number->string", 1, TWO, p_number_to_string),
    p("string->number", 1, TWO, p_string_to_number),
    // equivalence and types
    p("eq?", 2, TWO, |c, m, a| {
        let b = c.eqv(m, a[0], a[1])?;
        c.boolean(m, b)
    }),
    p("eqv?", 2, TWO, |c, m, a| {
        let b = c.eqv(m, a[0], a[1])?;
        c.boolean(m, b)
    }),
    p("equal?", 2, TWO, |c, m, a| {
        let b = c.equal(m, a[0], a[1])?;
        c.boolean(m, b)
    }),
    p("not", 1, ONE, |c, m, a| is_tag(c, m, a[0], tag::FALSE)),
    p("boolean?", 1, ONE, |c, m, a| {
        let t = m.tag(a[0])?;
        c.boolean(m, t == tag::TRUE || t == tag::FALSE)
    }),
    p("symbol?", 1, ONE, |c, m, a| is_tag(c, m, a[0], tag::SYMBOL)),
    p("string?", 1, ONE, |c, m, a| is_tag(c, m, a[0], tag::STRING)),
    p("char?", 1, ONE, |c, m, a| is_tag(c, m, a[0], tag::CHAR)),
    p("vector?", 1, ONE, |c, m, a| is_tag(c, m, a[0], tag::VECTOR)),
    p("procedure?", 1, ONE, |c, m, a| {
        let t = m.tag(a[0])?;
        c.boolean(m, t == tag::CLOSURE || t == tag::PRIMITIVE)
    }),
    // symbols, characters, strings
    p("symbol->string", 1, ONE, |c, m, a| {
        if m.tag(a[0])? != tag::SYMBOL {
            return Err(c.wrong_type(m, "symbol->string", "a symbol", a[0]));
        }
        let id = c.symbol_id(m, a[0])?;
        let name = c.name(id).to_owned();
        c.string(m, name.as_bytes())
    }),
    p("string->symbol", 1, ONE, |c, m, a| {
        let s = text(c, m, a[0], "string->symbol")?;
        c.intern(m, &s)
    }),
    p("char->integer", 1, ONE, |c, m, a| {
        let ch = c.char_value(m, a[0], "char->integer")?;
        c.int(m, ch as i64)
    }),
    p("integer->char", 1, ONE, |c, m, a| {
        let n = c.int_value(m, a[0], "integer->char")?;
        match u32::try_from(n).ok().and_then(char::from_u32) {
            Some(ch) => c.character(m, ch),
            None => Err(c.wrong_type(m, "integer->char", "a Unicode scalar value", a[0])),
        }
    }),
    p("char=?", 1, ANY, |c, m, a| {
        char_compare(c, m, a, "char=?", |x, y| x == y)
    }),
    p("char<?", 1, ANY, |c, m, a| {
        char_compare(c, m, a, "char<?", |x, y| x < y)
    }),
    p("char>?", 1, ANY, |c, m, a| {
        char_compare(c, m, a, "char>?", |x, y| x > y)
    }),
    p("char-upcase", 1, ONE, |c, m, a| {
        let ch = c.char_value(m, a[0], "char-upcase")?;
        c.character(m, ch.to_uppercase().next().unwrap_or(ch))
    }),
    p("char-downcase", 1, ONE, |c, m, a| {
        let ch = c.char_value(m, a[0], "char-downcase")?;
        c.character(m, ch.to_lowercase().next().unwrap_or(ch))
    }),
    p("char-alphabetic?", 1, ONE, |c, m, a| {
        let ch = c.char_value(m, a[0], "char-alphabetic?")?;
        c.boolean(m, ch.is_alphabetic())
    }),
    p("char-numeric?", 1, ONE, |c, m, a| {
        let ch = c.char_value(m, a[0], "char-numeric?")?;
        c.boolean(m, ch.is_numeric())
    }),
    p("char-whitespace?", 1, ONE, |c, m, a| {
        let ch = c.char_value(m, a[0], "char-whitespace?")?;
        c.boolean(m, ch.is_whitespace())
    }),
    p("string-length", 1, ONE, |c, m, a| {
        let s = text(c, m, a[0], "string-length")?;
        c.int(m, s.chars().count() as i64)
    }),
    p("string-ref", 2, TWO, p_string_ref),
    p("substring", 2, THREE, p_substring),
    p("string-append", 0, ANY, |c, m, a| {
        let mut out = Vec::new();
        for &s in a {
            out.extend(c.string_bytes(m, s, "string-append")?);
        }
        c.string(m, &out)
    }),
    p("string-copy", 1, ONE, |c, m, a| {
        let s = c.string_bytes(m, a[0], "string-copy")?;
        c.string(m, &s)
    }),
    p("string=?", 1, ANY, |c, m, a| {
        string_compare(c, m, a, "string=?", |x, y| x == y)
    }),
    p("string<?", 1, ANY, |c, m, a| {
        string_compare(c, m, a, "string<?", |x, y| x < y)
    }),
    p("string>?", 1, ANY, |c, m, a| {
        string_compare(c, m, a, "string>?", |x, y| x > y)
    }),
    p("string->list", 1, ONE, |c, m, a| {
        let s = text(c, m, a[0], "string->list")?;
        let chars = s
            .chars()
            .map(|ch| c.character(m, ch))
            .collect::<Result<Vec<_>>>()?;
        c.list(m, &chars)
    }),
    p("list->string", 1, ONE, |c, m, a| {
        let items = c
            .list_items(m, a[0])?
            .ok_or_else(|| c.wrong_type(m, "list->string", "a list of characters", a[0]))?;
        chars_to_string(c, m, &items, "list->string")
    }),
    p("string", 0, ANY, |c, m, a| {
        chars_to_string(c, m, a, "string")
    }),
    p("make-string", 1, TWO, |c, m, a| {
        let n = c.index_value(m, a[0], "make-string")?;
        let ch = match a.get(1) {
            Some(&x) => c.char_value(m, x, "make-string")?,
            None => ' ',
        };
        let s: String = std::iter::repeat_n(ch, n as usize).collect();
        c.string(m, s.as_bytes())
    }),
    // vectors
    p("make-vector", 1, TWO, |c, m, a| {
        let n = c.index_value(m, a[0], "make-vector")?;
        let fill = match a.get(1) {
            Some(&x) => x,
            None => c.int(m, 0)?,
        };
        c.vector(m, n as usize, fill)
    }),
    p("vector", 0, ANY, |c, m, a| {
        let v = c.vector(m, a.len(), c.nil)?;
        for (i, &x) in a.iter().enumerate() {
            m.set_ref(v, i, Some(x))?;
        }
        Ok(v)
    }),
    p("vector-length", 1, ONE, |c, m, a| {
        check_tag(c, m, a[0], tag::VECTOR, "vector-length", "a vector")?;
        let n = m.len(a[0])?;
        c.int(m, n as i64)
    }),
    p("vector-ref", 2, TWO, |c, m, a| {
        let i = vector_index(c, m, a, "vector-ref")?;
        m.get_ref(a[0], i)?.ok_or_else(|| internal("null element"))
    }),
    p("vector-set!", 3, THREE, |c, m, a| {
        let i = vector_index(c, m, a, "vector-set!")?;
        m.set_ref(a[0], i, Some(a[2]))?;
        c.unspecified(m)
    }),
    p("vector->list", 1, ONE, |c, m, a| {
        check_tag(c, m, a[0], tag::VECTOR, "vector->list", "a vector")?;
        let acc = m.dup(c.nil)?;
        for i in (0..m.len(a[0])?).rev() {
            m.scope(|m| -> Result<()> {
                let x = m
                    .get_ref(a[0], i)?
                    .ok_or_else(|| internal("null element"))?;
                let p = c.cons(m, x, acc)?;
                m.assign(acc, p)?;
                Ok(())
            })?;
        }
        Ok(acc)
    }),
    p("vector-fill!", 2, TWO, |c, m, a| {
        check_tag(c, m, a[0], tag::VECTOR, "vector-fill!", "a vector")?;
        for i in 0..m.len(a[0])? {
            m.set_ref(a[0], i, Some(a[1]))?;
        }
        c.unspecified(m)
    }),
    p("vector-copy", 1, ONE, |c, m, a| {
        check_tag(c, m, a[0], tag::VECTOR, "vector-copy", "a vector")?;
        let n = m.len(a[0])?;
        let v = c.vector(m, n, c.nil)?;
        for i in 0..n {
            m.scope(|m| -> Result<()> {
                let x = m
                    .get_ref(a[0], i)?
                    .ok_or_else(|| internal("null element"))?;
                m.set_ref(v, i, Some(x))?;
                Ok(())
            })?;
        }
        Ok(v)
    }),
    // output
    p("display", 1, TWO, |c, m, a| output(c, m, a[0], false)),
    p("write", 1, TWO, |c, m, a| output(c, m, a[0], true)),
    p("newline", 0, ONE, |c, m, _| {
        c.emit("\n")?;
        c.unspecified(m)
    }),
    p("write-char", 1, TWO, |c, m, a| {
        let ch = c.char_value(m, a[0], "write-char")?;
        c.emit(ch.encode_utf8(&mut [0; 4]))?;
        c.unspecified(m)
    }),
    p("write-string", 1, TWO, |c, m, a| {
        let s = text(c, m, a[0], "write-string")?;
        c.emit(&s)?;
        c.unspecified(m)
    }),
    p("current-output-port", 0, Some(0), |c, m, _| {
        c.unspecified(m)
    }),
    // control
    p("error", 0, ANY, p_error),
    p("eof-object", 0, Some(0), |c, m, _| Ok(m.dup(c.eof)?)),
    p("eof-object?", 1, ONE, |c, m, a| {
        is_tag(c, m, a[0], tag::EOF)
    }),
];

/// The index of the primitive called `name`.
pub fn prim_index(name: &str) -> Option<usize> {
    PRIMS.iter().position(|p| p.name == name)
}

/// Character names for `#\name` (reader) and `write` (printer).
pub const CHAR_NAMES: &[(&str, char)] = &[
    ("space", ' '),
    ("newline", '\n'),
    ("tab", '\t'),
    ("return", '\r'),
    ("null", '\0'),
    ("alarm", '\x07'),
    ("backspace", '\x08'),
    ("delete", '\x7f'),
    ("escape", '\x1b'),
];

/// Procedures defined in Scheme, evaluated when an interpreter starts.
pub const PRELUDE: &str = r#"
(define (%all-pairs? ls)
  (or (null? ls) (and (pair? (car ls)) (%all-pairs? (cdr ls)))))
(define (%cars ls) (if (null? ls) '() (cons (caar ls) (%cars (cdr ls)))))
(define (%cdrs ls) (if (null? ls) '() (cons (cdar ls) (%cdrs (cdr ls)))))
(define (map f l . ls)
  (if (null? ls)
      (let loop ((l l) (acc '()))
        (if (pair? l)
            (loop (cdr l) (cons (f (car l)) acc))
            (reverse acc)))
      (let loop ((ls (cons l ls)) (acc '()))
        (if (%all-pairs? ls)
            (loop (%cdrs ls) (cons (apply f (%cars ls)) acc))
            (reverse acc)))))
(define (for-each f l . ls)
  (if (null? ls)
      (let loop ((l l))
        (if (pair? l) (begin (f (car l)) (loop (cdr l)))))
      (let loop ((ls (cons l ls)))
        (if (%all-pairs? ls) (begin (apply f (%cars ls)) (loop (%cdrs ls)))))))
(define (vector-map f v) (list->vector (map f (vector->list v))))
(define (vector-for-each f v) (for-each f (vector->list v)))
(define (string-map f s) (list->string (map f (string->list s))))
(define (string-for-each f s) (for-each f (string->list s)))
(define (filter keep? l)
  (let loop ((l l) (acc '()))
    (cond ((null? l) (reverse acc))
          ((keep? (car l)) (loop (cdr l) (cons (car l) acc)))
          (else (loop (cdr l) acc)))))
(define (fold-left f acc l)
  (if (null? l) acc (fold-left f (f acc (car l)) (cdr l))))
(define (fold-right f acc l)
  (let loop ((l (reverse l)) (acc acc))
    (if (null? l) acc (loop (cdr l) (f (car l) acc)))))
"#;

// ----- helpers ---------------------------------------------------------------

fn is_tag(c: &mut Core, m: &mut Mutator, v: Local, t: u16) -> Result<Local> {
    let b = m.tag(v)? == t;
    c.boolean(m, b)
}

fn check_tag(
    c: &Core,
    m: &mut Mutator,
    v: Local,
    t: u16,
    who: &str,
    expected: &'static str,
) -> Result<()> {
    if m.tag(v)? != t {
        return Err(c.wrong_type(m, who, expected, v));
    }
    Ok(())
}

/// A string argument as Rust text.
fn text(c: &Core, m: &mut Mutator, v: Local, who: &str) -> Result<String> {
    let b = c.string_bytes(m, v, who)?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// `c[ad]+r`: `path` lists the steps in the order they are taken.
fn cxr(c: &mut Core, m: &mut Mutator, v: Local, path: &str, who: &str) -> Result<Local> {
    let mut cur = v;
    for step in path.bytes() {
        if m.tag(cur)? != tag::PAIR {
            return Err(c.wrong_type(m, who, "a pair", v));
        }
        cur = if step == b'a' {
            c.car(m, cur)?
        } else {
            c.cdr(m, cur)?
        };
    }
    Ok(cur)
}

fn set_cxr(c: &mut Core, m: &mut Mutator, a: &[Local], field: usize, who: &str) -> Result<Local> {
    check_tag(c, m, a[0], tag::PAIR, who, "a pair")?;
    m.set_ref(a[0], field, Some(a[1]))?;
    c.unspecified(m)
}

fn p_apply(_: &mut Core, _: &mut Mutator, _: &[Local]) -> Result<Local> {
    Err(internal("apply is handled by the evaluator"))
}

fn p_cons(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    c.cons(m, a[0], a[1])
}

fn p_list(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    c.list(m, a)
}

fn p_append(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    if a.is_empty() {
        return Ok(m.dup(c.nil)?);
    }
    append_lists(c, m, a, "append")
}

/// Copies every list of `a` but the last, which becomes the shared tail.
fn append_lists(c: &mut Core, m: &mut Mutator, a: &[Local], who: &str) -> Result<Local> {
    let (&last, init) = a.split_last().ok_or_else(|| internal("append"))?;
    // A dummy head pair; `tail` is the last pair of the result so far.
    let head = c.cons(m, c.nil, c.nil)?;
    let tail = m.dup(head)?;
    for &l in init {
        let cur = m.dup(l)?;
        loop {
            match m.tag(cur)? {
                tag::NIL => break,
                tag::PAIR => {}
                _ => return Err(c.wrong_type(m, who, "a proper list", l)),
            }
            m.scope(|m| -> Result<()> {
                let x = c.car(m, cur)?;
                let p = c.cons(m, x, c.nil)?;
                m.set_ref(tail, 1, Some(p))?;
                m.assign(tail, p)?;
                Ok(())
            })?;
            c.advance(m, cur)?;
        }
    }
    m.set_ref(tail, 1, Some(last))?;
    c.cdr(m, head)
}

fn p_list_to_vector(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let n = proper_length(c, m, a[0], "list->vector")?;
    let v = c.vector(m, n, c.nil)?;
    let cur = m.dup(a[0])?;
    for i in 0..n {
        m.scope(|m| -> Result<()> {
            let x = c.car(m, cur)?;
            m.set_ref(v, i, Some(x))?;
            Ok(())
        })?;
        c.advance(m, cur)?;
    }
    Ok(v)
}

/// The length of a proper list; `None` if it is improper or circular.
fn list_length(c: &Core, m: &mut Mutator, l: Local) -> Result<Option<usize>> {
    let cur = m.dup(l)?;
    // `slow` follows at half speed: meeting it means a cycle.
    let slow = m.dup(l)?;
    let mut n = 0;
    loop {
        match m.tag(cur)? {
            tag::NIL => return Ok(Some(n)),
            tag::PAIR => {
                n += 1;
                c.advance(m, cur)?;
                if n % 2 == 0 {
                    c.advance(m, slow)?;
                    if m.same(cur, slow)? {
                        return Ok(None);
                    }
                }
            }
            _ => return Ok(None),
        }
    }
}

/// The length of a proper list, or a wrong-type error.
fn proper_length(c: &Core, m: &mut Mutator, l: Local, who: &str) -> Result<usize> {
    list_length(c, m, l)?.ok_or_else(|| c.wrong_type(m, who, "a proper list", l))
}

fn p_length(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let n = proper_length(c, m, a[0], "length")?;
    c.int(m, n as i64)
}

fn p_is_list(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let proper = list_length(c, m, a[0])?.is_some();
    c.boolean(m, proper)
}

fn p_reverse(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let acc = m.dup(c.nil)?;
    let cur = m.dup(a[0])?;
    loop {
        match m.tag(cur)? {
            tag::NIL => return Ok(acc),
            tag::PAIR => {}
            _ => return Err(c.wrong_type(m, "reverse", "a proper list", a[0])),
        }
        m.scope(|m| -> Result<()> {
            let x = c.car(m, cur)?;
            let p = c.cons(m, x, acc)?;
            m.assign(acc, p)?;
            Ok(())
        })?;
        c.advance(m, cur)?;
    }
}

fn list_tail(c: &mut Core, m: &mut Mutator, a: &[Local], who: &str) -> Result<Local> {
    let k = c.index_value(m, a[1], who)?;
    let cur = m.dup(a[0])?;
    for i in 0..k {
        if m.tag(cur)? != tag::PAIR {
            return Err(SchemeError::Range {
                procedure: who.to_owned(),
                index: k,
                len: i as usize,
            });
        }
        c.advance(m, cur)?;
    }
    Ok(cur)
}

fn p_list_ref(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let t = list_tail(c, m, a, "list-ref")?;
    if m.tag(t)? != tag::PAIR {
        let k = c.int_value(m, a[1], "list-ref")?;
        return Err(SchemeError::Range {
            procedure: "list-ref".into(),
            index: k,
            len: k as usize,
        });
    }
    c.car(m, t)
}

fn p_last_pair(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    check_tag(c, m, a[0], tag::PAIR, "last-pair", "a pair")?;
    let cur = m.dup(a[0])?;
    loop {
        let more = m.scope(|m| -> Result<bool> {
            let d = c.cdr(m, cur)?;
            Ok(m.tag(d)? == tag::PAIR)
        })?;
        if !more {
            return Ok(cur);
        }
        c.advance(m, cur)?;
    }
}

#[derive(Clone, Copy)]
enum Eq {
    Eqv,
    Equal,
}

fn same(c: &Core, m: &mut Mutator, a: Local, b: Local, eq: Eq) -> Result<bool> {
    match eq {
        Eq::Eqv => c.eqv(m, a, b),
        Eq::Equal => c.equal(m, a, b),
    }
}

fn member(c: &mut Core, m: &mut Mutator, a: &[Local], eq: Eq, who: &str) -> Result<Local> {
    let cur = m.dup(a[1])?;
    loop {
        match m.tag(cur)? {
            tag::PAIR => {}
            tag::NIL => return c.boolean(m, false),
            _ => return Err(c.wrong_type(m, who, "a proper list", a[1])),
        }
        let hit = m.scope(|m| -> Result<bool> {
            let x = c.car(m, cur)?;
            same(c, m, a[0], x, eq)
        })?;
        if hit {
            return Ok(cur);
        }
        c.advance(m, cur)?;
    }
}

fn assoc(c: &mut Core, m: &mut Mutator, a: &[Local], eq: Eq, who: &str) -> Result<Local> {
    let cur = m.dup(a[1])?;
    loop {
        match m.tag(cur)? {
            tag::PAIR => {}
            tag::NIL => return c.boolean(m, false),
            _ => return Err(c.wrong_type(m, who, "an association list", a[1])),
        }
        let entry = c.car(m, cur)?;
        if m.tag(entry)? != tag::PAIR {
            return Err(c.wrong_type(m, who, "an association list", a[1]));
        }
        let hit = m.scope(|m| -> Result<bool> {
            let k = c.car(m, entry)?;
            same(c, m, a[0], k, eq)
        })?;
        if hit {
            return Ok(entry);
        }
        c.advance(m, cur)?;
    }
}

// ----- numbers -----------------------------------------------------------------

fn p_add(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let mut acc: i64 = 0;
    for &x in a {
        let v = c.int_value(m, x, "+")?;
        acc = acc.checked_add(v).ok_or(SchemeError::Overflow("+"))?;
    }
    c.int(m, acc)
}

fn p_sub(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let first = c.int_value(m, a[0], "-")?;
    if a.len() == 1 {
        return c.int(m, first.checked_neg().ok_or(SchemeError::Overflow("-"))?);
    }
    let mut acc = first;
    for &x in &a[1..] {
        let v = c.int_value(m, x, "-")?;
        acc = acc.checked_sub(v).ok_or(SchemeError::Overflow("-"))?;
    }
    c.int(m, acc)
}

fn p_mul(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let mut acc: i64 = 1;
    for &x in a {
        let v = c.int_value(m, x, "*")?;
        acc = acc.checked_mul(v).ok_or(SchemeError::Overflow("*"))?;
    }
    c.int(m, acc)
}

fn divide(c: &mut Core, m: &mut Mutator, a: &[Local], who: &'static str) -> Result<Local> {
    let x = c.int_value(m, a[0], who)?;
    let y = c.int_value(m, a[1], who)?;
    if y == 0 {
        return Err(SchemeError::DivisionByZero(who));
    }
    let r = match who {
        "quotient" => x.checked_div(y).ok_or(SchemeError::Overflow(who))?,
        "remainder" => x.checked_rem(y).unwrap_or(0),
        _ => {
            let r = x.checked_rem(y).unwrap_or(0);
            if r != 0 && (r < 0) != (y < 0) {
                r + y
            } else {
                r
            }
        }
    };
    c.int(m, r)
}

fn compare(
    c: &mut Core,
    m: &mut Mutator,
    a: &[Local],
    who: &str,
    op: fn(i64, i64) -> bool,
) -> Result<Local> {
    let mut prev = c.int_value(m, a[0], who)?;
    let mut ok = true;
    for &x in &a[1..] {
        let v = c.int_value(m, x, who)?;
        ok &= op(prev, v);
        prev = v;
    }
    c.boolean(m, ok)
}

fn fold_ints(
    c: &mut Core,
    m: &mut Mutator,
    a: &[Local],
    who: &str,
    op: fn(i64, i64) -> i64,
) -> Result<Local> {
    let mut acc = c.int_value(m, a[0], who)?;
    for &x in &a[1..] {
        let v = c.int_value(m, x, who)?;
        acc = op(acc, v);
    }
    c.int(m, acc)
}

fn gcd(a: i64, b: i64) -> i64 {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a as i64
}

fn gcd_lcm(c: &mut Core, m: &mut Mutator, a: &[Local], who: &'static str) -> Result<Local> {
    let mut acc: i64 = if who == "gcd" { 0 } else { 1 };
    for &x in a {
        let v = c.int_value(m, x, who)?;
        acc = if who == "gcd" {
            gcd(acc, v)
        } else if v == 0 || acc == 0 {
            0
        } else {
            (acc / gcd(acc, v))
                .checked_mul(v)
                .map(i64::abs)
                .ok_or(SchemeError::Overflow(who))?
        };
    }
    c.int(m, acc)
}

fn p_expt(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let base = c.int_value(m, a[0], "expt")?;
    let e = c.int_value(m, a[1], "expt")?;
    if e < 0 {
        return Err(c.wrong_type(m, "expt", "a non-negative exponent", a[1]));
    }
    let r = match base {
        0 | 1 => {
            if e == 0 {
                1
            } else {
                base
            }
        }
        -1 => {
            if e % 2 == 0 {
                1
            } else {
                -1
            }
        }
        _ => u32::try_from(e)
            .ok()
            .and_then(|e| base.checked_pow(e))
            .ok_or(SchemeError::Overflow("expt"))?,
    };
    c.int(m, r)
}

fn int_test(
    c: &mut Core,
    m: &mut Mutator,
    v: Local,
    who: &str,
    test: fn(i64) -> bool,
) -> Result<Local> {
    let x = c.int_value(m, v, who)?;
    c.boolean(m, test(x))
}

fn radix(c: &Core, m: &mut Mutator, a: &[Local], who: &str) -> Result<u32> {
    match a.get(1) {
        None => Ok(10),
        Some(&r) => match c.int_value(m, r, who)? {
            2 => Ok(2),
            8 => Ok(8),
            10 => Ok(10),
            16 => Ok(16),
            _ => Err(c.wrong_type(m, who, "a radix of 2, 8, 10 or 16", r)),
        },
    }
}

fn p_number_to_string(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let n = c.int_value(m, a[0], "number->string")?;
    let r = radix(c, m, a, "number->string")?;
    let s = match r {
        2 => format_radix(n, 2),
        8 => format_radix(n, 8),
        16 => format_radix(n, 16),
        _ => n.to_string(),
    };
    c.string(m, s.as_bytes())
}

fn format_radix(n: i64, r: u64) -> String {
    let mut digits = Vec::new();
    let mut u = n.unsigned_abs();
    loop {
        digits.push(b"0123456789abcdef"[(u % r) as usize]);
        u /= r;
        if u == 0 {
            break;
        }
    }
    if n < 0 {
        digits.push(b'-');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

fn p_string_to_number(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let s = text(c, m, a[0], "string->number")?;
    let r = radix(c, m, a, "string->number")?;
    match i64::from_str_radix(&s, r) {
        Ok(n) if !s.starts_with('+') || s.len() > 1 => c.int(m, n),
        _ => c.boolean(m, false),
    }
}

// ----- characters and strings ----------------------------------------------------

fn char_compare(
    c: &mut Core,
    m: &mut Mutator,
    a: &[Local],
    who: &str,
    op: fn(char, char) -> bool,
) -> Result<Local> {
    let mut prev = c.char_value(m, a[0], who)?;
    let mut ok = true;
    for &x in &a[1..] {
        let v = c.char_value(m, x, who)?;
        ok &= op(prev, v);
        prev = v;
    }
    c.boolean(m, ok)
}

fn string_compare(
    c: &mut Core,
    m: &mut Mutator,
    a: &[Local],
    who: &str,
    op: fn(&[u8], &[u8]) -> bool,
) -> Result<Local> {
    let mut prev = c.string_bytes(m, a[0], who)?;
    let mut ok = true;
    for &x in &a[1..] {
        let v = c.string_bytes(m, x, who)?;
        ok &= op(&prev, &v);
        prev = v;
    }
    c.boolean(m, ok)
}

fn chars_to_string(c: &mut Core, m: &mut Mutator, items: &[Local], who: &str) -> Result<Local> {
    let mut s = String::new();
    for &x in items {
        s.push(c.char_value(m, x, who)?);
    }
    c.string(m, s.as_bytes())
}

fn p_string_ref(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let s = text(c, m, a[0], "string-ref")?;
    let k = c.index_value(m, a[1], "string-ref")?;
    match s.chars().nth(k as usize) {
        Some(ch) => c.character(m, ch),
        None => Err(SchemeError::Range {
            procedure: "string-ref".into(),
            index: k,
            len: s.chars().count(),
        }),
    }
}

fn p_substring(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let s = text(c, m, a[0], "substring")?;
    let chars: Vec<char> = s.chars().collect();
    let start = c.index_value(m, a[1], "substring")?;
    let end = match a.get(2) {
        Some(&e) => c.index_value(m, e, "substring")?,
        None => chars.len() as i64,
    };
    for k in [start, end] {
        if k as usize > chars.len() || start > end {
            return Err(SchemeError::Range {
                procedure: "substring".into(),
                index: k,
                len: chars.len(),
            });
        }
    }
    let sub: String = chars[start as usize..end as usize].iter().collect();
    c.string(m, sub.as_bytes())
}

fn vector_index(c: &Core, m: &mut Mutator, a: &[Local], who: &str) -> Result<usize> {
    check_tag(c, m, a[0], tag::VECTOR, who, "a vector")?;
    let i = c.int_value(m, a[1], who)?;
    let n = m.len(a[0])?;
    if i < 0 || i as usize >= n {
        return Err(SchemeError::Range {
            procedure: who.to_owned(),
            index: i,
            len: n,
        });
    }
    Ok(i as usize)
}

// ----- output and errors -----------------------------------------------------------

fn output(c: &mut Core, m: &mut Mutator, v: Local, write: bool) -> Result<Local> {
    let mut s = String::new();
    c.print(m, v, write, &mut s)?;
    c.emit(&s)?;
    c.unspecified(m)
}

fn p_error(c: &mut Core, m: &mut Mutator, a: &[Local]) -> Result<Local> {
    let mut msg = String::new();
    for (i, &x) in a.iter().enumerate() {
        if i > 0 {
            msg.push(' ');
        }
        // The message is displayed, the irritants written.
        let write = i > 0 || m.tag(x)? != tag::STRING;
        c.print(m, x, write, &mut msg)?;
    }
    Err(SchemeError::User(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_indices_name_the_right_primitives() {
        assert_eq!(PRIMS[APPLY].name, "apply");
        assert_eq!(PRIMS[CONS].name, "cons");
        assert_eq!(PRIMS[LIST].name, "list");
        assert_eq!(PRIMS[APPEND].name, "append");
        assert_eq!(PRIMS[LIST_TO_VECTOR].name, "list->vector");
        for (i, p) in PRIMS.iter().enumerate() {
            assert_eq!(
                prim_index(p.name),
                Some(i),
                "duplicate primitive {}",
                p.name
            );
        }
    }

    #[test]
    fn radix_formatting() {
        assert_eq!(format_radix(255, 16), "ff");
        assert_eq!(format_radix(-5, 2), "-101");
        assert_eq!(format_radix(0, 8), "0");
        assert_eq!(format_radix(i64::MIN, 16), "-8000000000000000");
    }
}
