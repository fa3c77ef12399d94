//! The reader: Scheme source text to heap data.
//!
//! Supports lists (with `(...)` or `[...]`), dotted pairs, vectors `#(...)`,
//! fixnums, strings with the R7RS escapes, characters (`#\a`, `#\space`,
//! `#\x41`), booleans (`#t`, `#f`, `#true`, `#false`), symbols (including
//! `|...|`), the abbreviations `'` `` ` `` `,` `,@`, and line (`;`), block
//! (`#| ... |#`) and datum (`#;`) comments. Floating-point numbers are
//! rejected with a clear error: the interpreter has fixnums only.

use movegc::{Local, Mutator};

use super::builtins::CHAR_NAMES;
use super::value::Core;
use super::{Result, SchemeError};

/// A cursor over source text.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    src: &'a str,
    pos: usize,
}

fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'(' | b')' | b'[' | b']' | b'"' | b';' | b'\''
    ) || b == b'`'
        || b == b','
}

impl<'a> Reader<'a> {
    /// A reader of `src` starting at byte offset `pos`.
    pub fn new(src: &'a str, pos: usize) -> Reader<'a> {
        Reader {
            src,
            pos: pos.min(src.len()),
        }
    }

    /// The byte offset of the next unread character.
    pub fn pos(&self) -> usize {
        self.pos
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.bytes().get(self.pos + k).copied()
    }

    fn error(&self, message: impl Into<String>) -> SchemeError {
        // Count bytes, not `str` slices: `pos` may be inside a multi-byte
        // character (slicing there would panic).
        let line = self.bytes()[..self.pos]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        SchemeError::Read {
            line,
            message: message.into(),
        }
    }

    /// Reads the next datum; `None` at the end of the source.
    pub fn read(&mut self, core: &mut Core, m: &mut Mutator) -> Result<Option<Local>> {
        self.skip_atmosphere(core, m)?;
        if self.peek().is_none() {
            return Ok(None);
        }
        self.datum(core, m).map(Some)
    }

    /// Skips whitespace and comments (a `#;` comment reads and drops a datum).
    ///
    /// Iterative, also for `#;` comments: `#; #; a b` drops both `a` and
    /// `b`, so each `#;` only counts one more datum to drop once the
    /// atmosphere ends; a run of 100 000 `#;` uses no stack.
    fn skip_atmosphere(&mut self, core: &mut Core, m: &mut Mutator) -> Result<()> {
        let mut datums_to_drop = 0usize;
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') => self.pos += 1,
                Some(b';') => {
                    while let Some(b) = self.peek() {
                        self.pos += 1;
                        if b == b'\n' {
                            break;
                        }
                    }
                }
                Some(b'#') if self.peek_at(1) == Some(b'|') => {
                    self.pos += 2;
                    let mut level = 1;
                    while level > 0 {
                        match (self.peek(), self.peek_at(1)) {
                            (None, _) => return Err(SchemeError::Incomplete),
                            (Some(b'|'), Some(b'#')) => {
                                level -= 1;
                                self.pos += 2;
                            }
                            (Some(b'#'), Some(b'|')) => {
                                level += 1;
                                self.pos += 2;
                            }
                            _ => self.pos += 1,
                        }
                    }
                }
                Some(b'#') if self.peek_at(1) == Some(b';') => {
                    self.pos += 2;
                    datums_to_drop += 1;
                }
                None if datums_to_drop > 0 => return Err(SchemeError::Incomplete),
                Some(_) if datums_to_drop > 0 => {
                    m.scope(|m| self.datum(core, m).map(drop))?;
                    datums_to_drop -= 1;
                }
                _ => return Ok(()),
            }
        }
    }

    fn datum(&mut self, core: &mut Core, m: &mut Mutator) -> Result<Local> {
        core.check_stack()?;
        let Some(b) = self.peek() else {
            return Err(SchemeError::Incomplete);
        };
        match b {
            b'(' | b'[' => {
                self.pos += 1;
                self.list(core, m, if b == b'(' { b')' } else { b']' })
            }
            b')' | b']' => {
                let e = self.error(format!("unexpected '{}'", b as char));
                self.pos += 1;
                Err(e)
            }
            b'\'' => {
                self.pos += 1;
                self.abbreviation(core, m, "quote")
            }
            b'`' => {
                self.pos += 1;
                self.abbreviation(core, m, "quasiquote")
            }
            b',' => {
                self.pos += 1;
                if self.peek() == Some(b'@') {
                    self.pos += 1;
                    self.abbreviation(core, m, "unquote-splicing")
                } else {
                    self.abbreviation(core, m, "unquote")
                }
            }
            b'"' => {
                self.pos += 1;
                let s = self.string_body(b'"')?;
                core.string(m, &s)
            }
            b'|' => {
                self.pos += 1;
                let s = self.string_body(b'|')?;
                let name = String::from_utf8(s).map_err(|_| self.error("bad UTF-8 in symbol"))?;
                core.intern(m, &name)
            }
            b'#' => self.hash(core, m),
            _ => self.atom(core, m),
        }
    }

    fn abbreviation(&mut self, core: &mut Core, m: &mut Mutator, name: &str) -> Result<Local> {
        self.skip_atmosphere(core, m)?;
        let d = self.datum(core, m)?;
        let s = core.intern(m, name)?;
        core.list(m, &[s, d])
    }

    fn list(&mut self, core: &mut Core, m: &mut Mutator, close: u8) -> Result<Local> {
        let mut items = Vec::new();
        loop {
            self.skip_atmosphere(core, m)?;
            match self.peek() {
                None => return Err(SchemeError::Incomplete),
                Some(b) if b == close => {
                    self.pos += 1;
                    return core.list(m, &items);
                }
                Some(b'.') if self.peek_at(1).is_none_or(is_delimiter) => {
                    if items.is_empty() {
                        return Err(self.error("'.' at the start of a list"));
                    }
                    self.pos += 1;
                    self.skip_atmosphere(core, m)?;
                    let tail = self.datum(core, m)?;
                    self.skip_atmosphere(core, m)?;
                    return match self.peek() {
                        None => Err(SchemeError::Incomplete),
                        Some(b) if b == close => {
                            self.pos += 1;
                            core.list_with_tail(m, &items, tail)
                        }
                        Some(_) => Err(self.error("more than one datum after '.'")),
                    };
                }
                Some(b')' | b']') => {
                    return Err(self.error("mismatched closing bracket"));
                }
                Some(_) => items.push(self.datum(core, m)?),
            }
        }
    }

    /// The body of a string or `|symbol|` up to the closing `quote`.
    fn string_body(&mut self, quote: u8) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(SchemeError::Incomplete);
            };
            self.pos += 1;
            if b == quote {
                return Ok(out);
            }
            if b != b'\\' {
                out.push(b);
                continue;
            }
            let Some(e) = self.peek() else {
                return Err(SchemeError::Incomplete);
            };
            self.pos += 1;
            match e {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'a' => out.push(7),
                b'b' => out.push(8),
                b'0' => out.push(0),
                b'\\' | b'"' | b'|' => out.push(e),
                b'x' | b'X' => {
                    let start = self.pos;
                    while self.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
                        self.pos += 1;
                    }
                    let hex = &self.src[start..self.pos];
                    if self.peek() != Some(b';') {
                        return Err(self.error("\\x escape must end with ';'"));
                    }
                    self.pos += 1;
                    let c = u32::from_str_radix(hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| self.error(format!("bad \\x escape {hex:?}")))?;
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b' ' | b'\t' | b'\n' | b'\r' => {
                    // \ <spaces> newline <spaces>: a line continuation.
                    self.pos -= 1;
                    while matches!(self.peek(), Some(b' ' | b'\t')) {
                        self.pos += 1;
                    }
                    if self.peek() == Some(b'\r') {
                        self.pos += 1;
                    }
                    if self.peek() != Some(b'\n') {
                        return Err(self.error("bad escape '\\ ' in string"));
                    }
                    self.pos += 1;
                    while matches!(self.peek(), Some(b' ' | b'\t')) {
                        self.pos += 1;
                    }
                }
                _ => {
                    // `e` may start a multi-byte character: name (and step
                    // over) the whole character, not its first byte.
                    let c = self.src[self.pos - 1..].chars().next().unwrap_or('?');
                    self.pos += c.len_utf8() - 1;
                    return Err(self.error(format!("unknown escape '\\{c}' in string")));
                }
            }
        }
    }

    /// The token starting at `pos`, up to a delimiter.
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(|b| !is_delimiter(b)) {
            self.pos += 1;
        }
        &self.src[start..self.pos]
    }

    fn hash(&mut self, core: &mut Core, m: &mut Mutator) -> Result<Local> {
        match self.peek_at(1) {
            Some(b'(') => {
                self.pos += 2;
                let l = self.list(core, m, b')')?;
                let items = core
                    .list_items(m, l)?
                    .ok_or_else(|| self.error("dotted vector literal"))?;
                let v = core.vector(m, items.len(), core.nil)?;
                for (i, x) in items.into_iter().enumerate() {
                    m.set_ref(v, i, Some(x))?;
                }
                Ok(v)
            }
            Some(b'\\') => {
                self.pos += 2;
                // One character, then any more non-delimiters (a name).
                let start = self.pos;
                let Some(first) = self.src[start..].chars().next() else {
                    return Err(SchemeError::Incomplete);
                };
                self.pos += first.len_utf8();
                while self.peek().is_some_and(|b| !is_delimiter(b)) {
                    self.pos += 1;
                }
                let name = &self.src[start..self.pos];
                let c = if name.chars().count() == 1 {
                    first
                } else if let Some(&(_, c)) = CHAR_NAMES.iter().find(|(n, _)| *n == name) {
                    c
                } else if let Some(hex) = name.strip_prefix('x') {
                    u32::from_str_radix(hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| self.error(format!("unknown character #\\{name}")))?
                } else {
                    return Err(self.error(format!("unknown character #\\{name}")));
                };
                core.character(m, c)
            }
            _ => {
                let tok = self.token();
                match tok {
                    "#t" | "#true" => Ok(m.dup(core.t)?),
                    "#f" | "#false" => Ok(m.dup(core.f)?),
                    "#eof" => Ok(m.dup(core.eof)?),
                    _ => {
                        if let Some(n) = radix_number(tok) {
                            return core.int(m, n);
                        }
                        Err(self.error(format!("unknown syntax {tok:?}")))
                    }
                }
            }
        }
    }

    fn atom(&mut self, core: &mut Core, m: &mut Mutator) -> Result<Local> {
        let start = self.pos;
        let tok = self.token();
        if tok.is_empty() {
            // A lone delimiter that `datum` does not handle cannot happen,
            // but never loop on it.
            self.pos += 1;
            return Err(self.error("unexpected character"));
        }
        let digits = tok.strip_prefix(['+', '-']).unwrap_or(tok);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return match tok.parse::<i64>() {
                Ok(n) => core.int(m, n),
                Err(_) => {
                    self.pos = start;
                    Err(self.error(format!("integer {tok} does not fit in 64 bits")))
                }
            };
        }
        if looks_numeric(tok) {
            self.pos = start;
            return Err(self.error(format!(
                "{tok}: only integers are supported (no floating point or rationals)"
            )));
        }
        core.intern(m, tok)
    }
}

/// `#x1f`, `#b101`, `#o17`, `#d12`, `#e12`.
fn radix_number(tok: &str) -> Option<i64> {
    let (radix, rest) = match tok.get(..2)? {
        "#x" | "#X" => (16, &tok[2..]),
        "#b" | "#B" => (2, &tok[2..]),
        "#o" | "#O" => (8, &tok[2..]),
        "#d" | "#D" | "#e" | "#E" => (10, &tok[2..]),
        _ => return None,
    };
    i64::from_str_radix(rest, radix).ok()
}

/// Whether a token that is not an integer looks like another number
/// (`1.5`, `.5`, `1e3`, `1/2`), which the interpreter does not support.
fn looks_numeric(tok: &str) -> bool {
    let t = tok.strip_prefix(['+', '-']).unwrap_or(tok);
    let t = t.strip_prefix('.').unwrap_or(t);
    t.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && t.bytes()
            .all(|b| b.is_ascii_digit() || b"./eE+-".contains(&b))
        && t.bytes()
            .last()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.')
}
